import type http from 'node:http'
import { NON_STREAM_TEXT, billedFor, billedPrompt, billedTokens, capDeltas, capOf, streamPlan, warmBilling, type Delta } from './billing.js'
import { finish, json, pace, startRecordingServer, write, type FakeUpstream } from './fake-server.js'

export type { LedgerEntry, Received } from './fake-server.js'

export interface FakeOpenAiOptions {
  /** Prompt tokens the fake reports (default: tiktoken's count of the prompt in the body, as OpenAI bills it). */
  promptTokens?: number
  /** Content deltas per streamed answer (default 5): billed by tiktoken. */
  chunks?: number
  /** Completion tokens of a non-streamed answer (default: tiktoken's count of its text). */
  completionTokens?: number
  /** Stream the realistic answer (1-4 tokens per delta, code and non-English text) instead of `word`. */
  answer?: boolean
  /** Text of every delta (default " tok", one token), billed by tiktoken in context. */
  word?: string
  /** Milliseconds between stream chunks (default 0). */
  chunkDelayMs?: number
  /** Answer every POST with this status and body instead. */
  fail?: { status: number; body: unknown }
  /** Never answer POSTs (for timeouts and client aborts before headers). */
  hang?: boolean
  /** Destroy the socket after this many stream chunks. */
  resetAfterChunks?: number
  /** Answer non-streamed chat without a usage object. */
  omitUsage?: boolean
  /** Stream each choice's text in deltas of this many characters (mid-word), each billed as the text grows. */
  charDeltas?: number
  /**
   * Hold each POST's answer until this many POSTs wait together (at most 5 s), so requests a client sends
   * at once overlap at the proxy even on a starved machine, as they do over a provider's seconds of latency.
   */
  gather?: number
}

/**
 * A fake api.openai.com speaking the real wire format (chat completions, responses, embeddings,
 * model list), recording every request and keeping a ledger of what each stream served.
 */
export type FakeOpenAi = FakeUpstream<FakeOpenAiOptions>

/** Deltas between where one choice's answer starts and the next one's (`n` > 1): the choices differ. */
const CHOICE_OFFSET = 37

