import { checksScopeSize, effectiveLoopLimit, loopScope, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE } from '../../src/loop/rule.js'
import type { LoopFingerprint } from '../../src/loop/types.js'

/**
 * An in-memory reference of the loop rule in src/loop/rule.ts, for one proxy key: the fingerprint
 * tests replay transcripts through it, and store tests can compare a store's verdicts with its own.
 */

export interface LoopRequest {
  fingerprint: LoopFingerprint
  sessionId: string | null
  /** The request's `X-Loopers-Loop-Limit`, null when absent; a lowering sticks to the session. */
  sessionLimit: number | null
  nowMs: number
  /** False when another check of the reserve call refused the request: then nothing is recorded. */
  admitted?: boolean
}

/** `repeats`: earlier admitted requests of the same step in the window (0 for a first occurrence). */
export type LoopVerdict = { ok: true; repeats: number; limit: number | null } | { ok: false; repeats: number; limit: number }

interface StepState {
  count: number
  sinceMs: number
}

/** The rule for one key whose `--loop-limit` is `keyLimit` (null: the default; 0: off) and window `windowSeconds`. */
export function createLoopReference(keyLimit: number | null, windowSeconds: number) {
  const windowMs = windowSeconds * 1000
  const scopes = new Map<string, Map<string, StepState>>()
  const sessionLimits = new Map<string, number>()

  function check(request: LoopRequest): LoopVerdict {
    const { fingerprint, sessionId, nowMs } = request
    let sessionLimit = sessionId === null ? null : (sessionLimits.get(sessionId) ?? null)
    if (sessionId !== null && request.sessionLimit !== null) {
      sessionLimit = sessionLimit === null ? request.sessionLimit : Math.min(sessionLimit, request.sessionLimit)
      sessionLimits.set(sessionId, sessionLimit)
    }
    const limit = effectiveLoopLimit(keyLimit, sessionLimit)
    const scopeKey = loopScope(sessionId, fingerprint)
    const scope = scopes.get(scopeKey) ?? new Map<string, StepState>()
    const found = scope.get(fingerprint.step)
    const entry = found === undefined || nowMs >= found.sinceMs + windowMs ? { count: 0, sinceMs: nowMs } : found
    if (limit !== null && entry.count > limit) return { ok: false, repeats: entry.count, limit }
    if (request.admitted === false) return { ok: true, repeats: entry.count, limit }
    const repeats = entry.count
    scope.set(fingerprint.step, { count: entry.count + 1, sinceMs: entry.sinceMs })
    scopes.set(scopeKey, scope)
    if (found === undefined && checksScopeSize(fingerprint.step) && scope.size > LOOP_STEPS_PER_SCOPE) evict(scope, nowMs)
    return { ok: true, repeats, limit }
  }

  /** Expired steps go first, then the oldest `sinceMs`, until the scope holds LOOP_STEPS_AFTER_TRIM. */
  function evict(scope: Map<string, StepState>, nowMs: number): void {
    for (const [step, state] of scope) if (nowMs >= state.sinceMs + windowMs) scope.delete(step)
    const oldest = [...scope].sort((a, b) => a[1].sinceMs - b[1].sinceMs || (a[0] < b[0] ? -1 : 1))
    for (let i = 0; scope.size > LOOP_STEPS_AFTER_TRIM; i++) scope.delete((oldest[i] as [string, StepState])[0])
  }

  return { check }
}
