import { checksScopeSize, effectiveLoopLimit, LOOP_IN_FLIGHT_TOLERATED, loopScope, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE } from '../../src/loop/rule.js'
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
  /**
   * True (the default): the request ends before the next one (sequential traffic). False: it stays in
   * flight until the verdict's `end()` is called, and meanwhile requests of its step are not repeats.
   */
  endsAtOnce?: boolean
}

/**
 * `repeats`: the step's counted requests in the window (0 for a first occurrence); an admitted request
 * counts unless another of its step was in flight. `end` ends an admitted request (once; no-op after).
 */
export type LoopVerdict = { ok: true; repeats: number; limit: number | null; end: () => void } | { ok: false; repeats: number; limit: number }

interface StepState {
  count: number
  sinceMs: number
  inFlight: number
}

/** `end` is not enumerable, so verdicts compare by their data. */
function withEnd<T extends object>(verdict: T, end: () => void): T & { end: () => void } {
  return Object.defineProperty(verdict, 'end', { value: end, enumerable: false }) as T & { end: () => void }
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
    const entry = found === undefined || nowMs >= found.sinceMs + windowMs ? { count: 0, sinceMs: nowMs, inFlight: 0 } : found
    if (limit !== null && entry.count > limit) return { ok: false, repeats: entry.count, limit }
    if (request.admitted === false) return withEnd({ ok: true, repeats: entry.count, limit }, () => undefined)
    const repeats = entry.count
    const state = { count: entry.inFlight <= LOOP_IN_FLIGHT_TOLERATED ? entry.count + 1 : entry.count, sinceMs: entry.sinceMs, inFlight: entry.inFlight + 1 }
    scope.set(fingerprint.step, state)
    scopes.set(scopeKey, scope)
    if (found === undefined && checksScopeSize(fingerprint.step) && scope.size > LOOP_STEPS_PER_SCOPE) evict(scope, nowMs)
    let ended = false
    // Ends the request in the entry it was admitted in (a later window's entry is another).
    const end = (): void => {
      if (ended) return
      ended = true
      const current = scope.get(fingerprint.step)
      if (current !== undefined && current.sinceMs === state.sinceMs && current.inFlight > 0) current.inFlight--
    }
    if (request.endsAtOnce !== false) end()
    return withEnd({ ok: true, repeats, limit }, end)
  }

  /** Expired steps go first, then the oldest `sinceMs`, until the scope holds LOOP_STEPS_AFTER_TRIM. */
  function evict(scope: Map<string, StepState>, nowMs: number): void {
    for (const [step, state] of scope) if (nowMs >= state.sinceMs + windowMs) scope.delete(step)
    const oldest = [...scope].sort((a, b) => a[1].sinceMs - b[1].sinceMs || (a[0] < b[0] ? -1 : 1))
    for (let i = 0; scope.size > LOOP_STEPS_AFTER_TRIM; i++) scope.delete((oldest[i] as [string, StepState])[0])
  }

  return { check }
}
