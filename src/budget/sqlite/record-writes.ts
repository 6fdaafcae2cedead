/**
 * The held records a transaction's reserves write, written together just before its commit: one multi-row insert
 * instead of one statement each. A record's id that turns out used then (a live record: held, settled or a
 * tombstone) fails the transaction, as the reserve's own insert did: a group commit rolls back and each of its
 * works runs again alone, where the reserve with the used id fails by itself. Dropped when the transaction rolls back.
 */
import type { StatementSync } from 'node:sqlite'
import { StoreUnavailableError } from '../../errors.js'
import type { Micros } from '../../money.js'
import type { Db } from './database.js'

/** A held record's contents. */
export interface HeldRecord {
  amount: Micros
  provider: string
  booked: string
  createdAt: string
}

export interface RecordWrites {
  /**
   * Queues a held record for the request id, living `ttlMs` from `nowMs` (an expired record is replaced). A live
   * record for the id, stored or queued before in this transaction, is found at the commit.
   */
  hold(hash: string, requestId: string, r: HeldRecord, nowMs: number): void
  /** Whether this transaction has queued a record for the id (a scan: for refusals, not every reserve). */
  queued(hash: string, requestId: string): boolean
}

/** A reserve with a request id that has a live record: a caller fault, not a refusal. */
export function usedId(requestId: string): StoreUnavailableError {
  return new StoreUnavailableError(`request id ${requestId} was already used`)
}

const COLUMNS = 7
/** At most this many records a statement. */
const MAX_ROWS = 64

/** The record writes of the store on `db`; every record lives `ttlMs`. */
export function createRecordWrites(db: Db, ttlMs: number): RecordWrites {
  // Queued records, COLUMNS values each in the statement's order.
  const values: Array<string | number> = []
  const statements: StatementSync[] = []
  // The SQL for `n` rows; the conflict clause replaces only an expired record (its `now` is the new expiry less ttlMs).
  const insert = (n: number): StatementSync => {
    let s = statements[n]
    if (s === undefined) {
      const rows = Array.from({ length: n }, () => "(?, ?, 'held', ?, ?, ?, 0, ?, ?)").join(', ')
      s = db.prepare(
        `INSERT INTO reservations (hash, request_id, state, amount, provider, booked, charged, created_at, expires_at) VALUES ${rows}
         ON CONFLICT (hash, request_id) DO UPDATE SET state = 'held', amount = excluded.amount, provider = excluded.provider,
           booked = excluded.booked, charged = 0, created_at = excluded.created_at, expires_at = excluded.expires_at
         WHERE expires_at <= excluded.expires_at - ${Math.trunc(ttlMs)}`,
      )
      statements[n] = s
    }
    return s
  }
  // Emptied in place: the array's room is kept for the next transaction's records.
  const clear = (): void => {
    values.length = 0
  }
  db.deferUntilCommit({
    flush() {
      const rows = values.length / COLUMNS
      if (rows === 0) return
      try {
        let written = 0
        for (let at = 0; at < rows; at += MAX_ROWS) {
          const n = Math.min(MAX_ROWS, rows - at)
          written += Number(insert(n).run(...(n === rows ? values : values.slice(at * COLUMNS, (at + n) * COLUMNS))).changes)
        }
        if (written !== rows) throw rows === 1 ? usedId(values[1] as string) : new StoreUnavailableError('a request id of this commit was already used')
      } finally {
        clear()
      }
    },
    discard: clear,
  })
  return {
    hold(hash, requestId, r, nowMs) {
      values.push(hash, requestId, r.amount, r.provider, r.booked, r.createdAt, nowMs + ttlMs)
    },
    queued(hash, requestId) {
      for (let at = 0; at < values.length; at += COLUMNS) if (values[at + 1] === requestId && values[at] === hash) return true
      return false
    },
  }
}
