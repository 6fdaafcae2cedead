import type { Refusal } from '../budget/types.js'
import { microsToUsd } from '../money.js'
import {
  budgetExceeded,
  budgetNotSet,
  invalidKey,
  keyRevoked,
  loopDetected,
  providerNotAllowed,
  rateLimited,
  sessionBudgetExceeded,
  sessionStepsExceeded,
  type ProxyError,
} from '../errors.js'
import type { ProviderId } from '../providers/types.js'

/** Retry-After of a refusal caused by other requests' holds: they are released as those requests end. */
const HOLDS_RETRY_AFTER_SECONDS = 1

/**
 * Turns a typed store refusal into the contract's error, with budget details and Retry-After. A refusal
 * `blockedByHolds` (settled spend leaves room; in-flight holds do not) is retryable: a short Retry-After.
 */
export function refusalError(refusal: Refusal, provider: ProviderId, now: number, blockedByHolds = false, keyHash = ''): ProxyError {
  switch (refusal.reason) {
    case 'invalid_key':
      return invalidKey('unknown Loopers proxy key')
    case 'key_revoked':
      return keyRevoked('this Loopers proxy key has been revoked')
    case 'provider_not_allowed':
      return providerNotAllowed(`this Loopers proxy key may not use ${provider}`)
    case 'budget_not_set': {
      const key = keyHash === '' ? '<key>' : keyHash.slice(0, 8)
      return budgetNotSet(
        `this Loopers key has no budget yet: set one with \`loopers budget set ${key} --daily USD\` (or mark it \`--unlimited\`)`,
      )
    }
    case 'loop_detected': {
      const repeats = refusal.count ?? 0
      return loopDetected(
        `loop detected: the same step (${refusal.step ?? '?'}) was already sent ${repeats} times in this conversation; the loop limit is ${refusal.limitCount ?? 0} repeats`,
        { details: { step: refusal.step ?? null, repeats, loop_limit: refusal.limitCount ?? null } },
      )
    }
    case 'rate_limited': {
      const resetsAt = refusal.resetsAt ?? new Date(now)
      return rateLimited(`this Loopers key may make ${refusal.limitCount ?? 0} requests per minute; retry after the minute ends`, {
        details: { limit_rpm: refusal.limitCount ?? null, requests: refusal.count ?? null, resets_at: resetsAt.toISOString() },
        retryAfterSeconds: Math.max(1, Math.ceil((resetsAt.getTime() - now) / 1000)),
      })
    }
    case 'session_steps_exceeded':
      return sessionStepsExceeded('the session has used all its steps')
    case 'session_budget_exceeded':
      return sessionBudgetExceeded(`the session budget cannot hold this request${blockedByHolds ? ' while other requests hold their share' : ''}`, {
        details: { limit_usd: usd(refusal.limitMicros), spent_usd: usd(refusal.spentMicros) },
        ...(blockedByHolds ? { retryAfterSeconds: HOLDS_RETRY_AFTER_SECONDS } : {}),
      })
    case 'budget_exceeded': {
      const resetsAt = refusal.resetsAt ?? new Date(now)
      const retryAfterSeconds = blockedByHolds ? HOLDS_RETRY_AFTER_SECONDS : Math.max(1, Math.ceil((resetsAt.getTime() - now) / 1000))
      const why = blockedByHolds ? ' while other requests hold their share' : ''
      return budgetExceeded(`the ${refusal.window ?? ''} budget cannot hold this request${why}`.replace('  ', ' '), {
        details: {
          window: refusal.window ?? null,
          limit_usd: usd(refusal.limitMicros),
          spent_usd: usd(refusal.spentMicros),
          resets_at: resetsAt.toISOString(),
        },
        retryAfterSeconds,
      })
    }
  }
}

function usd(micros: number | undefined): number | null {
  return micros === undefined ? null : microsToUsd(micros)
}
