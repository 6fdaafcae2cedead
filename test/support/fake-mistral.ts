import type http from 'node:http'
import { NON_STREAM_TEXT, billedFor, billedPrompt, capDeltas, capOf, familyOf, streamPlan, warmBilling } from './billing.js'
import { finish, json, pace, startRecordingServer, write, type FakeUpstream } from './fake-server.js'

export type { LedgerEntry, Received } from './fake-server.js'

export interface FakeMistralOptions {
  /** Prompt tokens the fake reports (default: the prompt in the body billed as Mistral (billing.ts)). */
  promptTokens?: number
  /** Report the request body's byte length as its prompt tokens, so a request costs exactly its input bound. */
  promptTokensFromBody?: boolean
  /** Content deltas per streamed answer (default 5) billed as Mistral (billing.ts). */
  chunks?: number
  /** Completion tokens of a non-streamed answer (default: the billed count of its text). */
  completionTokens?: number
  /** Stream the realistic answer (1-4 tokens per delta, code and non-English text) instead of `word`. */
  answer?: boolean
  /** Text of every delta (default " tok", one token), billed as the family bills it. */
  word?: string
  /** Destroy the socket after this many stream chunks. */
  resetAfterChunks?: number
  /** Milliseconds between stream chunks (default 0). */
  chunkDelayMs?: number
  /** Answer every POST with this status and body instead. */
  fail?: { status: number; body: unknown }
}

/**
 * A fake api.mistral.ai speaking its wire format: Bearer auth, chat / FIM completions and embeddings,
 * unknown body fields refused with 422 `extra_forbidden` (as `stream_options` is), stream usage on the
 * last chunk unasked. It records every request and keeps a ledger of what each stream served.
 */
export type FakeMistral = FakeUpstream<FakeMistralOptions>

/** Fields of OpenAI's chat API that Mistral's request schema does not have. */
const FORBIDDEN_FIELDS = ['stream_options', 'max_completion_tokens', 'logprobs', 'store']

export async function startFakeMistral(initial: FakeMistralOptions = {}): Promise<FakeMistral> {
  warmBilling()
  const fake = await startRecordingServer(initial, (req, res, body, raw) => answer(req, res, body, Buffer.byteLength(raw)))

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, bodyBytes: number): Promise<void> {
    const o = fake.options
    const path = (req.url ?? '').split('?')[0]
    if (!/^Bearer \S+$/.test(req.headers.authorization ?? '')) return json(res, 401, { message: 'Unauthorized', request_id: 'req-1' })
    if (req.method === 'GET' && path === '/v1/models') {
      return json(res, 200, { object: 'list', data: [{ id: 'mistral-test', object: 'model', created: 0, owned_by: 'mistralai', capabilities: { completion_chat: true, completion_fim: true }, max_context_length: 131072, type: 'base' }] })
    }
    if (path !== '/v1/chat/completions' && path !== '/v1/fim/completions' && path !== '/v1/embeddings') {
      return json(res, 404, { detail: 'Not Found' })
    }
    if (o.fail) return json(res, o.fail.status, o.fail.body)
    const extra = FORBIDDEN_FIELDS.filter((field) => body[field] !== undefined)
    if (extra.length > 0) {
      const detail = extra.map((field) => ({ type: 'extra_forbidden', loc: ['body', field], msg: 'Extra inputs are not permitted', input: body[field] }))
      return json(res, 422, { object: 'error', message: { detail }, type: 'invalid_request_error', param: null, code: null })
    }
    const model = String(body.model ?? 'unknown')
    const promptTokens = o.promptTokensFromBody ? bodyBytes : (o.promptTokens ?? billedPrompt(body, familyOf(model), model, path === '/v1/embeddings'))
    fake.prompts.push(promptTokens)
    if (path === '/v1/embeddings') {
      return json(res, 200, {
        id: 'emb-1',
        object: 'list',
        data: [{ object: 'embedding', embedding: [0.5, 0.25, 0.125], index: 0 }],
        model,
        usage: { prompt_tokens: promptTokens, total_tokens: promptTokens, completion_tokens: 0 },
      })
    }
    if (body.stream === true) return streamChat(req, res, body, model, promptTokens)
    const completion = o.completionTokens ?? billedFor(model, NON_STREAM_TEXT)
    return json(res, 200, {
      id: 'cmpl-1',
      object: 'chat.completion',
      model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens + completion, completion_tokens: completion },
      created: 1,
      choices: [{ index: 0, message: { role: 'assistant', tool_calls: null, content: NON_STREAM_TEXT }, finish_reason: 'stop' }],
    })
  }

  async function streamChat(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, model: string, promptTokens: number) {
    const o = fake.options
    const entry = fake.openLedger(req, res, promptTokens)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' })
    const base = { id: 'cmpl-2', object: 'chat.completion.chunk', created: 1, model }
    const deltas = capDeltas(streamPlan('mistral', o, model).deltas, capOf(body, 'max_tokens'))
    let billed = 0
    const chunk = (delta: Record<string, unknown>, finishReason: string | null, usage?: unknown) =>
      `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finishReason }], ...(usage === undefined ? {} : { usage }) })}\n\n`
    if (!write(res, entry, chunk({ role: 'assistant', content: '' }, null), 0)) return
    for (const [i, delta] of deltas.entries()) {
      if (!(await pace(res, entry, o.chunkDelayMs, i === o.resetAfterChunks))) return
      if (!write(res, entry, chunk({ content: delta.text }, null), delta.tokens)) return
      billed += delta.tokens
    }
    // Mistral puts usage on the last chunk, beside the finish reason.
    write(res, entry, chunk({ content: '' }, 'stop', { prompt_tokens: promptTokens, total_tokens: promptTokens + billed, completion_tokens: billed }), 0)
    write(res, entry, 'data: [DONE]\n\n', 0)
    finish(res, entry)
  }

  return fake
}
