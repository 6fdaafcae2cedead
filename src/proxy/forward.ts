import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { BudgetStore, Refusal, Reservation } from '../budget/types.js'
import type { Micros } from '../money.js'
import type { Config } from '../config.js'
import { budgetUnavailable, ProxyError, upstreamUnreachable } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { costMicros, tokensCost } from '../pricing/cost.js'
import type { Price } from '../pricing/types.js'
import type { Json } from '../providers/body.js'
import type { ProviderAdapter, RequestFacts, RouteMatch, UpstreamCredential } from '../providers/types.js'
import { relayableResponseHeaders } from '../http/response-headers.js'
import { microsToUsd } from '../money.js'
import { guardEventLimit, MAX_BODY_BYTES, UpstreamTooLargeError } from '../stream/limits.js'
import { meterStream } from '../stream/meter.js'
import { createOutputCounter } from '../tokens/output-counter.js'
import { loweredOutputCap, type ReservationPlan } from './plan.js'
import { refusalError } from './refusal.js'
import { REMAINING_HEADER, toErrorInfo, usdHeader } from './respond.js'
import type { Summary } from './summary.js'
import type { Target } from './target.js'
import type { UpstreamClient, UpstreamResponse } from './upstream.js'

export interface ForwardDeps {
  config: Config
  store: BudgetStore
  upstream: UpstreamClient
  logger: Logger
  metrics: Metrics
  /** Fires after the shutdown grace period: in-flight upstream calls are aborted and streams cut. */
  shutdown: AbortSignal
  now: () => number
}

const MAX_ERROR_BODY_BYTES = 1024 * 1024
const MAX_FREE_RESPONSE_BYTES = 16 * 1024 * 1024
// A settlement that fails (Redis slow or briefly away) is retried after these pauses, then logged.
const SETTLE_RETRY_DELAYS_MS = [100, 500, 2_000]

/**
 * The forwarding half of the pipeline: free requests pass through; metered ones are sent with their
 * reservation, relayed (streams through the meter) and settled exactly once, whatever happens.
 */