export async function startFakeOpenAi(initial: FakeOpenAiOptions = {}): Promise<FakeOpenAi> {
  warmBilling()
  const fake = await startRecordingServer(initial, answer)
  const waiting = new Set<() => void>()

  /** Resolves once `count` answers wait (all are released together), or after 5 s. */
  function gathered(count: number): Promise<void> {
    return new Promise((resolve) => {
      const release = () => {
        waiting.delete(release)
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(release, 5_000)
      waiting.add(release)
      if (waiting.size >= count) for (const each of [...waiting]) each()
    })
  }

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>): Promise<void> {
    const o = fake.options
    if (req.method === 'POST' && o.gather !== undefined) await gathered(o.gather)
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'GET' && path === '/v1/models') {
      return json(res, 200, { object: 'list', data: [{ id: 'gpt-test', object: 'model', created: 0, owned_by: 'test' }] })
    }
    if (o.hang) return
    if (o.fail) return json(res, o.fail.status, o.fail.body)
    const model = String(body.model ?? 'unknown')
    const promptTokens = o.promptTokens ?? billedPrompt(body, 'openai', model, path === '/v1/embeddings')
    fake.prompts.push(promptTokens)
    if (path === '/v1/embeddings') {
      return json(res, 200, embeddingList(body, model, promptTokens))
    }
    if (path === '/v1/chat/completions') {
      if (body.stream === true) return streamChat(req, res, body, model, promptTokens)
      const completion = o.completionTokens ?? billedFor(model, NON_STREAM_TEXT)
      return json(res, 200, {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: NON_STREAM_TEXT, refusal: null }, finish_reason: 'stop', logprobs: null }],
        ...(o.omitUsage ? {} : { usage: { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion } }),
      })
    }
    if (path === '/v1/responses') {
      if (body.stream === true) return streamResponses(req, res, body, model, promptTokens)
      const completion = o.completionTokens ?? billedFor(model, NON_STREAM_TEXT)
      return json(res, 200, responseObject(model, 'completed', NON_STREAM_TEXT, promptTokens, completion))
    }
    return json(res, 404, { error: { message: 'no such route', type: 'invalid_request_error', param: null, code: null } })
  }

  async function streamChat(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, model: string, promptTokens: number) {
    const o = fake.options
    const entry = fake.openLedger(req, res, promptTokens)
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const base = { id: 'chatcmpl-2', object: 'chat.completion.chunk', created: 1, model }
    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true
    // `n` choices stream interleaved, a delta of each in turn; choice c is the answer from delta CHOICE_OFFSET × c on.
    const n = typeof body.n === 'number' && body.n > 1 ? body.n : 1
    const chunks = o.chunks ?? 5
    const planned = streamPlan('openai', { ...o, chunks: chunks + CHOICE_OFFSET * (n - 1) }, model).deltas
    const cap = capOf(body, 'max_completion_tokens', 'max_tokens')
    const choices = Array.from({ length: n }, (_, c) => {
      const deltas = planned.slice(CHOICE_OFFSET * c, CHOICE_OFFSET * c + chunks)
      return capDeltas(o.charDeltas === undefined ? deltas : splitDeltas(deltas, o.charDeltas, model), cap)
    })
    const opening = choices.map((_, index) => ({ index, delta: { role: 'assistant', content: '' }, finish_reason: null }))
    if (!write(res, entry, `data: ${JSON.stringify({ ...base, choices: opening })}\n\n`, 0)) return
    let billed = 0
    for (let i = 0; i < (choices[0]?.length ?? 0); i++) {
      if (!(await pace(res, entry, o.chunkDelayMs, i === o.resetAfterChunks))) return
      for (const [index, deltas] of choices.entries()) {
        const delta = deltas[i]
        if (delta === undefined) continue
        const chunk = { ...base, choices: [{ index, delta: { content: delta.text }, finish_reason: null }] }
        if (!write(res, entry, `data: ${JSON.stringify(chunk)}\n\n`, delta.tokens)) return
        billed += delta.tokens
      }
    }
    const stops = choices.map((_, index) => ({ index, delta: {}, finish_reason: 'stop' }))
    write(res, entry, `data: ${JSON.stringify({ ...base, choices: stops })}\n\n`, 0)
    if (includeUsage) {
      const usage = { prompt_tokens: promptTokens, completion_tokens: billed, total_tokens: promptTokens + billed }
      write(res, entry, `data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`, 0)
    }
    write(res, entry, 'data: [DONE]\n\n', 0)
    finish(res, entry)
  }

  async function streamResponses(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, model: string, promptTokens: number) {
    const o = fake.options
    const entry = fake.openLedger(req, res, promptTokens)
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const deltas = capDeltas(streamPlan('openai', o, model).deltas, capOf(body, 'max_output_tokens'))
    let billed = 0
    let seq = 0
    const event = (type: string, data: Record<string, unknown>, tokens: number) =>
      write(res, entry, `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`, tokens)
    if (!event('response.created', { response: responseObject(model, 'in_progress', '', null, null) }, 0)) return
    let text = ''
    for (const delta of deltas) {
      if (!(await pace(res, entry, o.chunkDelayMs))) return
      text += delta.text
      if (!event('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: delta.text, logprobs: [] }, delta.tokens)) return
      billed += delta.tokens
    }
    event('response.completed', { response: responseObject(model, 'completed', text, promptTokens, billed) }, 0)
    finish(res, entry)
  }

  return fake
}

/** `deltas` re-cut into pieces of `size` characters; each bills what the text's bill grew by with it. */
function splitDeltas(deltas: Delta[], size: number, model: string): Delta[] {
  const chars = [...deltas.map((d) => d.text).join('')]
  const out: Delta[] = []
  let billed = 0
  for (let i = 0; i < chars.length; i += size) {
    const total = billedTokens(chars.slice(0, i + size).join(''), 'openai', model)
    out.push({ text: chars.slice(i, i + size).join(''), tokens: total - billed })
    billed = total
  }
  return out
}

/** An embeddings list of one vector, base64-encoded when the request asks for it. */
export function embeddingList(body: Record<string, unknown>, model: string, promptTokens: number): Record<string, unknown> {
  return {
    object: 'list',
    // The SDK asks for base64 by default and decodes it back to floats.
    data: [{ object: 'embedding', index: 0, embedding: body.encoding_format === 'base64' ? Buffer.from(new Float32Array([0.5, 0.25, 0.125]).buffer).toString('base64') : [0.5, 0.25, 0.125] }],
    model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  }
}

/** A Responses API object; `usage` is null while the response is in progress (`input` or `output` null). */
export function responseObject(model: string, status: string, text: string, input: number | null, output: number | null): Record<string, unknown> {
  return {
    id: 'resp_1',
    object: 'response',
    created_at: 1,
    status,
    model,
    output: text === '' ? [] : [{ id: 'msg_1', type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text, annotations: [] }] }],
    usage:
      input === null || output === null
        ? null
        : { input_tokens: input, input_tokens_details: { cached_tokens: 0 }, output_tokens: output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + output },
  }
}
