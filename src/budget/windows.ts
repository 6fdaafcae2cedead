/**
 * Fixed UTC calendar periods of the five budget windows. Pure: every function takes the time in ms,
 * so callers pass their injectable clock's reading.
 */
import type { WindowName } from './types.js'

const MINUTE_MS = 60_000
const HOUR_MS = 60 * MINUTE_MS
const DAY_MS = 24 * HOUR_MS
const WEEK_MS = 7 * DAY_MS

/**
 * How long a period key outlives its period, so a late settlement still finds it: a period key's TTL is its length
 * plus this (told by lua/reserve.lua from the request's time; test/unit/lua-ttl-constants.test.ts holds them equal).
 */
export const PERIOD_GRACE_SECONDS = 86_400

export interface Period {
  window: WindowName
  /** Stable id inside the window: `2026-05-04T13:07`, `2026-05-04T13`, `2026-05-04`, `2026-W19`, `2026-05`. */
  id: string
  start: Date
  /** Start of the next period. */
  resetsAt: Date
}

/** The period of `window` that contains the instant `nowMs`. */
export function periodOf(window: WindowName, nowMs: number): Period {
  const d = new Date(nowMs)
  const y = d.getUTCFullYear()
  const mo = d.getUTCMonth()
  const day = d.getUTCDate()
  const h = d.getUTCHours()
  const date = `${pad(y, 4)}-${pad(mo + 1)}-${pad(day)}`
  switch (window) {
    case 'minute': {
      const start = Date.UTC(y, mo, day, h, d.getUTCMinutes())
      return period(window, `${date}T${pad(h)}:${pad(d.getUTCMinutes())}`, start, start + MINUTE_MS)
    }
    case 'hourly': {
      const start = Date.UTC(y, mo, day, h)
      return period(window, `${date}T${pad(h)}`, start, start + HOUR_MS)
    }
    case 'daily': {
      const start = Date.UTC(y, mo, day)
      return period(window, date, start, start + DAY_MS)
    }
    case 'weekly': {
      // ISO 8601: weeks start on Monday; a week belongs to the year that holds its Thursday.
      const start = Date.UTC(y, mo, day) - ((d.getUTCDay() + 6) % 7) * DAY_MS
      const thursday = start + 3 * DAY_MS
      const weekYear = new Date(thursday).getUTCFullYear()
      const week = Math.floor((thursday - Date.UTC(weekYear, 0, 1)) / WEEK_MS) + 1
      return period(window, `${pad(weekYear, 4)}-W${pad(week)}`, start, start + WEEK_MS)
    }
    case 'monthly':
      return period(window, `${pad(y, 4)}-${pad(mo + 1)}`, Date.UTC(y, mo, 1), Date.UTC(y, mo + 1, 1))
  }
}

let cachedMinute = Number.NaN
let cached: Period[] = []

/**
 * The current period of every window, in WINDOW_NAMES order (minute → monthly). Every period starts on a
 * minute boundary, so the answer is built once per UTC minute and shared (frozen: callers only read it).
 */
export function currentPeriods(nowMs: number): Period[] {
  const minute = Math.floor(nowMs / MINUTE_MS)
  if (minute !== cachedMinute) {
    const at = (window: WindowName): Period => Object.freeze(periodOf(window, nowMs))
    // A list literal, not WINDOW_NAMES.map: map's list is packed from the builtin and holey from optimized code, so
    // once this ran optimized the list took another hidden class and the code reading it deoptimized ("wrong map").
    cached = Object.freeze([at('minute'), at('hourly'), at('daily'), at('weekly'), at('monthly')]) as Period[]
    cachedMinute = minute
  }
  return cached
}

function period(window: WindowName, id: string, startMs: number, endMs: number): Period {
  return {
    window,
    id,
    start: new Date(startMs),
    resetsAt: new Date(endMs),
  }
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0')
}
