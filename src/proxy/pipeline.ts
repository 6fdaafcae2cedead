import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { BudgetStore, KeyAdmin, ReserveResult } from '../budget/types.js'
import { newRequestId } from '../budget/request-id.js'
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
} from '../errors.js'
import { createLoopCheck } from '../loop/check.js'
import { unsafePathReason } from '../http/upstream-url.js'
import { isProxyKey } from '../keys.js'
import { logRequest } from '../logger.js'
import type { Price, PricingTable } from '../pricing/types.js'
import type { AdapterRegistry } from '../providers/registry.js'
import type { ProviderAdapter, ProviderId, RequestFacts, RouteMatch, UpstreamCredential } from '../providers/types.js'
import type { Metrics } from '../metrics.js'
import { REFERENCED_CONTEXT_TOKENS } from '../tokens/bound.js'
import { sharedTokenCounter } from '../tokens/worker.js'
import { blockedByHolds, createAdmission, settledRoom } from './admission.js'
import { mayHaveControlHeaders, readLoopersCredential, readSession } from './control-headers.js'
import type { Inflight } from './inflight.js'
import { isKeyRefusal, type KeyGate } from './key-gate.js'
import { checkFacts, planReservation, type ReservationPlan } from './plan.js'
import { refusalError } from './refusal.js'
import { sendError } from './respond.js'
import { countExactInput, deferInputCount, type ExactCountInput } from './exact-count.js'
import type { Forward } from './forward-shared.js'
import { createForwarder, prebuildUpstream } from './forward.js'
import { recordEventLater } from './record-event.js'
import { keepRequest } from './keep-shapes.js'
import { readRequestBody } from './request-body.js'
import { createSummary, recordRequest, type Summary } from './summary.js'
import { parseTarget, readQuery, type Target } from './target.js'
import type { UpstreamClient } from './upstream.js'

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


/**
 * The request path: authenticate → resolve route → describe → price → reserve → forward → meter → settle.
 * Every request that reserved settles exactly once, whatever happens after the reservation. A key the store
 * refuses is dropped from `gate`'s recently-valid keys, so its next request is checked before its body is read.
 */
