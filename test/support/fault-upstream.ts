/**
 * A scriptable fake OpenAI chat upstream for the fault suite. `plan` decides what the next requests
 * meet (an answer, silence, a socket destroyed before headers, an error status, a stall right before
 * the usage chunk); every exchange records how far it got and whether the proxy closed it early.
 */
import type http from 'node:http'
import { json, parseBody, sleep, startFakeServer } from './fake-server.js'

export interface FaultPlan {
  /** answer (default): JSON or SSE per the body's `stream`; hang: never answer; destroy: kill the socket on request; fail: `fail`. */
  mode?: 'answer' | 'hang' | 'destroy' | 'fail'
  /** Content deltas of a streamed answer, one token of text `tok ` each (default 5). */
  chunks?: number
  chunkDelayMs?: number
  /** Prompt tokens reported (default 12); a non-streamed answer reports 7 completion tokens. */
  promptTokens?: number
  /** Stall a stream before its usage chunk (after the finish chunk) or after it (before `[DONE]`). */
  stallAt?: 'usage' | 'done'
  /** How long a stall lasts unless the proxy closes the connection first (default 5 s). */
  stallMs?: number
  /** Bytes and headers of an error answer, sent as they are. */
  fail?: { status: number; headers?: Record<string, string>; body: string }
}

/** One request as the fake saw it, and how it ended. */
export interface Exchange {
  url: string
  body: Record<string, unknown> | null
  /** received → streaming → stalled → finished; stays where it was when the proxy went away. */
  stage: 'received' | 'streaming' | 'stalled' | 'finished'
  /** Completion tokens the answer put on the wire (one per content delta). */
  tokensWritten: number
  /** The proxy closed the connection before the answer was complete. */
  closedEarly: boolean
}

export interface FaultUpstream {
  url: string
  plan: FaultPlan
  exchanges: Exchange[]
  /** The latest exchange; throws when there is none. */
  last(): Exchange
  close(): Promise<void>
}

export const COMPLETION_TOKENS = 7

export async function startFaultUpstream(): Promise<FaultUpstream> {
  const exchanges: Exchange[] = []
  const server = await startFakeServer((req, res, raw) => {
    const exchange: Exchange = { url: req.url ?? '', body: parseBody(raw.toString('utf8')), stage: 'received', tokensWritten: 0, closedEarly: false }
    exchanges.push(exchange)
    res.once('close', () => {
      if (exchange.stage !== 'finished') exchange.closedEarly = true
    })
    void answer(req, res, exchange, upstream.plan)
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
      res.end(plan.fail.body)
      return
    }
    const model = String(exchange.body?.model ?? 'unknown')
    const prompt = plan.promptTokens ?? 12
    if (exchange.body?.stream !== true) {
      exchange.stage = 'finished'
      return json(res, 200, {
        id: 'chatcmpl-f',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'fine', refusal: null }, finish_reason: 'stop', logprobs: null }],
        usage: { prompt_tokens: prompt, completion_tokens: COMPLETION_TOKENS, total_tokens: prompt + COMPLETION_TOKENS },
      })
    }
    await stream(res, exchange, plan, model, prompt)
  }

  async function stream(res: http.ServerResponse, exchange: Exchange, plan: FaultPlan, model: string, prompt: number): Promise<void> {
    const count = plan.chunks ?? 5
    const base = { id: 'chatcmpl-fs', object: 'chat.completion.chunk', created: 1, model }
    const gone = (): boolean => exchange.closedEarly || res.destroyed
    const send = (payload: unknown, tokens = 0): boolean => {
      if (gone()) return false
      res.write(`data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`)
      exchange.tokensWritten += tokens
      return true
    }
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
    for (let i = 0; i < count; i++) {
      if (plan.chunkDelayMs) await sleep(plan.chunkDelayMs)
      if (!send({ ...base, choices: [{ index: 0, delta: { content: 'tok ' }, finish_reason: null }] }, 1)) return
    }
    if (!send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })) return
    if (!(await stall('usage'))) return
    const usage = { prompt_tokens: prompt, completion_tokens: count, total_tokens: prompt + count }
    if (!send({ ...base, choices: [], usage })) return
    if (!(await stall('done'))) return
    if (!send('[DONE]')) return
    exchange.stage = 'finished'
    res.end()
  }

  return upstream
}
