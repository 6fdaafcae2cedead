// The bench fake's other wire formats: Azure OpenAI, Mistral, Anthropic, Gemini and Bedrock Converse, each
// answering (streamed or not) and counting as its provider does, billed through bench/fake-billing.mjs.
// A streamed answer is the fake's `chunks` deltas of the realistic answer (1-4 tokens each), stopping
// before the request's output cap; each delta is billed when written to a still-open socket.
// Prompts: OpenAI-family text (OpenAI, Azure) as OpenAI bills it (tiktoken, 3 + 4 a message); Claude,
// Gemini and Mistral text with fake-billing's stand-in tokenizer of the family (NOT the proxy's estimator)
// plus a few template tokens a message. The free counting endpoints (Anthropic count_tokens, Gemini
// countTokens, Bedrock CountTokens) answer exactly what the generate call then bills, as the real ones do.
import { encodeEventStreamMessage } from '../dist/stream/event-stream.js'
import { answerChunks, billedTokens, familyOf } from './fake-billing.mjs'

/** Template tokens a provider adds: per request, and per message (role markers, turn delimiters). */
const TEMPLATE = {
  openai: { base: 3, perMessage: 4 },
  claude: { base: 4, perMessage: 3 },
  gemini: { base: 0, perMessage: 2 },
  mistral: { base: 1, perMessage: 2 },
}

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Text of a content value: a string, or the `text` of each part / block in a list. */
function texts(content) {
  if (typeof content === 'string') return [content]
  if (Array.isArray(content)) return content.flatMap((p) => (isObject(p) && typeof p.text === 'string' ? [p.text] : []))
  return []
}

/** Prompt tokens of `messages` (each a list of texts) and system texts, as `family` bills them. */
function promptOf(family, model, messages, system = []) {
  const t = TEMPLATE[family]
  let tokens = t.base + (system.length > 0 ? t.perMessage : 0)
  for (const text of system) tokens += billedTokens(text, family, model)
  for (const parts of messages) {
    tokens += t.perMessage
    for (const text of parts) tokens += billedTokens(text, family, model)
  }
  return tokens
}

/** What an answer capped at `limit` tokens says and bills, as `family` bills it. */
function answer(family, model, limit, completionTokens) {
  const cap = Math.max(0, Math.min(limit, completionTokens))
  const out = []
  let tokens = 0
  for (const delta of answerChunks(Math.max(1, cap), family, model).deltas) {
    if (tokens + delta.tokens > cap) break
    tokens += delta.tokens
    out.push(delta.text)
  }
  return { text: out.join(''), tokens }
}

/** A stream's deltas: the first `chunks` of the answer, stopping before they pass `limit` tokens. */
function streamDeltas(family, model, limit, chunks) {
  const out = []
  let tokens = 0
  for (const delta of answerChunks(chunks, family, model).deltas) {
    if (tokens + delta.tokens > limit) break
    tokens += delta.tokens
    out.push(delta)
  }
  return out
}

const sse = (event, data) => `${event === null ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`
const converseFrame = (type, payload) => encodeEventStreamMessage({ ':event-type': type, ':content-type': 'application/json', ':message-type': 'event' }, Buffer.from(JSON.stringify(payload)))

const positive = (v) => (Number.isInteger(v) && v > 0 ? v : Number.POSITIVE_INFINITY)

const anthropicPrompt = (body) => promptOf('claude', body.model, (body.messages ?? []).map((m) => texts(m?.content)), texts(body.system))
const geminiPrompt = (model, request) =>
  promptOf('gemini', model, (request.contents ?? []).map((c) => texts(c?.parts)), texts((request.systemInstruction ?? request.system_instruction)?.parts))
const bedrockPrompt = (model, converse) => promptOf(familyOf(model), model, (converse.messages ?? []).map((m) => texts(m?.content)), texts(converse.system))

/**
 * The route for `path` (query stripped) among these providers, or null: `{ kind, handle(body, options) }`
 * where handle returns `{ status, json, bill: [inputTokens, outputTokens] | null }`.
 */
