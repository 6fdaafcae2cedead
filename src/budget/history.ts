/**
 * Settled spend per key per UTC day (issue 11): booked by the settle call itself, kept HISTORY_DAYS
 * days, read as every day of a range, oldest first, zero where nothing settled.
 */
import type { Micros } from '../money.js'

/** How many days of spend each store keeps (and the most a history read may ask for). */
export const HISTORY_DAYS = 400
/** What `budget history` and the API show when no day count is given. */
export const DEFAULT_HISTORY_DAYS = 30

const DAY_MS = 86_400_000

export interface DaySpend {
  /** UTC day, `YYYY-MM-DD`. */
  date: string
  spentMicros: Micros
}

/** The UTC day of the instant `ms`, `YYYY-MM-DD`. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10)
}

/** When a day's record may go: HISTORY_DAYS after the day ends (ms since the epoch). */
export function dayExpiresAt(ms: number): number {
  return (Math.floor(ms / DAY_MS) + 1 + HISTORY_DAYS) * DAY_MS
}

/** The last `days` UTC days up to and including today, oldest first; RangeError outside 1..HISTORY_DAYS. */
export function lastDays(nowMs: number, days: number): string[] {
  if (!Number.isSafeInteger(days) || days < 1 || days > HISTORY_DAYS) throw new RangeError(`days must be 1 to ${HISTORY_DAYS}`)
  const today = Math.floor(nowMs / DAY_MS)
  return Array.from({ length: days }, (_, i) => dayOf((today - days + 1 + i) * DAY_MS))
}
