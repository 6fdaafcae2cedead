import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { BudgetStore, KeyAdmin, Micros, Reservation, ReserveResult } from '../budget/types.js'
import { microsToUsd } from '../money.js'
import type { Config } from '../config.js'
import {
  budgetUnavailable,
  internalError,
  invalidKey,
  invalidRequest,
  modelNotPriced,
  notFound,
  ProxyError,
  StoreUnavailableError,
  upstreamUnreachable,
} from '../errors.js'
import { hashKey, isProxyKey } from '../keys.js'
import { costMicros, tokensCost } from '../pricing/cost.js'
import type { Price, PricingTable } from '../pricing/types.js'
import { isObject, type Json } from '../providers/body.js'
import type { AdapterRegistry } from '../providers/registry.js'
import type { ErrorInfo, ProviderAdapter, ProviderId, RequestFacts, RouteMatch, UpstreamCredential } from '../providers/types.js'
import type { Metrics } from '../metrics.js'
import { meterStream } from '../stream/meter.js'
import { mediaParts } from '../tokens/bound.js'
import { readLoopersCredential, readSession } from './control-headers.js'
import type { Inflight } from './inflight.js'
import { relayableResponseHeaders } from './headers.js'
import { loweredOutputCap, planReservation, type ReservationPlan } from './plan.js'
import { refusalError } from './refusal.js'
import { sendError, toErrorInfo } from './respond.js'
import { parseTarget, type Target } from './target.js'
import type { UpstreamClient, UpstreamResponse } from './upstream.js'

export interface PipelineDeps {
  config: Config
  store: BudgetStore
  keys: KeyAdmin
  pricing: PricingTable
  adapters: AdapterRegistry
  upstream: UpstreamClient
  logger: Logger
  metrics: Metrics
  inflight: Inflight
  /** Fires after the shutdown grace period: in-flight upstream calls are aborted and streams cut. */
  shutdown: AbortSignal
  now?: () => number
}

/** One summary line per request; never a key, credential, URL query or prompt. */
interface Summary {
  key?: string
  provider?: ProviderId
  op?: string
  model?: string
  stream?: boolean
  status?: number
  outcome?: string
  code?: string
  /** Input tokens the reservation assumed (bound or exact count). */
  inputBound?: number
  /** Tokens charged: reported by the provider, else counted by the proxy. */
  inputTokens?: number
  outputTokens?: number
  reservedUsd?: number
  chargedUsd?: number
  maxTokens?: number
  /** The refusing budget window. */
  window?: string
  /** Why a 5xx happened (store or transport fault), never a request detail. */
  cause?: string
  /** Milliseconds spent before the upstream was called. */
  addedMs?: number
  priced?: boolean
}

const MAX_ERROR_BODY_BYTES = 1024 * 1024

/**
 * The request path: authenticate → resolve route → describe → price → reserve → forward → meter → settle.
 * Every request that reserved settles exactly once, whatever happens after the reservation.
 */
