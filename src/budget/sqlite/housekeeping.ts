/**
 * Deletes expired periods, sessions and reservation records of the embedded store on an unref'd
 * timer, in small batches, so no request pays for the clean-up and no tick stalls the event loop.
 */
import type { Db } from './database.js'

export interface Housekeeping {
  /** Deletes up to one batch per table; returns how many rows went. */
  sweep(): number
  stop(): void
}

export const SWEEP_INTERVAL_MS = 10_000
/** Rows per table per sweep: a few hundred index deletions stay well under a millisecond. */
const BATCH = 200
const TABLES = [
  ['periods', 'hash, win, period'],
  ['sessions', 'hash, id'],
  ['reservations', 'hash, request_id'],
] as const

/** Starts sweeping `db` every `intervalMs`; `now` decides what has expired. Faults are left to the next sweep. */
export function startHousekeeping(db: Db, now: () => number = Date.now, intervalMs = SWEEP_INTERVAL_MS): Housekeeping {
  const sweep = (): number =>
    db.transaction('clean up', () => {
      let removed = 0
      for (const [table, key] of TABLES) {
        const result = db
          .statement(`DELETE FROM ${table} WHERE (${key}) IN (SELECT ${key} FROM ${table} WHERE expires_at <= ? LIMIT ${BATCH})`)
          .run(now())
        removed += Number(result.changes)
      }
      return removed
    })
  const timer = setInterval(() => {
    try {
      sweep()
    } catch {
      // The store is down or busy: requests already fail closed and report it; try again next tick.
    }
  }, intervalMs)
  timer.unref()
  return { sweep, stop: () => clearInterval(timer) }
}