export function createForwarder(deps: ForwardDeps) {
  const { config, store } = deps
  const now = deps.now

  async function forwardFree(
    request: FastifyRequest,
    reply: FastifyReply,
    adapter: ProviderAdapter,
    target: Target,
    credential: UpstreamCredential | null,
    summary: Summary,
  ): Promise<void> {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const upstreamRequest = adapter.buildUpstream({
      route: { operation: 'free', pathModel: null, pathStream: null },
      path: target.path,
      query: target.query,
      headers: request.headers,
      credential,
      body: raw,
    })
    const abort = abortOnClientClose(reply, deps.shutdown)
    const method = request.method === 'HEAD' ? 'HEAD' : request.method === 'GET' ? 'GET' : 'POST'
    const response = await deps.upstream.send(upstreamRequest, abort.signal, method)
    summary.outcome = 'free'
    // Streamed through, never buffered whole; a reply past the cap is cut (a model list is a few hundred KiB).
    reply.hijack()
    reply.raw.writeHead(response.status, relayableResponseHeaders(response.headers))
    try {
      await pipeline(response.body, capped(MAX_FREE_RESPONSE_BYTES), reply.raw)
    } catch {
      // Cut at the cap, or either side went away: the client sees a truncated answer, nothing is charged.
      response.body.destroy()
      reply.raw.destroy()
    }
  }

  interface Forward {
    request: FastifyRequest
    reply: FastifyReply
    adapter: ProviderAdapter
    target: Target
    route: RouteMatch
    facts: RequestFacts
    price: Price
    plan: ReservationPlan
    body: Json
    raw: Buffer
    credential: UpstreamCredential
    reservation: Reservation
    summary: Summary
    started: number
    /**
     * The request's input tokens as the provider bills them (its tokenizer, its count endpoint, Mistral's
     * estimate), stopping past `limitTokens`; null when it cannot count. Absent when the plan's input is exact.
     */
    countInput?: (limitTokens: number) => Promise<number | null>
  }

  /**
   * The input a stream that ended without reported usage is charged: counted (off the event loop, after the
   * client's answer) when the plan held only the byte bound; the bound when the count fails or is no smaller.
   */
  async function endedInput(f: Forward): Promise<{ tokens: number; micros: Micros }> {
    const { plan, price } = f
    const bound = { tokens: plan.inputTokens, micros: plan.inputMicros }
    if (f.countInput === undefined) return bound
    const counted = await f.countInput(plan.inputTokens).catch(() => null)
    if (counted === null || counted >= plan.inputTokens) return bound
    return { tokens: counted, micros: tokensCost(counted, Math.max(price.inputPer1M, price.cacheWritePer1M)) }
  }

  async function forwardMetered(f: Forward): Promise<void> {
    const { reply, adapter, route, facts, price, plan, reservation, summary } = f
    let settled = false
    const settle = async (actual: Micros, outcome: string): Promise<void> => {
      if (settled) return
      settled = true
      summary.outcome = outcome
      summary.chargedUsd = microsToUsd(actual)
      // Settlement is idempotent per request id, so a call that timed out (and may yet run) is retried.
      for (let attempt = 0; ; attempt++) {
        try {
          await store.settle(reservation, actual)
          return
        } catch (error) {
          const delay = SETTLE_RETRY_DELAYS_MS[attempt]
          if (delay === undefined || deps.shutdown.aborted) {
            // The hold stays booked (conservative) and expires with its windows; the log says so.
            deps.logger.error({ err: error, key: summary.key }, 'settlement failed; the hold stays booked until its windows end')
            return
          }
          await new Promise((resolve) => setTimeout(resolve, delay))
        }
      }
    }

    let sent = false
    try {
      const lowered = loweredOutputCap(plan, price, reservation.reservedMicros)
      if (lowered !== null) summary.maxTokens = lowered
      const changed = adapter.prepareBody(route, f.body, facts, lowered)
      const upstreamRequest = adapter.buildUpstream({
        route,
        path: f.target.path,
        query: f.target.query,
        headers: f.request.headers,
        credential: f.credential,
        body: changed ? Buffer.from(JSON.stringify(f.body)) : f.raw,
      })
      const abort = abortOnClientClose(reply, deps.shutdown)
      // Gone before anything was sent: the provider was never called, so nothing is charged.
      if (abort.signal.aborted) return await settle(0, 'client_closed')

      let response: UpstreamResponse
      try {
        summary.addedMs = Math.round((performance.now() - f.started) * 1000) / 1000
        sent = true
        response = await deps.upstream.send(upstreamRequest, abort.signal)
      } catch (error) {
        if (deps.shutdown.aborted) {
          await settle(facts.stream ? plan.inputMicros + plan.feeMicros : reservation.reservedMicros, 'shutdown')
          throw shuttingDown()
        }
        if (abort.signal.aborted) {
          // Gone before the upstream answered: a stream had produced nothing yet; a non-streamed
          // request may have been fully generated, so it keeps its whole hold.
          if (!facts.stream || price.hiddenReasoning) return await settle(reservation.reservedMicros, 'client_closed')
          const input = await endedInput(f)
          summary.inputTokens = input.tokens
          return await settle(input.micros + plan.feeMicros, 'client_closed')
        }
        await settle(0, 'upstream_unreachable')
        throw error
      }
      summary.status = response.status
      const headers = relayableResponseHeaders(response.headers)
      if (lowered !== null) headers['x-loopers-max-tokens'] = String(lowered)
      const remaining = reservation.remainingMicros ?? null
      if (remaining !== null) headers[REMAINING_HEADER] = usdHeader(remaining)

      if (response.status >= 400) {
        // Providers do not bill refused requests (unless the adapter says so): refund, relay the error unchanged.
        const bytes = await readBody(response, MAX_ERROR_BODY_BYTES).catch(() => Buffer.alloc(0))
        reply.code(response.status).headers(headers).send(bytes)
        await settle(adapter.errorBillsInput?.(route, response.status, safeJson(bytes)) === true ? plan.inputMicros : 0, 'upstream_error')
        return
      }

      if (!facts.stream) {
        let bytes: Buffer
        try {
          bytes = await readBody(response, MAX_BODY_BYTES)
        } catch (error) {
          if (deps.shutdown.aborted) {
            await settle(reservation.reservedMicros, 'shutdown')
            throw shuttingDown()
          }
          if (abort.signal.aborted) return await settle(reservation.reservedMicros, 'client_closed')
          // Too large or broken: the provider may have billed it all, so the whole hold is charged.
          await settle(reservation.reservedMicros, 'upstream_failed')
          if (error instanceof UpstreamTooLargeError) throw upstreamUnreachable(`the provider's answer exceeded the ${error.limitBytes}-byte limit`, { cause: error })
          throw upstreamUnreachable('the provider connection broke before the answer was complete', { cause: error })
        }
        const usage = adapter.usageFromHeaders?.(route, response.headers) ?? adapter.usageFromBody(route, safeJson(bytes))
        // No usage reported: charge what was held, never less than may have been spent.
        // Hosted-tool fees are charged at the calls the request allowed (usage does not itemise them here).
        const actual = usage === null ? reservation.reservedMicros : costMicros(price, { inputTokens: plan.inputTokens, ...usage }) + plan.feeMicros
        summary.inputTokens = usage?.inputTokens
        summary.outputTokens = usage?.outputTokens
        // Answer first: the hold keeps the money booked until settlement lands a round trip later.
        reply.code(response.status).headers(headers).send(bytes)
        await settle(actual, 'completed')
        return
      }

      await relayStream(f, response, headers, settle)
    } finally {
      // A fault this code did not foresee: nothing is charged if the provider was never called,
      // else the whole hold (the provider may have generated all of it).
      if (!settled) await settle(sent ? reservation.reservedMicros : 0, 'aborted')
    }
  }

  async function relayStream(
    f: Forward,
    response: UpstreamResponse,
    headers: Record<string, unknown>,
    settle: (actual: Micros, outcome: string) => Promise<void>,
  ): Promise<void> {
    const { reply, adapter, route, facts, price, plan, reservation, summary } = f
    const guarded = guardEventLimit(adapter.createStreamParser(route, createOutputCounter(price.tokenizer)))
    const parser = guarded.parser
    // A count (or estimate) never passes the request's cap: the provider stops there, whatever the count says.
    const cap = facts.maxOutputTokens
    const outputTokens = (): number => {
      const counted = parser.outputTokens()
      return cap === null || parser.reported().outputTokens !== undefined ? counted : Math.min(counted, cap)
    }
    // Input is held at the plan's until the provider reports it, or until it is counted: at the first refused
    // extension (the bound's surplus may hold the rest of the stream), else once the stream has ended.
    let input = { tokens: plan.inputTokens, micros: plan.inputMicros }
    let inputCounted = false
    const countInput = async (): Promise<void> => {
      if (inputCounted || parser.reported().inputTokens !== undefined) return
      inputCounted = true
      input = await endedInput(f)
    }
    const cost = (): Micros => {
      const reported = parser.reported()
      if (reported.inputTokens === undefined) return input.micros + plan.feeMicros + tokensCost(outputTokens(), price.outputPer1M)
      return costMicros(price, { ...reported, outputTokens: outputTokens() }) + plan.feeMicros
    }
    const slice = tokensCost(config.streamSliceTokens, price.outputPer1M)
    reply.hijack()
    reply.raw.writeHead(response.status, headers as Record<string, string>)
    // Headers go out now, not with the first whole event: the client learns at once that its stream began.
    reply.raw.flushHeaders()
    deps.metrics.streamStarted()
    const result = await meterStream({
      stopSignal: deps.shutdown,
      stopError: () => toErrorInfo(shuttingDown()),
      parser,
      upstream: response.body,
      client: reply.raw,
      reservedMicros: () => reservation.reservedMicros,
      costMicros: cost,
      extend: async (need) => {
        try {
          let extended = await store.extend(reservation, need, need + slice)
          if (!extended.ok && holdsSurplus(extended) && f.countInput !== undefined && !inputCounted && parser.reported().inputTokens === undefined) {
            await countInput()
            const rest = cost() - reservation.reservedMicros
            if (rest <= 0) return null
            extended = await store.extend(reservation, rest, rest + slice)
          }
          if (extended.ok) return null
          if (extended.heldMicros !== undefined) summary.heldUsd = microsToUsd(extended.heldMicros)
          return toErrorInfo(refusalError(extended, adapter.id, now()))
        } catch (error) {
          return toErrorInfo(budgetUnavailable('the budget store became unavailable during the stream', { cause: error }))
        }
      },
      cutoffFrame: (error) => adapter.cutoffFrame(route, error),
      upstreamFailure: () => toErrorInfo(upstreamUnreachable('the provider connection broke during the stream')),
    }).finally(() => deps.metrics.streamEnded())
    // Ended without reported input (cut, client gone, upstream broke): charged the input the provider bills.
    await countInput()
    summary.inputTokens = parser.reported().inputTokens ?? input.tokens
    summary.outputTokens = outputTokens()
    if (result.error !== null) {
      summary.code = result.error.code
      if (typeof result.error.details?.window === 'string') summary.window = result.error.details.window
    }
    // Reasoning the stream never showed is billed by the provider: without its reported usage, the
    // whole hold (the request's worst case) is what may have been spent. So is an event past the size
    // limit: what the provider generated beyond it is unknown.
    const unreported = price.hiddenReasoning && parser.reported().outputTokens === undefined
    if (guarded.overflowed()) summary.cause = 'upstream stream event above the size limit'
    await settle(unreported || guarded.overflowed() ? Math.max(reservation.reservedMicros, cost()) : cost(), result.outcome)
  }

  return { forwardFree, forwardMetered }
}