export function createPipeline(deps: PipelineDeps, gate: Pick<KeyGate, 'forget'>) {
  const now = deps.now ?? Date.now
  const { config, store, pricing, adapters } = deps
  // Exact token counts off the event loop: the process's shared counting worker.
  const counter = sharedTokenCounter()
  const counting = { counter, upstream: deps.upstream }
  const admission = createAdmission(now)
  // Each settlement's end releases a hold: the key's queue of requests blocked by holds retries at once.
  const { forwardFree, forwardMetered } = createForwarder({ ...deps, now, counter, released: (keyHash) => admission.released(keyHash) })

  /**
   * The route's handler. It returns nothing: the request goes on in `handle`, whose promise no one awaits (a
   * returned promise would cost a request Fastify's two reactions on it); a fault of its own goes to the error handler.
   */
  return function handleRequest(request: FastifyRequest, reply: FastifyReply): void {
    void handle(request, reply)
  }

  /** Every step of one request; never rejects. */
  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const started = performance.now()
    const summary = createSummary()
    let adapter: ProviderAdapter | null = null
    deps.inflight.begin()
    try {
      try {
        // The key gate (key-gate.ts) read the target with the key; a request it did not see is read here.
        const target = request.loopersKey?.target ?? parseTarget(request.url)
        if (target === null) throw notFound('unknown route: paths start with /{provider}/, e.g. /openai/v1/chat/completions')
        adapter = adapters[target.provider]
        summary.provider = adapter.id
        // Early, before any store call: no path may leave a base URL (adapters apply their own stricter rule when building).
        const unsafe = unsafePathReason(target.path, { allowEncodedSlash: true })
        if (unsafe !== null) throw invalidRequest(`${unsafe}: Loopers forwards only the provider's own API paths`)
        // From here on the target's query is the canonical one: what the meter reads is what goes upstream.
        const { params: query, query: canonical } = readQuery(request.url, target)
        target.query = canonical
        // The key gate (key-gate.ts) read and checked the proxy key before the body was read, on every route.
        const keyHash = request.loopersKey?.keyHash
        if (keyHash === undefined) throw invalidKey('missing Loopers proxy key: use your lp- key as the API key')
        summary.key = keyHash.slice(0, 8)
        const control = mayHaveControlHeaders(request)
        const credential =
          notProxyKey(control ? readLoopersCredential(request.headers, config.credentials.awsRegion) : null) ??
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
        // Its own frame: what admission reads of the body is gone by the time the request is forwarded.
        await forwardMetered(await admitMetered({ request, reply, adapter, target, route, credential, keyHash, summary, started, control }))
      } catch (error) {
        const proxyError = toProxyError(error)
        summary.code = proxyError.code
        if (request.loopersKey !== null && isKeyRefusal(proxyError.code)) gate.forget(request.loopersKey.keyHash)
        summary.outcome ??= proxyError.status >= 500 ? 'error' : 'refused'
        if (typeof proxyError.details?.window === 'string') summary.window = proxyError.details.window
        if (!reply.sent && !reply.raw.headersSent) sendError(reply, adapter, proxyError)
        if (proxyError.status >= 500 && proxyError.cause instanceof Error) summary.cause = proxyError.cause.message
        if (proxyError.status >= 500 && !(error instanceof ProxyError)) deps.logger.error({ err: error }, 'unexpected error')
      } finally {
        summary.status ??= reply.raw.statusCode
        const ms = performance.now() - started
        logRequest(deps.logger, summary, ms)
        recordRequest(deps.metrics, summary, ms)
        recordEventLater(deps.keys, deps.metrics, summary, now)
        deps.inflight.end()
        keepRequest(request, reply, summary)
      }
      // What Fastify does when a handler's promise ends with no answer given and the client still there: an empty one
      // (a request refused at shutdown before it was forwarded).
      if (!reply.sent && !reply.raw.headersSent && !request.raw.aborted && request.socket?.destroyed === false) reply.send()
    } catch (fault) {
      // A failure of the steps above: to the error handler while no answer began (as Fastify does with a rejected
      // handler); after that, it has no one to answer, and Fastify, which has no logger, would not log it.
      try {
        if (!reply.sent) {
          reply.send(fault instanceof Error ? fault : new Error(String(fault)))
          return
        }
      } catch (error) {
        fault = error
      }
      deps.logger.error({ err: fault }, 'unhandled error')
    }
  }

  /** Reads a metered request's body, describes, prices and reserves it: the request as forwardMetered takes it. */
  async function admitMetered(m: Metered): Promise<Forward> {
    const { request, reply, adapter, target, route, credential, keyHash, summary, started, control } = m
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    // From here on the pipeline holds the bytes, only while it needs them.
    request.body = undefined
    const shape = adapter.loopShape?.(route) ?? null
    const reading = readRequestBody(raw, shape, counter)
    // A small body is read in this turn: no await (a promise hop) on it.
    const read = reading instanceof Promise ? await reading : reading
    const body = read.json
    const facts = checkFacts(adapter.describe(route, body))
    summary.model = facts.model
    summary.stream = facts.stream
    const listed = pricing.lookup(adapter.id, facts.model)
    summary.priced = listed !== null
    if (listed === null) {
      const hint = adapter.unpricedHint?.(facts.model) ?? 'add it to the pricing file (LOOPERS_PRICING_PATH)'
      throw modelNotPriced(`no price for ${adapter.id} model '${facts.model}': ${hint}`)
    }
    const hidden = adapter.hidesReasoning?.(route, body, listed.hiddenReasoning) ?? listed.hiddenReasoning
    const price = hidden === listed.hiddenReasoning ? listed : { ...listed, hiddenReasoning: hidden }
    const session = control || target.pathSession !== null ? readSession(request.headers, target.pathSession) : null

    // Content the provider fetches or generates itself is not in the body: its context window bounds it.
    const extra = adapter.referencedInput?.(route, body, request.headers)
    // One walk, in slices or in the worker, finds media parts and fetched content (a long transcript stalls no one).
    const scanning = read.scan()
    const scan = scanning instanceof Promise ? await scanning : scanning
    const referenced = (extra?.tokens ?? 0) + (scan.fetchesContent ? REFERENCED_CONTEXT_TOKENS : 0)
    const feeMicros = extra === undefined ? 0 : toolFees(adapter.id, extra.toolCalls)
    const bound = Math.min(adapter.boundInputTokens(route, body, raw, price.tokensPerMedia, scan) + referenced, Number.MAX_SAFE_INTEGER)
    // The loop guard reads the conversation's opening and newest step (bounded work, src/loop/README.md), only when
    // the store finds a limit in force: a key whose guard is off pays no fingerprint. Requests of one step fired at
    // once (a load test, a batch) are not repeats: the store counts a repeat only while at most one request of its
    // step is in flight, and settle ends each.
    const loop = shape === null ? null : createLoopCheck(() => read.fingerprint(), session?.id ?? null)
    const requestId = newRequestId()
    const planned = planReservation(facts, price, bound, config.streamSliceTokens, feeMicros)
    const reserveInput = { keyHash, provider: adapter.id, requestId, session, loop, minMicros: planned.minMicros, maxMicros: planned.maxMicros }
    const tightRoom = admission.tightRoom(keyHash)
    let plan = planned
    let result: ReserveResult | null = null
    let counted = false
    let prebuilt: Forward['prebuilt'] = null
    if (tightRoom === null) {
      // Far from its limits (the common case) a request reserves its cheap bound at once: one store call, no count.
      try {
        const reserving = store.reserve(reserveInput)
        // Built while the reserve is in flight, sent only once it is granted (forward.ts).
        prebuilt = prebuildUpstream(adapter, { route, facts, target, headers: request.headers, credential, payload: read })
        result = await reserving
      } catch (error) {
        throw reserveFault(error, reserveInput)
      }
    }
    if (result === null || isBudgetRefusal(result)) {
      const admitted = await admitNearLimit({
        plan,
        facts,
        price,
        reserveInput,
        tightRoom,
        refused: result,
        // Fetched content is bounded by a whole context window whatever the body counts: no count call.
        count:
          referenced > 0
            ? null
            : { adapter, route, path: target.path, headers: request.headers, credential, body, raw, source: read, scan, model: facts.model, price, tokensPerMedia: price.tokensPerMedia },
      })
      plan = admitted.plan
      result = admitted.result
      counted = admitted.counted
    }
    if (!result.ok && result.heldMicros !== undefined) summary.heldUsd = microsToUsd(result.heldMicros)
    if (!result.ok) throw refusalError(result, adapter.id, now(), blockedByHolds(result, plan.minMicros), keyHash)
    const reservation = result.reservation
    summary.inputBound = plan.inputTokens
    summary.reservedUsd = microsToUsd(reservation.reservedMicros)
    // A stream whose plan holds only the cheap bound is counted if it ends without reported usage.
    const countInput =
      counted || referenced > 0 || !facts.stream
        ? undefined
        : deferInputCount(
            counting,
            { adapter, route, path: target.path, headers: request.headers, credential, body, source: read, scan, model: facts.model, price, tokensPerMedia: price.tokensPerMedia },
          )
    return { request, reply, adapter, target, route, facts, price, plan, payload: read, credential, reservation, summary, started, countInput, prebuilt }
  }

  /** What a failed reserve call throws: budget_unavailable for a store fault, after releasing or blocking its request id. */
  function reserveFault(error: unknown, input: ReserveInput): unknown {
    if (!(error instanceof StoreUnavailableError)) return error
    // The call may have run in Redis before it timed out: release or block that request id.
    store.abandon(input.keyHash, input.requestId).catch(() => undefined)
    return budgetUnavailable('the budget store is unavailable; no request is forwarded until it answers', { cause: error })
  }

  /** The fees of the hosted-tool calls a request allows, each at its most calls; invalid_request for a tool not priced. */
  function toolFees(provider: ProviderId, calls: Record<string, number>): number {
    let total = 0
    // for…in (own fields of a plain record), not Object.entries: no pair array on every request.
    for (const tool in calls) {
      const fee = pricing.toolFee(provider, tool)
      if (fee === null) throw invalidRequest(`the hosted tool '${tool.slice(0, 64)}' bills a per-call fee Loopers has no price for (tool_fees in the pricing file)`)
      total += fee * (calls[tool] as number)
    }
    return total
  }

  /**
   * Admits a request near its key's limits: `refused` is its refusal at the cheap bound, or null when the key was
   * refused lately (`tightRoom`) and it has not reserved yet. Its input is counted exactly (`count`; null: it cannot
   * be) before it reserves again; when only other requests' holds stand in the way, it is queued until they are
   * released (a bounded wait).
   */
  async function admitNearLimit(a: {
    plan: ReservationPlan
    facts: RequestFacts
    price: Price
    reserveInput: ReserveInput
    tightRoom: number | null
    refused: Extract<ReserveResult, { ok: false }> | null
    count: Omit<ExactCountInput, 'limit'> | null
  }): Promise<Admitted> {
    let plan = a.plan
    let counted = false
    // True once a count finished within its limit: the plan's input is then exact (or the bound was the smaller).
    let known = false
    const exact = async (roomMicros: number): Promise<void> => {
      counted = true
      const inputRate = Math.max(a.price.inputPer1M, a.price.cacheWritePer1M)
      const affordable = Math.floor((roomMicros * 1_000_000) / Math.max(1, inputRate)) + 1
      const limit = Math.min(affordable, plan.inputTokens)
      const tokens = a.count === null ? null : await countExactInput(counting, { ...a.count, limit })
      if (tokens !== null && tokens <= limit) known = true
      if (tokens !== null && tokens < plan.inputTokens && tokens <= affordable) {
        plan = planReservation(a.facts, a.price, tokens, config.streamSliceTokens, plan.feeMicros)
      }
    }
    const reserveOnce = async (p: ReservationPlan): Promise<ReserveResult> => {
      const input = { ...a.reserveInput, minMicros: p.minMicros, maxMicros: p.maxMicros }
      try {
        return await store.reserve(input)
      } catch (error) {
        throw reserveFault(error, input)
      }
    }
    let result: ReserveResult
    if (a.refused === null) {
      if (a.tightRoom !== null) await exact(a.tightRoom)
      result = await reserveOnce(plan)
      if (!isBudgetRefusal(result)) return { plan, result, counted: known }
    } else result = a.refused
    admission.markTight(a.reserveInput.keyHash, settledRoom(result))
    if (!counted) {
      const before = plan
      await exact(settledRoom(result))
      if (plan !== before) result = await reserveOnce(plan)
    }
    const blocked = (r: ReserveResult) => isBudgetRefusal(r) && blockedByHolds(r, plan.minMicros)
    if (blocked(result)) result = await admission.waitForHolds(a.reserveInput.keyHash, () => reserveOnce(plan), blocked)
    if (isBudgetRefusal(result)) admission.markTight(a.reserveInput.keyHash, settledRoom(result))
    return { plan, result, counted: known }
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

}

