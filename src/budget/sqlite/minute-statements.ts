/**
 * The statements every reserve and settle of one UTC minute run on that minute's five window periods, made
 * once a minute with the periods, their lifetimes and the day as literals in the SQL: a request binds its key,
 * amounts and clock only, not ten strings and numbers more (in node:sqlite each bound value costs more than
 * the row it names). The rules are the same statements' in rows.ts (holdConflict, BOOK_CONFLICT).
 */
import type { StatementSync } from 'node:sqlite'
import type { Micros } from '../../money.js'
import { WINDOW_NAMES } from '../types.js'
import type { Db } from './database.js'
import { BOOK_CONFLICT, DAY_ROW, holdConflict, type BookedDay, type PeriodHold } from './rows.js'

export interface MinuteStatements {
  /** The UTC day (YYYY-MM-DD) whose spend-history row `book` adds to when asked. */
  readonly day: string
  /** Reserves' hold of `add` in the five periods (holdInPeriod's rules); counts their `requests` in the minute. */
  hold(hash: string, add: Micros, nowMs: number, requests: number): void
  /**
   * bookInPeriods on the five periods: charges `actual`, releases up to `reserved`, recreates a missing or
   * expired row with `expiresAt`; with `withDay`, adds `actual` to the spend of `day` too.
   */
  book(hash: string, actual: Micros, reserved: Micros, expiresAt: number, nowMs: number, withDay: boolean): void
}

/** The statements for `holds` (the minute's five periods, in window order) and the history row of `day`. */
export function prepareMinute(db: Db, holds: readonly PeriodHold[], day: BookedDay): MinuteStatements {
  if (holds.length !== WINDOW_NAMES.length || holds.some((p, i) => p.window !== WINDOW_NAMES[i])) {
    throw new RangeError(`expected the ${WINDOW_NAMES.length} periods in window order`)
  }
  const held = holds.map((p) => `(?1, ${text(p.window)}, ${text(p.period)}, 0, ?2, ${integer(p.expiresAt)}, ${p.window === 'minute' ? '?4' : 0})`)
  const hold = db.prepare(`INSERT INTO periods (hash, win, period, spent, held, expires_at, requests) VALUES ${held.join(', ')} ${holdConflict('?3')}`)
  const booked = holds.map((p) => `(?1, ${text(p.window)}, ${text(p.period)}, ?2, 0, ?4)`)
  const bookSql = (rows: string[]): StatementSync =>
    db.prepare(`INSERT INTO periods (hash, win, period, spent, held, expires_at) VALUES ${rows.join(', ')} ${BOOK_CONFLICT}`)
  const book = bookSql(booked)
  const bookWithDay = bookSql([...booked, `(?1, '${DAY_ROW}', ${text(day.day)}, ?2, 0, ${integer(day.expiresAt)})`])
  return {
    day: day.day,
    hold(hash, add, nowMs, requests) {
      hold.run(hash, add, nowMs, requests)
    },
    book(hash, actual, reserved, expiresAt, nowMs, withDay) {
      ;(withDay ? bookWithDay : book).run(hash, actual, reserved, expiresAt, nowMs)
    },
  }
}

/** A string as an SQL literal. */
function text(value: string): string {
  return `'${value.replaceAll("'", "''")}'`
}

/** An integer as an SQL literal. */
function integer(value: number): string {
  if (!Number.isSafeInteger(value)) throw new RangeError(`not an integer: ${value}`)
  return String(value)
}
