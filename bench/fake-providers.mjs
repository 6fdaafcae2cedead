// The bench fake's other wire formats: Azure OpenAI, Mistral, Anthropic, Gemini and Bedrock Converse, each
// answering (non-streamed) and counting as its provider does, billed through bench/fake-billing.mjs.
// Prompts: OpenAI-family text (OpenAI, Azure) as OpenAI bills it (tiktoken, 3 + 4 a message); Claude,
// Gemini and Mistral text with fake-billing's stand-in tokenizer of the family (NOT the proxy's estimator)
// plus a few template tokens a message. The free counting endpoints (Anthropic count_tokens, Gemini
// countTokens, Bedrock CountTokens) answer exactly what the generate call then bills, as the real ones do.
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
        const input = anthropicPrompt(body)
        const { text, tokens } = answer('claude', body.model, positive(body.max_tokens), o.completionTokens)
        const json = { id: 'msg_bench', type: 'message', role: 'assistant', model: body.model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: input, output_tokens: tokens } }
        return { status: 200, json, bill: [input, tokens] }
      },
    }
  }
  if (path === '/v1/messages/count_tokens') return { kind: 'count', handle: (body) => ({ status: 200, json: { input_tokens: anthropicPrompt(body) }, bill: null }) }
  m = /^\/v1(?:beta)?\/models\/([^/:]+):(generateContent|countTokens)$/.exec(path)
  if (m !== null) {
    const model = decodeURIComponent(m[1])
    if (m[2] === 'countTokens') return { kind: 'count', handle: (body) => ({ status: 200, json: { totalTokens: geminiPrompt(model, body.generateContentRequest ?? body) }, bill: null }) }
    return {
      kind: 'gemini',
      handle(body, o) {
        const input = geminiPrompt(model, body)
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
  m = /^\/model\/([^/]+)\/(converse|count-tokens)$/.exec(path)
  if (m !== null) {
    const model = decodeURIComponent(m[1])
    if (m[2] === 'count-tokens') return { kind: 'count', handle: (body) => ({ status: 200, json: { inputTokens: bedrockPrompt(model, body.input?.converse ?? {}) }, bill: null }) }
    return {
      kind: 'bedrock',
      handle(body, o) {
        const input = bedrockPrompt(model, body)
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
