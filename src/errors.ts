/**
 * Every error Loopers itself produces: one coded constructor per public code (CONTRACT §7).
 * `LP_ERR_*` names the error inside the code base; `code` is the stable public string.
 */

type PublicErrorCode =
  | 'invalid_request'
  | 'invalid_key'
  | 'key_revoked'
  | 'provider_not_allowed'
  | 'payload_too_large'
  | 'model_not_priced'
  | 'budget_exceeded'
  | 'session_budget_exceeded'
  | 'session_steps_exceeded'
  | 'budget_not_set'
  | 'rate_limited'
  | 'loop_detected'
  | 'budget_unavailable'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'not_found'
  | 'internal_error'

export class ProxyError extends Error {
  readonly internal: string
  readonly code: PublicErrorCode
  readonly status: number
  /** Extra fields rendered into the body (budget errors: window, limit_usd, spent_usd, resets_at). */
  readonly details: Record<string, unknown> | undefined
  /** Seconds for the Retry-After header, when the client can retry later. */
  readonly retryAfterSeconds: number | undefined

  constructor(
    internal: string,
    code: PublicErrorCode,
    status: number,
    message: string,
    options: { details?: Record<string, unknown>; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ProxyError'
    this.internal = internal
    this.code = code
    this.status = status
    this.details = options.details
    this.retryAfterSeconds = options.retryAfterSeconds
  }
}

type Details = { details?: Record<string, unknown>; retryAfterSeconds?: number; cause?: unknown }

function coded(internal: string, code: PublicErrorCode, status: number) {
  return (message: string, options?: Details) => new ProxyError(internal, code, status, message, options)
}

/** Malformed JSON, header, route or body the proxy cannot meter. 400. */
export const invalidRequest = coded('LP_ERR_REQUEST_INVALID', 'invalid_request', 400)
/** Missing or unknown proxy key. 401. */
export const invalidKey = coded('LP_ERR_KEY_INVALID', 'invalid_key', 401)
/** The key was revoked. 401. */
export const keyRevoked = coded('LP_ERR_KEY_REVOKED', 'key_revoked', 401)
/** The key may not use this provider. 403. */
export const providerNotAllowed = coded('LP_ERR_KEY_PROVIDER', 'provider_not_allowed', 403)
/** Not a route of the proxy. 404. */
export const notFound = coded('LP_ERR_ROUTE_UNKNOWN', 'not_found', 404)
/** Body above LOOPERS_MAX_BODY_BYTES. 413. */
export const payloadTooLarge = coded('LP_ERR_REQUEST_TOO_LARGE', 'payload_too_large', 413)
/** No price for the model and no fallback. 400. */
export const modelNotPriced = coded('LP_ERR_PRICING_UNKNOWN_MODEL', 'model_not_priced', 400)
/** A key window cannot hold the request. 429 with Retry-After. */
export const budgetExceeded = coded('LP_ERR_BUDGET_WINDOW', 'budget_exceeded', 429)
/** The session budget cannot hold the request. 429. */
export const sessionBudgetExceeded = coded('LP_ERR_BUDGET_SESSION', 'session_budget_exceeded', 429)
/** The session used all its steps. 429. */
export const sessionStepsExceeded = coded('LP_ERR_BUDGET_STEPS', 'session_steps_exceeded', 429)
/** The key has no limit in any window and is not marked `--unlimited`. 403. */
export const budgetNotSet = coded('LP_ERR_BUDGET_NOT_SET', 'budget_not_set', 403)
/** The key's requests per UTC minute (`--rpm`) are used up. 429 with Retry-After, retryable. */
export const rateLimited = coded('LP_ERR_RATE_LIMITED', 'rate_limited', 429)
/** The conversation repeated one step more often than the loop limit allows. 429, not retryable. */
export const loopDetected = coded('LP_ERR_LOOP_DETECTED', 'loop_detected', 429)
/** Redis unreachable, slow or erroring: fail closed. 503. */
export const budgetUnavailable = coded('LP_ERR_STORE_UNAVAILABLE', 'budget_unavailable', 503)
/** Upstream refused the connection or broke before answering. 502. */
export const upstreamUnreachable = coded('LP_ERR_UPSTREAM_UNREACHABLE', 'upstream_unreachable', 502)
/** Upstream did not answer in time. 504. */
export const upstreamTimeout = coded('LP_ERR_UPSTREAM_TIMEOUT', 'upstream_timeout', 504)

/** A fault in the proxy itself (a bug): 500, logged with its cause. Any hold is settled as usual. */
export const internalError = coded('LP_ERR_INTERNAL', 'internal_error', 500)

/** Thrown by the budget store for infrastructure faults; the pipeline maps it to budget_unavailable. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreUnavailableError'
  }
}
