/**
 * A scriptable fake OpenAI chat upstream for the fault suite. `plan` decides what the next requests
 * meet (an answer, silence, a socket destroyed before headers, an error status, a stall right before
 * the usage chunk). It bills as OpenAI does (tiktoken over the prompt it received and the text it
 * answers) and books every exchange in its ledger: what it billed, how far it got, whether the proxy
 * closed it early.
 */
import type http from 'node:http'
import { NON_STREAM_TEXT, billedFor, billedPrompt, streamPlan, warmBilling } from './billing.js'
import { finish, openLedger, parseBody, sleep, startFakeServer, write, type LedgerEntry } from './fake-server.js'

export interface FaultPlan {
  /** answer (default): JSON or SSE per the body's `stream`; hang: never answer; destroy: kill the socket on request; fail: `fail`. */
  mode?: 'answer' | 'hang' | 'destroy' | 'fail'
  /** Content deltas of a streamed answer, text `tok ` each (default 5), billed by tiktoken in context. */
  chunks?: number
  chunkDelayMs?: number
  /** After this many content deltas the stream waits for `until` (a test acts while the proxy is mid-stream). */
  pauseAfter?: { deltas: number; until: Promise<void> }
  /** Stall a stream before its usage chunk (after the finish chunk) or after it (before `[DONE]`). */
  stallAt?: 'usage' | 'done'
  /** How long a stall lasts unless the proxy closes the connection first (default 5 s). */
  stallMs?: number
  /** Bytes and headers of an error answer, sent as they are. */
  fail?: { status: number; headers?: Record<string, string>; body: string }
}

/**
 * One request as the fake saw it, and its ledger entry: `inputTokens` is the prompt's bill (booked on
 * arrival; 0 for `fail` and `destroy`, which answer nothing billable), `outputTokensWritten` the completion
 * billed so far, `clientAborted` that the proxy closed the connection before the answer was complete.
 */
export interface Exchange extends LedgerEntry {
  body: Record<string, unknown> | null
  /** received → streaming → stalled → finished; stays where it was when the proxy went away. */
  stage: 'received' | 'streaming' | 'stalled' | 'finished'
}

export interface FaultUpstream {
  url: string
  plan: FaultPlan
  /** The ledger: every request in arrival order, with what it billed. */
  exchanges: Exchange[]
  /** The latest exchange; throws when there is none. */
  last(): Exchange
  close(): Promise<void>
}

/** Tokens the fake billed over `entries`, input and output: micro-USD at the test prices (one a token). */
export function billed(entries: readonly LedgerEntry[]): number {
  return entries.reduce((sum, e) => sum + e.inputTokens + e.outputTokensWritten, 0)
}

/** The text of every streamed delta (the proxy's counts of it are checked against the ledger). */
export const DELTA_TEXT = 'tok '

export async function startFaultUpstream(): Promise<FaultUpstream> {
  warmBilling()
  const exchanges: Exchange[] = []
  const ledger: LedgerEntry[] = []
  const server = await startFakeServer((req, res, raw) => {
    const plan = upstream.plan
    const body = parseBody(raw.toString('utf8'))
    const mode = plan.mode ?? 'answer'
    const inputTokens = mode === 'answer' || mode === 'hang' ? billedPrompt(body ?? {}, 'openai', String(body?.model)) : 0
    const exchange: Exchange = Object.assign(openLedger(ledger, req, res, inputTokens), { body, stage: 'received' as const })
    exchanges.push(exchange)
    void answer(req, res, exchange, plan)
  })
  const upstream: FaultUpstream = {
    url: server.url,
    plan: {},
    exchanges,
    last() {
      const exchange = exchanges.at(-1)
      if (exchange === undefined) throw new Error('the fake upstream received no request')
      return exchange
    },
    close: server.close,
  }

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, exchange: Exchange, plan: FaultPlan): Promise<void> {
    const mode = plan.mode ?? 'answer'
    if (mode === 'hang') return
    if (mode === 'destroy') {
      req.socket.destroy()
      return
    }
    if (mode === 'fail' && plan.fail !== undefined) {
      res.writeHead(plan.fail.status, { 'content-type': 'application/json', ...plan.fail.headers })
      exchange.stage = 'finished'
      write(res, exchange, plan.fail.body, 0)
      return finish(res, exchange)
    }
    const model = String(exchange.body?.model ?? 'unknown')
    const prompt = exchange.inputTokens
    if (exchange.body?.stream !== true) {
      const completion = billedFor(model, NON_STREAM_TEXT)
      const body = {
        id: 'chatcmpl-f',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: NON_STREAM_TEXT, refusal: null }, finish_reason: 'stop', logprobs: null }],
        usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      exchange.stage = 'finished'
      write(res, exchange, JSON.stringify(body), completion)
      return finish(res, exchange)
    }
    await stream(res, exchange, plan, model, prompt)
  }

  async function stream(res: http.ServerResponse, exchange: Exchange, plan: FaultPlan, model: string, prompt: number): Promise<void> {
    const { deltas, tokens } = streamPlan('openai', { chunks: plan.chunks ?? 5, word: DELTA_TEXT }, model)
    const base = { id: 'chatcmpl-fs', object: 'chat.completion.chunk', created: 1, model }
    const gone = (): boolean => exchange.clientAborted || res.destroyed
    const send = (payload: unknown, tokens = 0): boolean =>
      write(res, exchange, `data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`, tokens)
    const stall = async (at: FaultPlan['stallAt']): Promise<boolean> => {
      if (plan.stallAt !== at) return !gone()
      exchange.stage = 'stalled'
      const until = Date.now() + (plan.stallMs ?? 5_000)
      while (!gone() && Date.now() < until) await sleep(5)
      if (gone()) return false
      exchange.stage = 'streaming'
      return true
    }
    exchange.stage = 'streaming'
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    if (!send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })) return
    let sent = 0
    for (const delta of deltas) {
      if (plan.chunkDelayMs) await sleep(plan.chunkDelayMs)
      if (!send({ ...base, choices: [{ index: 0, delta: { content: delta.text }, finish_reason: null }] }, delta.tokens)) return
      if (++sent === plan.pauseAfter?.deltas) await plan.pauseAfter.until
    }
    if (!send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })) return
    if (!(await stall('usage'))) return
    if (!send({ ...base, choices: [], usage: { prompt_tokens: prompt, completion_tokens: tokens, total_tokens: prompt + tokens } })) return
    if (!(await stall('done'))) return
    if (!send('[DONE]')) return
    exchange.stage = 'finished'
    finish(res, exchange)
  }

  return upstream
}