export function providerRoute(path) {
  let m = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(path)
  if (m !== null) {
    // A deployment runs gpt-4o here (the bench's price entry names it): billed with o200k.
    const deployment = decodeURIComponent(m[1])
    return { kind: 'azure', handle: (body, o) => compatChat(body, o, 'openai', 'gpt-4o', deployment) }
  }
  if (path === '/v1/messages') {
    return {
      kind: 'anthropic',
      handle(body, o) {
        // Billed by size when asked (bench/body-option.mjs): tokenizing a 32 KB prompt per answer would cap the load.
        const input = o.promptTokens === 'bytes' ? JSON.stringify(body).length : anthropicPrompt(body)
        if (body.stream === true) {
          const deltas = streamDeltas('claude', body.model, positive(body.max_tokens), o.chunks)
          const message = { id: 'msg_bench', type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: input, output_tokens: 1 } }
          return {
            prompt: input,
            stream: {
              contentType: 'text/event-stream',
              opening: sse('message_start', { type: 'message_start', message }) + sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
              frames: deltas.map((d) => ({ data: sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: d.text } }), tokens: d.tokens })),
              closing: (written) =>
                sse('content_block_stop', { type: 'content_block_stop', index: 0 }) +
                sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: written } }) +
                sse('message_stop', { type: 'message_stop' }),
            },
          }
        }
        const { text, tokens } = answer('claude', body.model, positive(body.max_tokens), o.completionTokens)
        const json = { id: 'msg_bench', type: 'message', role: 'assistant', model: body.model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: input, output_tokens: tokens } }
        return { status: 200, json, bill: [input, tokens] }
      },
    }
  }
  if (path === '/v1/messages/count_tokens') return { kind: 'count', handle: (body) => ({ status: 200, json: { input_tokens: anthropicPrompt(body) }, bill: null }) }
  m = /^\/v1(?:beta)?\/models\/([^/:]+):(generateContent|streamGenerateContent|countTokens)$/.exec(path)
  if (m !== null) {
    const model = decodeURIComponent(m[1])
    if (m[2] === 'countTokens') return { kind: 'count', handle: (body) => ({ status: 200, json: { totalTokens: geminiPrompt(model, body.generateContentRequest ?? body) }, bill: null }) }
    return {
      kind: 'gemini',
      handle(body, o) {
        const input = geminiPrompt(model, body)
        if (m[2] === 'streamGenerateContent') {
          // Every chunk carries the running usage (alt=sse), as Gemini's do.
          const deltas = streamDeltas('gemini', model, positive(body.generationConfig?.maxOutputTokens), o.chunks)
          let running = 0
          const chunk = (text, tokens, finish) => sse(null, { candidates: [{ content: { role: 'model', parts: [{ text }] }, index: 0, ...(finish ? { finishReason: 'STOP' } : {}) }], usageMetadata: { promptTokenCount: input, candidatesTokenCount: tokens, totalTokenCount: input + tokens }, modelVersion: model })
          return {
            prompt: input,
            stream: {
              contentType: 'text/event-stream',
              opening: '',
              frames: deltas.map((d) => ({ data: chunk(d.text, (running += d.tokens), false), tokens: d.tokens })),
              closing: (written) => chunk('', written, true),
            },
          }
        }
        const { text, tokens } = answer('gemini', model, positive(body.generationConfig?.maxOutputTokens), o.completionTokens)
        const json = {
          candidates: [{ content: { role: 'model', parts: [{ text }] }, finishReason: 'STOP', index: 0 }],
          usageMetadata: { promptTokenCount: input, candidatesTokenCount: tokens, totalTokenCount: input + tokens },
          modelVersion: model,
        }
        return { status: 200, json, bill: [input, tokens] }
      },
    }
  }
  m = /^\/model\/([^/]+)\/(converse|converse-stream|count-tokens)$/.exec(path)
  if (m !== null) {
    const model = decodeURIComponent(m[1])
    if (m[2] === 'count-tokens') return { kind: 'count', handle: (body) => ({ status: 200, json: { inputTokens: bedrockPrompt(model, body.input?.converse ?? {}) }, bill: null }) }
    return {
      kind: 'bedrock',
      handle(body, o) {
        const input = bedrockPrompt(model, body)
        if (m[2] === 'converse-stream') {
          const deltas = streamDeltas(familyOf(model), model, positive(body.inferenceConfig?.maxTokens), o.chunks)
          return {
            prompt: input,
            stream: {
              contentType: 'application/vnd.amazon.eventstream',
              opening: converseFrame('messageStart', { role: 'assistant' }),
              frames: deltas.map((d) => ({ data: converseFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: d.text } }), tokens: d.tokens })),
              closing: (written) =>
                Buffer.concat([
                  converseFrame('contentBlockStop', { contentBlockIndex: 0 }),
                  converseFrame('messageStop', { stopReason: 'end_turn' }),
                  converseFrame('metadata', { usage: { inputTokens: input, outputTokens: written, totalTokens: input + written }, metrics: { latencyMs: 1 } }),
                ]),
            },
          }
        }
        const { text, tokens } = answer(familyOf(model), model, positive(body.inferenceConfig?.maxTokens), o.completionTokens)
        const json = { output: { message: { role: 'assistant', content: [{ text }] } }, stopReason: 'end_turn', usage: { inputTokens: input, outputTokens: tokens, totalTokens: input + tokens }, metrics: { latencyMs: 1 } }
        return { status: 200, json, bill: [input, tokens] }
      },
    }
  }
  return null
}

/** A non-OpenAI model on the OpenAI chat route (Mistral's API): billed as its family. */
export function mistralChat(body, o) {
  return compatChat(body, o, familyOf(body.model), body.model, body.model)
}

/** A non-streamed OpenAI-format chat answer billed as `family` bills `model`. */
function compatChat(body, o, family, model, answeredModel) {
  const input = promptOf(family, model, (body.messages ?? []).map((msg) => texts(msg?.content)))
  if (body.stream === true) {
    const deltas = streamDeltas(family, model, positive(body.max_completion_tokens ?? body.max_tokens), o.chunks)
    const chunk = (delta, finish) => sse(null, { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1, model: answeredModel, choices: [{ index: 0, delta, finish_reason: finish }] })
    // Usage in a last chunk: OpenAI and Azure when include_usage is set (the proxy sets it), Mistral always.
    const usage = (written) => sse(null, { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1, model: answeredModel, choices: [], usage: { prompt_tokens: input, completion_tokens: written, total_tokens: input + written } })
    const withUsage = family !== 'openai' || body.stream_options?.include_usage === true
    return {
      prompt: input,
      stream: {
        contentType: 'text/event-stream',
        opening: chunk({ role: 'assistant', content: '' }, null),
        frames: deltas.map((d) => ({ data: chunk({ content: d.text }, null), tokens: d.tokens })),
        closing: (written) => `${chunk({}, 'stop')}${withUsage ? usage(written) : ''}data: [DONE]\n\n`,
      },
    }
  }
  const { text, tokens } = answer(family, model, positive(body.max_completion_tokens ?? body.max_tokens), o.completionTokens)
  const json = {
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1,
    model: answeredModel,
    choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
    usage: { prompt_tokens: input, completion_tokens: tokens, total_tokens: input + tokens },
  }
  return { status: 200, json, bill: [input, tokens] }
}