/**
 * A refusal that leaves the stream its own hold: the budget ran out with this hold inside the limit. A revoked
 * key, or a limit lowered below what is already used, stops the stream at once, whatever the hold still covers.
 */
function holdsSurplus(refusal: Refusal): boolean {
  if (refusal.reason !== 'budget_exceeded' && refusal.reason !== 'session_budget_exceeded') return false
  return refusal.limitMicros !== undefined && refusal.spentMicros !== undefined && refusal.spentMicros <= refusal.limitMicros
}

function safeJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch {
    return null
  }
}

function shuttingDown(): ProxyError {
  return budgetUnavailable('the proxy is shutting down; retry the request')
}

/** An AbortController that fires when the client goes away before the response is complete, or at shutdown. */
function abortOnClientClose(reply: FastifyReply, shutdown?: AbortSignal): AbortController {
  const controller = new AbortController()
  const raw = reply.raw
  const onShutdown = (): void => controller.abort()
  if (shutdown?.aborted) controller.abort()
  // The shutdown signal lives as long as the server: its listener must go when the response does.
  else shutdown?.addEventListener('abort', onShutdown, { once: true })
  if (raw.destroyed && !raw.writableEnded) controller.abort()
  raw.once('close', () => {
    shutdown?.removeEventListener('abort', onShutdown)
    if (!raw.writableEnded) controller.abort()
  })
  return controller
}

/** A pass-through that fails once more than `limit` bytes went through it. */
function capped(limit: number): Transform {
  let size = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length
      if (size > limit) return done(new Error(`free response above ${limit} bytes`))
      done(null, chunk)
    },
  })
}

/** Reads a whole upstream body; past `limit` bytes the upstream is released and UpstreamTooLargeError thrown. */
async function readBody(response: UpstreamResponse, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      response.body.destroy()
      throw new UpstreamTooLargeError('an upstream body', limit)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
