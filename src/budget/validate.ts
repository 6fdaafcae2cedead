/**
 * Argument checks and lifetimes both budget stores share, so the two enforce one contract.
 * A failed check is a caller bug: RangeError, never a refusal.
 */
import type { Micros } from '../money.js'
import { DEFAULT_LOOP_WINDOW_SECONDS } from '../loop/rule.js'
import type { LoopCheck, ReserveInput, SessionRequest } from './types.js'

/** Held reservation records outlive the longest period (31-day month + 1-day grace), so no hold expires early. */
export const RESERVATION_TTL_SECONDS = 35 * 86_400
/**
 * A settled record or tombstone only answers a retried settle with `already` and refuses a late reserve
 * of its id, both within seconds of settlement (the ids are fresh UUIDv7s): a day is ample, and at
 * 10 requests/s keeps a day of records, not 35.
 */
export const SETTLED_RECORD_TTL_SECONDS = 86_400
export const DEFAULT_SESSION_TTL_SECONDS = 86_400

/** CONTRACT §4; it also keeps the Redis store's space-separated booked list unambiguous. */
const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Checks every argument of a reserve call. */
export function assertReserveInput(input: ReserveInput): void {
  assertMicros('minMicros', input.minMicros)
  assertMicros('maxMicros', input.maxMicros)
  if (input.minMicros > input.maxMicros) throw new RangeError('minMicros must not exceed maxMicros')
  assertRequestId(input.requestId)
  const { session } = input
  if (session !== null && !SESSION_ID.test(session.id)) throw new RangeError('session id must be 1–128 of [A-Za-z0-9._:-]')
  if (session?.budgetMicros != null) assertMicros('session.budgetMicros', session.budgetMicros)
  if (session?.maxSteps != null) assertMicros('session.maxSteps', session.maxSteps)
  if (session?.loopLimit != null) assertMicros('session.loopLimit', session.loopLimit)
  const { loop } = input
  // A source's check is checked when a store computes it (assertLoopCheck).
  if (loop != null && typeof loop !== 'function') assertLoopCheck(loop, session)
}

/** Throws a RangeError unless `loop` is a loop check a request of `session` may make. */
export function assertLoopCheck(loop: LoopCheck, session: SessionRequest | null): void {
  if (!isHex16(loop.step, 0)) throw new RangeError('loop.step must be 16 hex chars')
  if (!isLoopScope(loop.scope)) throw new RangeError('loop.scope must be s:<session id> or c:<16 hex chars>')
  if (loop.scope.startsWith('s:') && loop.scope !== `s:${session?.id ?? ''}`) throw new RangeError('a session loop scope needs that session')
}

// Checked by character, not by regular expression: the loop's step and scope are checked on every reserve.

/** True when `s` from `from` on is exactly 16 lower-case hex digits. */
function isHex16(s: string, from: number): boolean {
  if (s.length !== from + 16) return false
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false
  }
  return true
}

/** A `loopScope` value: a session (s:<id>, as SESSION_ID) or a conversation (c:<16 hex chars>). */
function isLoopScope(scope: string): boolean {
  if (scope.startsWith('c:')) return isHex16(scope, 2)
  return scope.startsWith('s:') && SESSION_ID.test(scope.slice(2))
}

/** The loop guard's window in ms for a key's `--loop-window` (null: the default). */
export function loopWindowMs(seconds: number | null): number {
  return (seconds ?? DEFAULT_LOOP_WINDOW_SECONDS) * 1000
}

export function assertMicros(name: string, v: Micros): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative safe integer, got ${v}`)
}

export function assertRequestId(id: string): void {
  if (id.length === 0 || id.length > 256) throw new RangeError('requestId must be 1–256 characters')
}

/** The smaller of two optional limits; null means "no limit". */
export function lowest(a: number | null, b: number | null): number | null {
  if (a === null) return b
  if (b === null || a <= b) return a
  return b
}
