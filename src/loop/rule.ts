import type { LoopFingerprint } from './types.js'

/**
 * The loop rule every budget store implements inside its reserve call (README.md beside this file):
 *
 *   scope = loopScope(session, fingerprint); limit = effectiveLoopLimit(keyLimit, sessionLimit)
 *   entry = state[scope][fingerprint.step]  (count, sinceMs, inFlight)
 *   if entry is absent or nowMs >= sinceMs + windowMs: entry = (0, nowMs, 0)
 *   if limit is not null and entry.count > limit: refuse loop_detected (repeats = entry.count); record nothing
 *   else, only if the request is admitted (every other check passed):
 *     if entry.inFlight <= LOOP_IN_FLIGHT_TOLERATED: entry.count += 1;  entry.inFlight += 1 (sinceMs kept)
 *   when an admitted request settles or is abandoned (once): entry.inFlight -= 1, if the entry's sinceMs is
 *     still the one it was admitted with (the stores book (scope, step, sinceMs) with the reservation)
 *
 * entry.count counts the step's requests that were not fired alongside others of it, so a request is its
 * (count)-th repeat: `limit` repeats pass and the next is refused. A new step that `checksScopeSize` picks (one in 16) counts its
 * scope; one found past LOOP_STEPS_PER_SCOPE entries is trimmed to LOOP_STEPS_AFTER_TRIM (expired ones go
 * first, then the oldest sinceMs). So counting and trimming are spread over many new steps, and recording a
 * step writes only its own entry. The scope's state may expire windowMs after its newest sinceMs.
 */

/** Repeats of one step a conversation may make within the window when the key sets no limit. */
export const DEFAULT_LOOP_LIMIT = 10
/** The window in which repeats count when the key sets none: 10 minutes. */
export const DEFAULT_LOOP_WINDOW_SECONDS = 600
/** Steps a scope may hold before a trim (it may pass it by the few new steps until one checks its size). */
export const LOOP_STEPS_PER_SCOPE = 256
/** What a trim keeps of a scope that grew past LOOP_STEPS_PER_SCOPE: the trim's cost is spread over 64 new steps. */
export const LOOP_STEPS_AFTER_TRIM = 192

/**
 * A repeat counts only while at most this many requests of its step are in flight. Not 0: settlement lands
 * a round trip after the answer, so a client's previous request may still be in flight when its next
 * arrives; more than one in flight means requests fired at once, which are not repeats.
 */
export const LOOP_IN_FLIGHT_TOLERATED = 1

/** Whether a step new to its scope counts the scope (its hash ends in 0: one in 16), so a step costs no count. */
export function checksScopeSize(step: string): boolean {
  return step.endsWith('0')
}

/**
 * The limit in force: the key's (`0` = guard off, null = the default) lowered by a session's
 * `X-Loopers-Loop-Limit` (`0` = no repeat at all); null means the guard is off.
 */
export function effectiveLoopLimit(keyLimit: number | null, sessionLimit: number | null): number | null {
  const key = keyLimit ?? DEFAULT_LOOP_LIMIT
  if (key === 0) return sessionLimit
  return sessionLimit === null ? key : Math.min(key, sessionLimit)
}

/**
 * Where a request's loop state lives under its key: the session when the request names one, else the
 * conversation (so the same prompt in two sessions, or in two conversations, never counts together).
 * Steps count per scope: within a session, the same step in two of its conversations counts together.
 */
export function loopScope(sessionId: string | null, fingerprint: LoopFingerprint): string {
  return sessionId === null ? `c:${fingerprint.conversation}` : `s:${sessionId}`
}
