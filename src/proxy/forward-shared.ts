/** What the forwarding half of the pipeline needs, and what it is given for one metered request. */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { BudgetStore, Reservation } from '../budget/types.js'
import type { Config } from '../config.js'
import { budgetUnavailable, type ProxyError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { Micros } from '../money.js'
import { tokensCost } from '../pricing/cost.js'
import type { Price } from '../pricing/types.js'
import type { ProviderAdapter, RequestFacts, RouteMatch, UpstreamCredential, UpstreamRequest } from '../providers/types.js'
import type { TokenCounter } from '../tokens/worker.js'
import type { LaterCount } from './exact-count.js'
import type { ReservationPlan } from './plan.js'
import type { RequestBody } from './request-body.js'
import type { Summary } from './summary.js'
import type { Target } from './target.js'
import type { UpstreamClient } from './upstream.js'

export interface ForwardDeps {
  config: Config
  store: BudgetStore
  upstream: UpstreamClient
  logger: Logger
  metrics: Metrics
  /** Fires after the shutdown grace period: in-flight upstream calls are aborted and streams cut. */
  shutdown: AbortSignal
  now: () => number
  /** Reads a big answer's usage off the event loop (the pipeline's counter). */
  counter: TokenCounter
}

export interface Forward {
  request: FastifyRequest
  reply: FastifyReply
  adapter: ProviderAdapter
  target: Target
  route: RouteMatch
  facts: RequestFacts
  price: Price
  plan: ReservationPlan
  /**
   * The request's body (RequestBody): `editable()` for `prepareBody`, `raw` to forward unchanged, `edited()` once
   * changed. forwardMetered takes it (sets it to null) as it builds the upstream request, so an open stream keeps none of it.
   */
  payload: Pick<RequestBody, 'json' | 'raw' | 'editable' | 'edited'> | null
  credential: UpstreamCredential
  reservation: Reservation
  summary: Summary
  started: number
  /**
   * The request's input tokens as the provider bills them (its tokenizer, its count endpoint, Mistral's
   * estimate), stopping past a limit; null when it cannot count. Absent when the plan's input is exact or the
   * request is not a stream (only a stream ended without reported input is charged a count); dropped by the
   * stream relay once the provider reports the input.
   */
  countInput: LaterCount | undefined
  /**
   * What was made while the reserve was in flight (prebuildUpstream): the upstream request, sent as it is when the
   * grant lowers no cap; EDITED when `prepareBody` changed the body (for a grant that lowers none) instead; null
   * when nothing was (a body hashed in slices, a fault building it, no prebuild).
   */
  prebuilt: UpstreamRequest | typeof EDITED | null
}

/** Forward.prebuilt of a request whose body `prepareBody` changed while its reserve was in flight. */
export const EDITED = 'edited'

/**
 * The input a stream without reported input is charged: counted off the event loop when the plan held only
 * the byte bound; the bound when the count fails or is no smaller.
 */
export async function endedInput(f: Forward): Promise<{ tokens: number; micros: Micros }> {
  const { plan, price } = f
  const bound = { tokens: plan.inputTokens, micros: plan.inputMicros }
  if (f.countInput === undefined) return bound
  const counted = await f.countInput.count(plan.inputTokens).catch(() => null)
  if (counted === null || counted >= plan.inputTokens) return bound
  return { tokens: counted, micros: tokensCost(counted, Math.max(price.inputPer1M, price.cacheWritePer1M)) }
}

/** The error a request gets when the proxy is shutting down (retryable: another instance may answer). */
export function shuttingDown(): ProxyError {
  return budgetUnavailable('the proxy is shutting down; retry the request')
}