export function createPipeline(deps: PipelineDeps) {
  const now = deps.now ?? Date.now
  const { config, store, pricing, adapters } = deps

  return async function handle(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const started = performance.now()
    const summary: Summary = {}
    let adapter: ProviderAdapter | null = null
    deps.inflight.begin()
    try {
      const target = parseTarget(request.url)
      if (target === null) throw notFound('unknown route: paths start with /{provider}/, e.g. /openai/v1/chat/completions')
      adapter = adapters[target.provider]
      summary.provider = adapter.id
      const query = new URLSearchParams(target.query)
      const proxyKey = target.pathKey ?? adapter.readKey(request.headers, query)
      if (proxyKey === null) throw invalidKey('missing Loopers proxy key: use your lp- key as the API key')
      if (!isProxyKey(proxyKey)) throw invalidKey('not a Loopers proxy key (lp- followed by 43 letters and digits)')
      const keyHash = hashKey(proxyKey)
      summary.key = keyHash.slice(0, 8)
      const credential =
        notProxyKey(readLoopersCredential(request.headers, config.credentials.awsRegion)) ??
        notProxyKey(target.pathKey === null ? null : adapter.readClientCredential(request.headers, query)) ??
        adapter.defaultCredential()

      const method = request.method
      if (adapter.isFree(method, target.path)) {
        await authorizeFree(keyHash, adapter.id)
        summary.op = 'free'
        await forwardFree(request, reply, adapter, target, credential, summary)
        return
      }
      const route = method === 'POST' ? adapter.findRoute(method, target.path, query) : null
      if (route === null) {
        throw invalidRequest(`${method} ${target.path} is not a metered ${adapter.id} operation; Loopers does not forward it unmetered`)
      }
      summary.op = route.operation
      if (credential === null) {
        throw invalidRequest(`no upstream credential: send X-Loopers-Provider-Key or set the server's LOOPERS_${adapter.id.toUpperCase()}_API_KEY`)
      }
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
      const body = parseJsonBody(raw)
      const facts = checkFacts(adapter.describe(route, body))
      summary.model = facts.model
      summary.stream = facts.stream
      const price = pricing.lookup(adapter.id, facts.model)
      summary.priced = price !== null
      if (price === null) throw modelNotPriced(`no price for ${adapter.id} model '${facts.model}': add it to the pricing file (LOOPERS_PRICING_PATH)`)
      const session = readSession(request.headers)

      const bound = adapter.boundInputTokens(route, body, raw, price.tokensPerMedia)
      let plan = planReservation(facts, price, bound, config.streamSliceTokens)
      const requestId = randomUUID()
      const reserveInput = { keyHash, provider: adapter.id, requestId, session }
      let result = await reserve({ ...reserveInput, minMicros: plan.minMicros, maxMicros: plan.maxMicros })
      if (!result.ok && (result.reason === 'budget_exceeded' || result.reason === 'session_budget_exceeded')) {
        // The cheap bound does not fit: count exactly, and only as far as the budget could reach.
        const exact = exactPlan(adapter, route, body, facts, price, plan, result)
        if (exact !== null) {
          plan = exact
          result = await reserve({ ...reserveInput, minMicros: plan.minMicros, maxMicros: plan.maxMicros })
        }
      }
      if (!result.ok) throw refusalError(result, adapter.id, now())
      const reservation = result.reservation
      summary.inputBound = plan.inputTokens
      summary.reservedUsd = microsToUsd(reservation.reservedMicros)
      await forwardMetered({ request, reply, adapter, target, route, facts, price, plan, body, raw, credential, reservation, summary, started })
    } catch (error) {
      const proxyError = toProxyError(error)
      summary.code = proxyError.code
      summary.outcome ??= proxyError.status >= 500 ? 'error' : 'refused'
      if (typeof proxyError.details?.window === 'string') summary.window = proxyError.details.window
      if (!reply.sent && !reply.raw.headersSent) sendError(reply, adapter, proxyError)
      if (proxyError.status >= 500 && proxyError.cause instanceof Error) summary.cause = proxyError.cause.message
      if (proxyError.status >= 500 && !(error instanceof ProxyError)) deps.logger.error({ err: error }, 'unexpected error')
    } finally {
      summary.status ??= reply.raw.statusCode
      const ms = performance.now() - started
      deps.logger.info({ ...summary, ms: Math.round(ms * 100) / 100 }, 'request')
      record(summary, ms)
      deps.inflight.end()
    }
  }

  function record(summary: Summary, ms: number): void {
    const refused = summary.outcome === 'refused' || summary.outcome === 'error'
    deps.metrics.recordRequest({
      provider: summary.provider ?? 'none',
      model: summary.model === undefined ? '_none' : summary.priced ? summary.model : '_unpriced',
      outcome: summary.outcome ?? 'error',
      ...(refused && summary.code !== undefined ? { refusal: { reason: summary.code, window: summary.window ?? '' } } : {}),
      cutoff: summary.outcome === 'cutoff',
      spendUsd: summary.chargedUsd ?? 0,
      inputTokens: summary.chargedUsd === undefined ? 0 : (summary.inputTokens ?? 0),
      outputTokens: summary.chargedUsd === undefined ? 0 : (summary.outputTokens ?? 0),
      durationSeconds: ms / 1000,
      ...(summary.addedMs === undefined ? {} : { addedSeconds: summary.addedMs / 1000 }),
      ...(summary.key === undefined ? {} : { key: summary.key }),
    })
  }

  async function reserve(input: Parameters<BudgetStore['reserve']>[0]): Promise<ReserveResult> {
    try {
      return await store.reserve(input)
    } catch (error) {
      if (error instanceof StoreUnavailableError) {
        // The call may have run in Redis before it timed out: release or block that request id.
        store.abandon(input.keyHash, input.requestId).catch(() => undefined)
        throw budgetUnavailable('the budget store is unavailable; no request is forwarded until it answers', { cause: error })
      }
      throw error
    }
  }

  function exactPlan(
    adapter: ProviderAdapter,
    route: RouteMatch,
    body: Json,
    facts: RequestFacts,
    price: Price,
    plan: ReservationPlan,
    refusal: Extract<ReserveResult, { ok: false }>,
  ): ReservationPlan | null {
    const available = Math.max(0, (refusal.limitMicros ?? 0) - (refusal.spentMicros ?? 0))
    const inputRate = Math.max(price.inputPer1M, price.cacheWritePer1M)
    const affordable = Math.floor((available * 1_000_000) / Math.max(1, inputRate)) + 1
    const exact = adapter.countInputTokens(route, body, facts.model, affordable)
    if (exact === null) return null
    const counted = exact + (mediaParts(body) ?? Number.POSITIVE_INFINITY) * price.tokensPerMedia
    if (counted >= plan.inputTokens || counted > affordable) return null
    return planReservation(facts, price, counted, config.streamSliceTokens)
  }

  async function authorizeFree(keyHash: string, provider: ProviderId): Promise<void> {
    let record
    try {
      record = await deps.keys.getKey(keyHash)
    } catch (error) {
      throw budgetUnavailable('the budget store is unavailable; no request is forwarded until it answers', { cause: error })
    }
    if (record === null) throw refusalError({ ok: false, reason: 'invalid_key' }, provider, now())
    if (!record.active) throw refusalError({ ok: false, reason: 'key_revoked' }, provider, now())
    if (!record.providers.includes(provider)) throw refusalError({ ok: false, reason: 'provider_not_allowed' }, provider, now())
  }

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
    const bytes = await readBody(response, Number.POSITIVE_INFINITY)
    reply.code(response.status).headers(relayableResponseHeaders(response.headers)).send(bytes)
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
  }

  async function forwardMetered(f: Forward): Promise<void> {
    const { reply, adapter, route, facts, price, plan, reservation, summary } = f
    let settled = false
    const settle = async (actual: Micros, outcome: string): Promise<void> => {
      if (settled) return
      settled = true
      summary.outcome = outcome
      summary.chargedUsd = microsToUsd(actual)
      try {
        await store.settle(reservation, actual)
      } catch (error) {
        // The hold stays booked (conservative) and expires with its window; the log says so.
        deps.logger.error({ err: error, key: summary.key }, 'settlement failed; the hold stays booked until its windows end')
      }
    }

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
        response = await deps.upstream.send(upstreamRequest, abort.signal)
      } catch (error) {
        if (deps.shutdown.aborted) {
          await settle(facts.stream ? plan.inputMicros : reservation.reservedMicros, 'shutdown')
          throw shuttingDown()
        }
        if (abort.signal.aborted) {
          // Gone before the upstream answered: a stream had produced nothing yet; a non-streamed
          // request may have been fully generated, so it keeps its whole hold.
          return await settle(facts.stream ? plan.inputMicros : reservation.reservedMicros, 'client_closed')
        }
        await settle(0, 'upstream_unreachable')
        throw error
      }
      summary.status = response.status
      const headers = relayableResponseHeaders(response.headers)
      if (lowered !== null) headers['x-loopers-max-tokens'] = String(lowered)

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
          bytes = await readBody(response, Number.POSITIVE_INFINITY)
        } catch (error) {
          if (deps.shutdown.aborted) {
            await settle(reservation.reservedMicros, 'shutdown')
            throw shuttingDown()
          }
          if (abort.signal.aborted) return await settle(reservation.reservedMicros, 'client_closed')
          await settle(reservation.reservedMicros, 'upstream_failed')
          throw upstreamUnreachable('the provider connection broke before the answer was complete', { cause: error })
        }
        const usage = adapter.usageFromHeaders?.(route, response.headers) ?? adapter.usageFromBody(route, safeJson(bytes))
        // No usage reported: charge what was held, never less than may have been spent.
        const actual = usage === null ? reservation.reservedMicros : costMicros(price, { inputTokens: plan.inputTokens, ...usage })
        summary.inputTokens = usage?.inputTokens
        summary.outputTokens = usage?.outputTokens
        // Answer first: the hold keeps the money booked until settlement lands a round trip later.
        reply.code(response.status).headers(headers).send(bytes)
        await settle(actual, 'completed')
        return
      }

      await relayStream(f, response, headers, settle)
    } finally {
      if (!settled) await settle(reservation.reservedMicros, 'aborted')
    }
  }

  async function relayStream(
    f: Forward,
    response: UpstreamResponse,
    headers: Record<string, unknown>,
    settle: (actual: Micros, outcome: string) => Promise<void>,
  ): Promise<void> {
    const { reply, adapter, route, price, plan, reservation, summary } = f
    const parser = adapter.createStreamParser(route)
    const outputTokens = (): number => parser.reported().outputTokens ?? parser.estimatedOutputTokens()
    const cost = (): Micros => {
      const reported = parser.reported()
      if (reported.inputTokens === undefined) return plan.inputMicros + tokensCost(outputTokens(), price.outputPer1M)
      return costMicros(price, { ...reported, outputTokens: outputTokens() })
    }
    const slice = tokensCost(config.streamSliceTokens, price.outputPer1M)
    reply.hijack()
    reply.raw.writeHead(response.status, headers as Record<string, string>)
    deps.metrics.streamStarted()
    const result = await meterStream({
      stopSignal: deps.shutdown,
      stopError: toErrorInfo(shuttingDown()),
      parser,
      upstream: response.body,
      client: reply.raw,
      reservedMicros: () => reservation.reservedMicros,
      costMicros: cost,
      extend: async (need) => {
        try {
          const extended = await store.extend(reservation, need, need + slice)
          return extended.ok ? null : toErrorInfo(refusalError(extended, adapter.id, now()))
        } catch (error) {
          return toErrorInfo(budgetUnavailable('the budget store became unavailable during the stream', { cause: error }))
        }
      },
      cutoffFrame: (error) => adapter.cutoffFrame(route, error),
      upstreamFailure: toErrorInfo(upstreamUnreachable('the provider connection broke during the stream')),
    }).finally(() => deps.metrics.streamEnded())
    summary.inputTokens = parser.reported().inputTokens ?? plan.inputTokens
    summary.outputTokens = outputTokens()
    if (result.error !== null) summary.code = result.error.code
    await settle(cost(), result.outcome)
  }
}