/** What a metered request brings to admission once its route and credential are known. */
interface Metered {
  request: FastifyRequest
  reply: FastifyReply
  adapter: ProviderAdapter
  target: Target
  route: RouteMatch
  credential: UpstreamCredential
  keyHash: string
  summary: Summary
  started: number
  /** False when the request has no `X-Loopers-*` header (mayHaveControlHeaders). */
  control: boolean
}

type ReserveInput = Parameters<BudgetStore['reserve']>[0]

/** A reservation attempt's outcome: the plan it reserved (or was refused) at; `counted` when that plan's input is exact. */
interface Admitted {
  plan: ReservationPlan
  result: ReserveResult
  counted: boolean
}

/** A refusal that more budget (or fewer holds) could turn into an admission. */
function isBudgetRefusal(result: ReserveResult): result is Extract<ReserveResult, { ok: false }> {
  return !result.ok && (result.reason === 'budget_exceeded' || result.reason === 'session_budget_exceeded')
}

/** A client-sent credential unless it is a Loopers key: a proxy key is never sent upstream. */
function notProxyKey(credential: UpstreamCredential | null): UpstreamCredential | null {
  if (credential === null) return null
  const id = credential.kind === 'apiKey' ? credential.value : credential.accessKeyId
  return isProxyKey(id) ? null : credential
}

function toProxyError(error: unknown): ProxyError {
  if (error instanceof ProxyError) return error
  if (error instanceof StoreUnavailableError) return budgetUnavailable('the budget store is unavailable', { cause: error })
  return internalError('internal proxy error', { cause: error })
}
