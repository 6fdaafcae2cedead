/**
 * What the reserves and settles of one transaction write in their minute's five periods, summed per key and written
 * just before the commit: one hold and one book statement a key per group commit instead of one each. The works of
 * one commit were all in flight together, so writing their period rows last is an order they could have run in; the
 * transaction's own reads of those rows add what waits here (`pendingHeld`, `pendingRequests`), so every reserve
 * still sees the holds of those before it. Dropped with the transaction when it rolls back.
 */
import type { Micros } from '../../money.js'
import { WINDOW_NAMES, type WindowName } from '../types.js'
import type { Db } from './database.js'
import type { MinuteStatements } from './minute-statements.js'

interface PeriodWrites {
  /** A reserve's hold of `add` in the minute's periods (`ids`, in window order), counted in its minute. */
  hold(statements: MinuteStatements, ids: readonly string[], hash: string, add: Micros, nowMs: number): void
  /**
   * A settle's booking in the minute's periods, its reservation held there by a reserve of this minute (so the rows
   * are live and hold at least `reserved`): charges `actual`, releases `reserved`, with `withDay` adds to the day.
   */
  book(statements: MinuteStatements, hash: string, actual: Micros, reserved: Micros, nowMs: number, withDay: boolean): void
  /**
   * Writes now what this transaction's reserves hold for the key, not yet written: before a booking written at once
   * (outside `book`), which releases only what is written (an abandon in its reserve's own commit).
   */
  writeHolds(hash: string): void
  /** What this transaction's reserves hold, not yet written, in the key's period `id` of `window`. */
  pendingHeld(hash: string, window: WindowName, id: string): Micros
  /** The requests this transaction admitted, not yet counted, in the key's minute `id`. */
  pendingRequests(hash: string, id: string): number
}

interface Hold {
  statements: MinuteStatements
  ids: readonly string[]
  hash: string
  add: Micros
  requests: number
  nowMs: number
}

interface Book {
  statements: MinuteStatements
  hash: string
  actual: Micros
  reserved: Micros
  nowMs: number
  withDay: boolean
}

/**
 * The period writes of the store on `db`; `graceMs` is how long a booked row outlives its period when booking creates
 * it; `written` is told after each write (PeriodReads.written).
 */
export function createPeriodWrites(db: Db, graceMs: number, written: () => void): PeriodWrites {
  const holds = new Map<string, Hold>()
  const books = new Map<string, Book>()
  const writeHold = (h: Hold): void => {
    h.statements.hold(h.hash, h.add, h.nowMs, h.requests)
    written()
  }
  const writeBook = (b: Book): void => {
    b.statements.book(b.hash, b.actual, b.reserved, b.nowMs + graceMs, b.nowMs, b.withDay)
    written()
  }
  db.deferUntilCommit({
    flush() {
      // Holds first: a settle never books a hold of its own transaction (its reserve had committed before).
      if (holds.size > 0) {
        for (const h of holds.values()) writeHold(h)
        holds.clear()
      }
      if (books.size > 0) {
        for (const b of books.values()) writeBook(b)
        books.clear()
      }
    },
    discard() {
      holds.clear()
      books.clear()
    },
  })
  return {
    hold(statements, ids, hash, add, nowMs) {
      const h = holds.get(hash)
      if (h?.statements === statements) {
        h.add += add
        h.requests += 1
        h.nowMs = Math.max(h.nowMs, nowMs)
        return
      }
      // Another minute's (the minute turned within the transaction): written now, and this one waits in its place.
      if (h !== undefined) writeHold(h)
      holds.set(hash, { statements, ids, hash, add, requests: 1, nowMs })
    },
    book(statements, hash, actual, reserved, nowMs, withDay) {
      const b = books.get(hash)
      if (b?.statements === statements) {
        b.actual += actual
        b.reserved += reserved
        b.nowMs = Math.max(b.nowMs, nowMs)
        b.withDay ||= withDay
        return
      }
      if (b !== undefined) writeBook(b)
      books.set(hash, { statements, hash, actual, reserved, nowMs, withDay })
    },
    writeHolds(hash) {
      const h = holds.get(hash)
      if (h === undefined) return
      holds.delete(hash)
      writeHold(h)
    },
    pendingHeld(hash, window, id) {
      const h = holds.get(hash)
      return h !== undefined && h.ids[WINDOW_NAMES.indexOf(window)] === id ? h.add : 0
    },
    pendingRequests(hash, id) {
      const h = holds.get(hash)
      return h !== undefined && h.ids[0] === id ? h.requests : 0
    },
  }
}