/** A client-sent credential unless it is a Loopers key: a proxy key is never sent upstream. */
function notProxyKey(credential: UpstreamCredential | null): UpstreamCredential | null {
  if (credential === null) return null
  const id = credential.kind === 'apiKey' ? credential.value : credential.accessKeyId
  return isProxyKey(id) ? null : credential
}

/** The request body as a JSON object; invalid_request otherwise. */
function parseJsonBody(raw: Buffer): Json {
  if (raw.length === 0) throw invalidRequest('the request needs a JSON body')
  let parsed: unknown
  try {
    parsed = JSON.parse(raw.toString('utf8'))
  } catch {
    throw invalidRequest('the request body is not valid JSON')
  }
  if (!isObject(parsed)) throw invalidRequest('the request body must be a JSON object')
  return parsed
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

/** Reads a whole upstream body, refusing more than `limit` bytes. */
async function readBody(response: UpstreamResponse, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      response.body.destroy()
      break
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

function toProxyError(error: unknown): ProxyError {
  if (error instanceof ProxyError) return error
  if (error instanceof StoreUnavailableError) return budgetUnavailable('the budget store is unavailable', { cause: error })
  return internalError('internal proxy error', { cause: error })
}

// No model generates more than this in one answer, nor more choices in one request (OpenAI's `n` ≤ 128);
// within them every bound stays an exact integer (2^20 × 128 tokens × $1,000/1M < 2^53 micro-USD).
const MAX_OUTPUT_TOKENS_PER_CHOICE = 1_048_576
const MAX_CHOICES = 128

/** Refuses output caps and choice counts no provider accepts, so reservation arithmetic stays exact. */
function checkFacts(facts: RequestFacts): RequestFacts {
  if (!Number.isSafeInteger(facts.choices) || facts.choices < 1 || facts.choices > MAX_CHOICES) {
    throw invalidRequest(`a request may ask for 1 to ${MAX_CHOICES} choices`)
  }
  if (facts.maxOutputTokens !== null && facts.maxOutputTokens > MAX_OUTPUT_TOKENS_PER_CHOICE * facts.choices) {
    throw invalidRequest(`the output cap may be at most ${MAX_OUTPUT_TOKENS_PER_CHOICE} tokens per choice`)
  }
  return facts
}

export type { ErrorInfo }
