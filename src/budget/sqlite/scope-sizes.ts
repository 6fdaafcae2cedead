/**
 * How many loop steps each scope holds (loop_steps rows of one `scope` id), as this connection last counted and
 * changed them, so the size check of a new step (one in 16) reads a number instead of counting the scope's rows.
 * Kept while Db.keysVersion stays the same (no other connection committed, no rollback, no reopen) and no sweep
 * removed loop steps (loopStepsSwept); otherwise counted anew. Exact: it is count(*) of the scope's rows.
 */
import type { Db } from './database.js'
import { countLoopSteps } from './rows.js'

/** At most this many scopes are kept; past it the cache starts over. */
const MAX_SCOPES = 4096

// Sweeps that removed loop steps, per connection (housekeeping runs on the store's own Db).
const sweeps = new WeakMap<Db, number>()

/** Housekeeping removed loop steps through `db`: every kept size is counted anew. */
export function loopStepsSwept(db: Db): void {
  sweeps.set(db, (sweeps.get(db) ?? 0) + 1)
}

export interface ScopeSizes {
  /** A row was added to `scope` in this transaction (an insert, not an overwrite). */
  added(scope: number): void
  /** The scope's steps (inside a transaction): kept, or counted and kept. */
  count(scope: number): number
  /** The scope now holds `steps` (after a trim of known result). */
  set(scope: number, steps: number): void
}

export function createScopeSizes(db: Db): ScopeSizes {
  const sizes = new Map<number, number>()
  let version = Number.NaN
  let swept = 0
  const current = (): Map<number, number> => {
    const now = db.keysVersion()
    const sweptNow = sweeps.get(db) ?? 0
    if (now !== version || sweptNow !== swept) {
      sizes.clear()
      version = now
      swept = sweptNow
    }
    return sizes
  }
  return {
    added(scope) {
      const kept = current().get(scope)
      if (kept !== undefined) sizes.set(scope, kept + 1)
    },
    count(scope) {
      const kept = current().get(scope)
      if (kept !== undefined) return kept
      const steps = countLoopSteps(db, scope)
      if (sizes.size >= MAX_SCOPES) sizes.clear()
      sizes.set(scope, steps)
      return steps
    },
    set(scope, steps) {
      current().set(scope, steps)
    },
  }
}
