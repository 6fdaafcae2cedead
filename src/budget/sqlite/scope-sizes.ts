/**
 * How many loop steps each scope holds (loop_steps rows of one `scope` id), as this connection last counted and
 * changed them, so the size check of a new step (one in 16) reads a number instead of counting the scope's rows; and,
 * for a scope once trimmed, its steps in trim order (first sighting, then place), so its next trims delete the oldest
 * by one range instead of a scan and sort of the scope. Kept while Db.keysVersion stays the same (no other connection
 * committed, no rollback, no reopen; otherwise read anew), a step housekeeping removes taken out (loopStepSwept). Exact:
 * the size is count(*) of the scope's rows, the order theirs.
 */
import type { Db } from './database.js'
import { countLoopSteps, deleteLoopStepsUpTo, type LoopPlace, readLoopStepAges } from './rows.js'

/** At most this many scopes are kept; past it the cache starts over. */
const MAX_SCOPES = 4096
/** At most this many scopes' orders (a trimmed scope's: about 260 steps, 6 KB) are kept; past it the oldest kept goes. */
const MAX_ORDERS = 128

type Swept = (scope: number, step: number, stepLow: number) => void
// Told when housekeeping (which runs on the store's own Db) removes a step: each of the connection's kept sizes.
const sweptListeners = new WeakMap<Db, Set<Swept>>()

/** Housekeeping removed the step at (`scope`, `step`, `stepLow`) through `db`: kept sizes and orders drop it. */
export function loopStepSwept(db: Db, scope: number, step: number, stepLow: number): void {
  const listeners = sweptListeners.get(db)
  if (listeners !== undefined) for (const swept of listeners) swept(scope, step, stepLow)
}

export interface ScopeSizes {
  /** A row was added at `place` in this transaction (an insert, not an overwrite), first seen at `sinceMs`. */
  added(place: LoopPlace, sinceMs: number): void
  /** A row of `scope` was rewritten with a new first sighting (a new window, or another place's row taken over). */
  restarted(scope: number): void
  /** The scope's steps (inside a transaction): kept, or counted and kept. */
  count(scope: number): number
  /**
   * Trims `scope` to `keep` steps (inside a transaction): the expired (first seen `windowMs` or more before `nowMs`)
   * go first, then the oldest first sighting (ties by place). The expired are the oldest, so this deletes the oldest
   * max(steps - keep, expired).
   */
  trim(scope: number, keep: number, windowMs: number, nowMs: number): void
}

/**
 * A scope's steps as `[sinceMs, step, stepLow]` triples, flat, in trim order; a new step (sinceMs the clock's now,
 * mostly the newest) goes in from the end.
 */
function insertInOrder(order: number[], sinceMs: number, step: number, stepLow: number): void {
  let at = order.length
  while (at > 0) {
    const since = order[at - 3] as number
    const s = order[at - 2] as number
    if (since < sinceMs || (since === sinceMs && (s < step || (s === step && (order[at - 1] as number) < stepLow)))) break
    at -= 3
  }
  if (at === order.length) order.push(sinceMs, step, stepLow)
  else order.splice(at, 0, sinceMs, step, stepLow)
}

export function createScopeSizes(db: Db): ScopeSizes {
  const sizes = new Map<number, number>()
  const orders = new Map<number, number[]>()
  let version = Number.NaN
  const current = (): Map<number, number> => {
    const now = db.keysVersion()
    if (now !== version) {
      sizes.clear()
      orders.clear()
      version = now
    }
    return sizes
  }
  let listeners = sweptListeners.get(db)
  if (listeners === undefined) sweptListeners.set(db, (listeners = new Set()))
  listeners.add((scope, step, stepLow) => {
    const kept = sizes.get(scope)
    if (kept !== undefined) sizes.set(scope, kept - 1)
    const order = orders.get(scope)
    if (order === undefined) return
    // The expired are the oldest: found from the front.
    let at = 0
    while (at < order.length && (order[at + 1] !== step || order[at + 2] !== stepLow)) at += 3
    if (at < order.length) order.splice(at, 3)
    else orders.delete(scope)
  })
  const count = (scope: number): number => {
    const kept = current().get(scope)
    if (kept !== undefined) return kept
    const steps = countLoopSteps(db, scope)
    if (sizes.size >= MAX_SCOPES) {
      sizes.clear()
      orders.clear()
    }
    sizes.set(scope, steps)
    return steps
  }
  return {
    added(place, sinceMs) {
      const kept = current().get(place.scope)
      if (kept === undefined) return
      sizes.set(place.scope, kept + 1)
      const order = orders.get(place.scope)
      if (order !== undefined) insertInOrder(order, sinceMs, place.step, place.stepLow)
    },
    restarted(scope) {
      current()
      orders.delete(scope)
    },
    count,
    trim(scope, keep, windowMs, nowMs) {
      current()
      let order = orders.get(scope)
      if (order === undefined) {
        order = readLoopStepAges(db, scope)
        if (orders.size >= MAX_ORDERS) orders.delete(orders.keys().next().value as number)
        orders.set(scope, order)
      }
      const steps = order.length / 3
      let drop = Math.max(steps - keep, 0)
      while (drop < steps && (order[3 * drop] as number) <= nowMs - windowMs) drop++
      if (drop > 0) {
        const last = 3 * (drop - 1)
        deleteLoopStepsUpTo(db, scope, order[last] as number, order[last + 1] as number, order[last + 2] as number)
        order.splice(0, 3 * drop)
      }
      sizes.set(scope, steps - drop)
    },
  }
}
