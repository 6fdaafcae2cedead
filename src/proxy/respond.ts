import type { FastifyReply } from 'fastify'
import type { ProxyError } from '../errors.js'
import { compatErrorBody } from '../providers/openai-compat.js'
import type { ErrorInfo, ProviderAdapter } from '../providers/types.js'

/** What the tightest limited window or the session has left after this request's hold (CONTRACT §4). */
export const REMAINING_HEADER = 'x-loopers-budget-remaining-usd'

/** A micro-USD amount as the header's decimal USD (never negative, six decimals). */
export function usdHeader(micros: number): string {
  if (micros <= 0) return '0.000000'
  // Integer micros (every store's) are written exactly by integer arithmetic, a few times faster than toFixed.
  if (!Number.isSafeInteger(micros)) return (micros / 1_000_000).toFixed(6)
  const fraction = micros % 1_000_000
  return `${(micros - fraction) / 1_000_000}.${String(fraction).padStart(6, '0')}`
}

// SDKs retry 429s on their own; past a minute of waiting a retry only burns the client's time.
const LONGEST_USEFUL_RETRY_SECONDS = 60

export function toErrorInfo(error: ProxyError): ErrorInfo {
  return { status: error.status, code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) }
}

/**
 * Sends a proxy-produced error in the provider's shape (OpenAI's when no provider is known), with
 * `X-Loopers-Error-Code`, `Retry-After` for windows, and `x-should-retry: false` where retrying cannot help.
 */
export function sendError(reply: FastifyReply, adapter: ProviderAdapter | null, error: ProxyError): void {
  const info = toErrorInfo(error)
  reply.code(error.status).header('x-loopers-error-code', error.code).header('content-type', 'application/json')
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds))
  // A budget refusal knows what its window or session has left (settled spend and holds counted).
  const { limit_usd: limit, spent_usd: spent } = error.details ?? {}
  if (typeof limit === 'number' && typeof spent === 'number') reply.header(REMAINING_HEADER, usdHeader(Math.round((limit - spent) * 1_000_000)))
  const hopeless =
    // A session refusal with a Retry-After was caused by other requests' holds: retrying helps.
    (error.code === 'session_budget_exceeded' && error.retryAfterSeconds === undefined) ||
    error.code === 'session_steps_exceeded' ||
    error.code === 'budget_not_set' ||
    error.code === 'loop_detected' ||
    (error.code === 'budget_exceeded' && (error.retryAfterSeconds ?? 0) > LONGEST_USEFUL_RETRY_SECONDS)
  if (hopeless) reply.header('x-should-retry', 'false')
  if (adapter?.errorHeaders) reply.headers(adapter.errorHeaders(info))
  reply.send(JSON.stringify(adapter === null ? compatErrorBody(info) : adapter.errorBody(info)))
}
