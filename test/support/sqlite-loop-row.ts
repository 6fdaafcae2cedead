/**
 * A loop step's row in the embedded store as the rule sees it, for tests: its count, whether it has a first sighting,
 * and its requests in flight — the booked ones (`inflight`) and, in the first-request layout, the window's first
 * request while its reservation is held. Undefined when the place holds no row of its own (either layout).
 */
import type { Db } from '../../src/budget/sqlite/database.js'
import { firstLayoutTag, type LoopPlace } from '../../src/budget/sqlite/rows.js'

export interface LoopRowState {
  count: number
  /** 1 when the row has a first sighting. */
  since: number
  inflight: number
}

export function loopRowState(db: Db, hash: string, place: LoopPlace, nowMs = Date.now()): LoopRowState | undefined {
  return db
    .statement(
      `SELECT count, since_ms > 0 AS since, inflight + (tag = ?5 AND EXISTS (SELECT 1 FROM reservations
         WHERE hash = ?6 AND request_id = loop_steps.first AND state = 'held' AND expires_at > ?7)) AS inflight
       FROM loop_steps WHERE scope = ?1 AND step = ?2 AND step_low = ?3 AND (tag = ?4 OR tag = ?5)`,
    )
    .get(place.scope, place.step, place.stepLow, place.tag, firstLayoutTag(place), hash, nowMs) as LoopRowState | undefined
}

/** The layout of the row at `place`: 'first' (the window's first request by its reservation), 'booked' (the previous release's: every request booked), or null. */
export function loopRowLayout(db: Db, place: LoopPlace): 'first' | 'booked' | null {
  const row = db.statement('SELECT tag FROM loop_steps WHERE scope = ? AND step = ? AND step_low = ?').get(place.scope, place.step, place.stepLow) as { tag: number } | undefined
  if (row?.tag === firstLayoutTag(place)) return 'first'
  return row?.tag === place.tag ? 'booked' : null
}
