import type http from 'node:http'
import { NON_STREAM_TEXT, billedFor, billedPrompt, capDeltas, familyOf, streamPlan, warmBilling } from './billing.js'
import { finish, json, pace, startRecordingServer, write, type FakeUpstream } from './fake-server.js'

export type { LedgerEntry, Received } from './fake-server.js'

export interface FakeAnthropicOptions {
  /** `input_tokens` the fake reports and counts (default: the prompt in the body billed as Claude (billing.ts)). */
  inputTokens?: number
  /** `cache_read_input_tokens` and `cache_creation_input_tokens` reported (default 0 each). */
  cacheReadTokens?: number
  cacheWriteTokens?: number
  /** `output_tokens` of a non-streamed answer (default: the billed count of its text). */
  outputTokens?: number
  /** Text deltas per streamed answer (default 5, stopping at `max_tokens`) billed as Claude (billing.ts). */
  chunks?: number
  /** Stream the realistic answer (1-4 tokens per delta, code and non-English text) instead of `word`. */
  answer?: boolean
  /** Text of every delta (default " tok", one token), billed as the family bills it. */
  word?: string
  /** Destroy the socket after this many stream deltas. */
  resetAfterChunks?: number
  /** Milliseconds between stream deltas (default 0). */
  chunkDelayMs?: number
  /** Answer every metered POST with this status and body instead. */
  fail?: { status: number; body: unknown }
  /** Never answer metered POSTs. */
  hang?: boolean
  /** Answer `count_tokens` with this error status instead of a count. */
  countFails?: number
  /** End the stream with an `overloaded_error` event after this many deltas. */
  overloadAfterChunks?: number
}

/**
 * A fake api.anthropic.com speaking the real wire format: Messages (JSON and SSE streams with usage in
 * `message_start` and `message_delta`), token counting and the model list. It records every request and
 * keeps a ledger of what each stream put on the wire.
 */
export type FakeAnthropic = FakeUpstream<FakeAnthropicOptions>

export async function startFakeAnthropic(initial: FakeAnthropicOptions = {}): Promise<FakeAnthropic> {
  warmBilling()
  const fake = await startRecordingServer(initial, answer)

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>): Promise<void> {
    const o = fake.options
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'GET' && path === '/v1/models') {
      const model = { type: 'model', id: 'claude-test', display_name: 'Claude Test', created_at: '2025-01-01T00:00:00Z' }
      return reply(res, 200, { data: [model], has_more: false, first_id: 'claude-test', last_id: 'claude-test' })
    }
    if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
      return answerCountTokens(res, o, promptOf(body))
    }
    if (req.method !== 'POST' || path !== '/v1/messages') {
      return reply(res, 404, { type: 'error', error: { type: 'not_found_error', message: 'Not found' } })
    }
    if (o.hang) return
    if (o.fail) return reply(res, o.fail.status, o.fail.body)
    const model = String(body.model ?? 'unknown')
    const input = promptOf(body)
    fake.prompts.push(input)
    if (body.stream === true) return streamMessage(req, res, body, model, input)
    const output = o.outputTokens ?? billedFor(model, NON_STREAM_TEXT)
    return reply(res, 200, {
      id: 'msg_01fake',
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text: NON_STREAM_TEXT }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { ...inputUsage(input), output_tokens: output, service_tier: 'standard' },
    })
  }

  /** The input tokens a message with this body bills: the option, else its prompt billed as Claude. */
  function promptOf(body: Record<string, unknown>): number {
    return fake.options.inputTokens ?? billedPrompt(body, familyOf(String(body.model ?? 'claude')), String(body.model ?? 'claude'))
  }

  function inputUsage(input: number): Record<string, number> {
    const o = fake.options
    return {
      input_tokens: input,
      cache_creation_input_tokens: o.cacheWriteTokens ?? 0,
      cache_read_input_tokens: o.cacheReadTokens ?? 0,
    }
  }

  async function streamMessage(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, model: string, input: number) {
    const o = fake.options
    const entry = fake.openLedger(req, res, input)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'request-id': 'req_fake' })
    const maxTokens = typeof body.max_tokens === 'number' ? body.max_tokens : null
    const planned = streamPlan('claude', o, model).deltas
    const deltas = capDeltas(planned, maxTokens)
    let billed = 0
    const event = (type: string, data: Record<string, unknown>, tokens = 0): boolean =>
      write(res, entry, `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`, tokens)
    const message = { id: 'msg_01fake', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null }
    if (!event('message_start', { message: { ...message, usage: { ...inputUsage(input), output_tokens: 1 } } })) return
    if (!event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })) return
    if (!event('ping', {})) return
    for (const [i, delta] of deltas.entries()) {
      if (!(await pace(res, entry, o.chunkDelayMs, i === o.resetAfterChunks))) return
      if (o.overloadAfterChunks === i) {
        event('error', { error: { type: 'overloaded_error', message: 'Overloaded' } })
        finish(res, entry)
        return
      }
      if (!event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: delta.text } }, delta.tokens)) return
      billed += delta.tokens
    }
    event('content_block_stop', { index: 0 })
    const stopReason = deltas.length < planned.length ? 'max_tokens' : 'end_turn'
    event('message_delta', { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: billed } })
    event('message_stop', {})
    finish(res, entry)
  }

  return fake
}

/** A JSON answer carrying the `request-id` header every Anthropic answer has. */
/** `POST /v1/messages/count_tokens`: the input tokens a message with this body would bill, as the API counts them. */
function answerCountTokens(res: http.ServerResponse, o: FakeAnthropicOptions, input: number): void {
  if (o.countFails !== undefined) return reply(res, o.countFails, { type: 'error', error: { type: 'api_error', message: 'counting failed' } })
  reply(res, 200, { input_tokens: input })
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  json(res, status, body, { 'request-id': 'req_fake' })
}
