/**
 * Deletes expired periods, sessions, reservation records, loop steps and spend history of the embedded store on an unref'd
 * timer, so no request pays for the clean-up. There is no index on expiry (it would cost every
 * request); each tick walks the next BATCH rows of every table in primary-key order from where the
 * last tick stopped, so one tick stays well under a millisecond and every row is seen once per lap.
 */
import type { Db } from './database.js'
import { loopStepSwept } from './scope-sizes.js'

interface Housekeeping {
  /** One batch per table; returns how many rows went. */
  sweep(): number
  stop(): void
}

const SWEEP_INTERVAL_MS = 250
/** The sweep's transaction name: its deletes are redone after a crash, so they need no checkpoint of their own. */
export const SWEEP_TRANSACTION = 'clean up'
/** While a tick finds mostly expired rows, the next one follows after this instead (catching up). */
const CATCH_UP_MS = 20
/** Rows looked at per table per tick: a tick that deletes them all stays under a millisecond. */
const BATCH = 100

interface Table {
  name: string
  key: readonly string[]
}

const TABLES: readonly Table[] = [
  { name: 'periods', key: ['hash', 'win', 'period'] },
  { name: 'sessions', key: ['hash', 'id'] },
  { name: 'reservations', key: ['hash', 'request_id'] },
  { name: 'loops', key: ['hash', 'scope', 'step'] },
  { name: 'loop_steps', key: ['scope', 'step', 'step_low'] },
  { name: 'daily_spend', key: ['hash', 'day'] },
]

type Row = Record<string, string | number>

/** Starts sweeping `db` every `intervalMs`; `now` decides what has expired. Faults are left to the next tick. */
export function startHousekeeping(db: Db, now: () => number = Date.now, intervalMs = SWEEP_INTERVAL_MS): Housekeeping {
  // Where each table's walk stands: the primary key of the last row looked at (null: from the start).
  const cursors = new Map<string, string[] | null>(TABLES.map((t) => [t.name, null]))

  const sweepTable = (table: Table, nowMs: number): number => {
    const cols = table.key.join(', ')
    const marks = table.key.map(() => '?').join(', ')
    const cursor = cursors.get(table.name) ?? null
    const after = cursor === null ? '' : `WHERE (${cols}) > (${marks})`
    const rows = db
      .statement(`SELECT ${cols}, expires_at FROM ${table.name} ${after} ORDER BY ${cols} LIMIT ${BATCH}`)
      .all(...(cursor ?? [])) as Row[]
    const remove = db.statement(`DELETE FROM ${table.name} WHERE (${cols}) = (${marks}) AND expires_at <= ?`)
    let removed = 0
    for (const row of rows) {
      if ((row.expires_at as number) > nowMs) continue
      const gone = Number(remove.run(...table.key.map((k) => row[k] as string), nowMs).changes)
      if (gone > 0 && table.name === 'loop_steps') loopStepSwept(db, row.scope as number, row.step as number, row.step_low as number)
      removed += gone
    }
    const last = rows.at(-1)
    cursors.set(table.name, rows.length < BATCH || last === undefined ? null : table.key.map((k) => last[k] as string))
    return removed
  }

  const sweep = (): number => {
    const nowMs = now()
    return db.transactionNow(SWEEP_TRANSACTION, () => TABLES.reduce((sum, table) => sum + sweepTable(table, nowMs), 0))
  }
  let timer: NodeJS.Timeout | null = null
  const tick = (): void => {
    let removed = 0
    try {
      removed = sweep()
    } catch {
      // The store is down or busy: requests already fail closed and report it; try again next tick.
    }
    if (timer === null) return
    timer = setTimeout(tick, removed > BATCH ? CATCH_UP_MS : intervalMs)
    timer.unref()
  }
  timer = setTimeout(tick, intervalMs)
  timer.unref()
  return {
    sweep,
    stop: () => {
      if (timer !== null) clearTimeout(timer)
      timer = null
    },
  }
}
