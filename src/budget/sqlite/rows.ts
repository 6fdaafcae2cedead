/**
 * The embedded store's row operations: one prepared statement each, every one a primary-key lookup or
 * upsert, so an operation is a handful of index probes. Rows past `expires_at` count as absent until
 * the housekeeping timer deletes them, as an expired Redis key would.
 */
import type { Micros } from '../../money.js'
import { WINDOW_NAMES, type WindowName } from '../types.js'
import type { Db } from './database.js'

export interface KeyRow {
  active: number
  providers: string
  lim_minute: number | null
  lim_hourly: number | null
  lim_daily: number | null
  lim_weekly: number | null
  lim_monthly: number | null
  session_budget: number | null
  session_max_steps: number | null
  unlimited: number
  rpm: number | null
  loop_limit: number | null
  loop_window: number | null
}

export interface SessionRow {
  budget: number | null
  max_steps: number | null
  steps: number
  spent: number
  held: number
  /** Lowered by X-Loopers-Loop-Limit; absent on rows read by code that never sets it. */
  loop_limit?: number | null
}

interface ReservationRow {
  state: 'held' | 'settled'
  amount: number
  provider: string
  booked: string
  charged: number
  createdAt: string
}

/**
 * A held record's booked list when it is every window's period of its created_at minute and nothing else (most
 * requests): stored empty, so the record is ~100 bytes smaller; only the process that wrote a held record reads its
 * list back (an abandon of its own request id), and a held record of an earlier release always has a list.
 */
export const MINUTE_BOOKED = ''

/** One booked place of a reservation: a window period, a session, or the loop step it holds in flight. */
export type Booked =
  | { kind: 'period'; window: WindowName; period: string }
  | { kind: 'session'; id: string }
  | { kind: 'loop'; step: string; sinceMs: number; scope: string }

/** The opaque `bookedKeys` strings: `w:<window>:<period>`, `s:<session id>` and `l:<step>:<sinceMs>:<scope>`. */
export function bookedKey(b: Booked): string {
  if (b.kind === 'loop') return loopBookedKey(b.step, b.sinceMs, b.scope)
  return b.kind === 'period' ? `w:${b.window}:${b.period}` : `s:${b.id}`
}

/** bookedKey of a loop step, without the object. */
export function loopBookedKey(step: string, sinceMs: number, scope: string): string {
  return `l:${step}:${sinceMs}:${scope}`
}

export function parseBooked(key: string): Booked {
  if (key.startsWith('s:')) return { kind: 'session', id: key.slice(2) }
  if (key.startsWith('l:')) {
    // The step is 16 hex chars, the scope may hold ':' (a session id): split the since after the step.
    const at = key.indexOf(':', 19)
    return { kind: 'loop', step: key.slice(2, 18), sinceMs: Number(key.slice(19, at)), scope: key.slice(at + 1) }
  }
  const at = key.indexOf(':', 2)
  const window = key.slice(2, at) as WindowName
  if (!key.startsWith('w:') || at === -1 || !WINDOW_NAMES.includes(window)) throw new RangeError(`not a booked key: ${key}`)
  return { kind: 'period', window, period: key.slice(at + 1) }
}

/** The key's limit in `window`; null when none. A switch of named loads: a column looked up by name was a megamorphic load, twice a call. */
export function limitOf(row: KeyRow, window: WindowName): Micros | null {
  switch (window) {
    case 'minute':
      return row.lim_minute
    case 'hourly':
      return row.lim_hourly
    case 'daily':
      return row.lim_daily
    case 'weekly':
      return row.lim_weekly
    case 'monthly':
      return row.lim_monthly
  }
}

// Read by every reserve: its values as an array (node:sqlite makes a row object in dictionary mode).
const READ_KEY_SQL = `SELECT active, providers, lim_minute, lim_hourly, lim_daily, lim_weekly, lim_monthly, session_budget,
    session_max_steps, unlimited, rpm, loop_limit, loop_window FROM keys WHERE hash = ?`

/** A READ_KEY_SQL row, in its column order. */
type KeyValues = [
  active: number,
  providers: string,
  lim_minute: number | null,
  lim_hourly: number | null,
  lim_daily: number | null,
  lim_weekly: number | null,
  lim_monthly: number | null,
  session_budget: number | null,
  session_max_steps: number | null,
  unlimited: number,
  rpm: number | null,
  loop_limit: number | null,
  loop_window: number | null,
]

/** The key's row; undefined when the key does not exist. */
export function readKey(db: Db, hash: string): KeyRow | undefined {
  const v = db.arrayStatement(READ_KEY_SQL).get(hash) as KeyValues | undefined
  if (v === undefined) return undefined
  return {
    active: v[0],
    providers: v[1],
    lim_minute: v[2],
    lim_hourly: v[3],
    lim_daily: v[4],
    lim_weekly: v[5],
    lim_monthly: v[6],
    session_budget: v[7],
    session_max_steps: v[8],
    unlimited: v[9],
    rpm: v[10],
    loop_limit: v[11],
    loop_window: v[12],
  }
}

export function readPeriod(db: Db, hash: string, window: WindowName, period: string, nowMs: number): { spent: number; held: number } {
  const v = db
    .arrayStatement('SELECT spent, held FROM periods WHERE hash = ? AND win = ? AND period = ? AND expires_at > ?')
    .get(hash, window, period, nowMs) as [number, number] | undefined
  return v === undefined ? { spent: 0, held: 0 } : { spent: v[0], held: v[1] }
}

/** A period row's spend, holds, requests and expiry, read whatever its expiry; undefined when absent. */
export function readPeriodRow(db: Db, hash: string, window: WindowName, period: string): [spent: number, held: number, requests: number, expires_at: number] | undefined {
  return db.arrayStatement('SELECT spent, held, requests, expires_at FROM periods WHERE hash = ? AND win = ? AND period = ?').get(hash, window, period) as
    | [number, number, number, number]
    | undefined
}

/** Requests admitted in a period (only the minute's are counted). */
export function readRequests(db: Db, hash: string, window: WindowName, period: string, nowMs: number): number {
  const row = db
    .statement('SELECT requests FROM periods WHERE hash = ? AND win = ? AND period = ? AND expires_at > ?')
    .get(hash, window, period, nowMs) as { requests: number } | undefined
  return row?.requests ?? 0
}

/** Adds `add` to a period's hold; a missing or expired row starts over with `expiresAt`. */
export function holdInPeriod(db: Db, hash: string, window: WindowName, period: string, add: Micros, expiresAt: number, nowMs: number): void {
  db.statement(
    `INSERT INTO periods (hash, win, period, spent, held, expires_at) VALUES (?1, ?2, ?3, 0, ?4, ?5)
     ON CONFLICT (hash, win, period) DO UPDATE SET
       spent = CASE WHEN expires_at > ?6 THEN spent ELSE 0 END,
       held = CASE WHEN expires_at > ?6 THEN held ELSE 0 END + ?4,
       expires_at = CASE WHEN expires_at > ?6 THEN max(expires_at, ?5) ELSE ?5 END`,
  ).run(hash, window, period, add, expiresAt, nowMs)
}

/** One period a reserve holds in: the row and the lifetime a new row starts with. */
export interface PeriodHold {
  window: WindowName
  period: string
  expiresAt: number
}

/**
 * holdInPeriod's rules as the conflict clause of a multi-row insert whose rows bring their hold (`held`), their
 * request count (`requests`: 1 in the minute) and lifetime; `now` names the clock's parameter.
 */
export const holdConflict = (now: string): string => `ON CONFLICT (hash, win, period) DO UPDATE SET
       spent = CASE WHEN expires_at > ${now} THEN spent ELSE 0 END,
       held = CASE WHEN expires_at > ${now} THEN held ELSE 0 END + excluded.held,
       requests = CASE WHEN expires_at > ${now} THEN requests ELSE 0 END + excluded.requests,
       expires_at = CASE WHEN expires_at > ${now} THEN max(expires_at, excluded.expires_at) ELSE excluded.expires_at END`

/** Whether `periods` are one of each window, in WINDOW_NAMES order. */
function inWindowOrder(periods: readonly { window: WindowName }[]): boolean {
  if (periods.length !== WINDOW_NAMES.length) return false
  for (let i = 0; i < periods.length; i++) if ((periods[i] as { window: WindowName }).window !== WINDOW_NAMES[i]) return false
  return true
}

/** One settle's booked periods: where it charges and releases. */
export interface BookedPeriod {
  window: WindowName
  period: string
}

/**
 * The `win` of a key's spend-history rows in the periods table. It sorts before every window name, so a
 * key's days sit just before its live period rows, and the day a settle adds to is on the page the
 * settle writes anyway: one page fewer per commit than a table of its own. (Files written before keep
 * their days in daily_spend too; history reads both.)
 */
export const DAY_ROW = '#day'

/** A settle's spend-history row (win DAY_ROW): the UTC day and the lifetime the row is given. */
export interface BookedDay {
  day: string
  expiresAt: number
}

/**
 * bookInPeriods' rules as the conflict clause of a multi-row insert whose rows bring `actual` as their spend
 * and their lifetime: ?2 actual, ?3 reserved, ?5 the clock. The day row (spend history) always adds, keeps its
 * hold (none) and takes the new lifetime; period rows as holdInPeriod.
 */
export const BOOK_CONFLICT = `ON CONFLICT (hash, win, period) DO UPDATE SET
       spent = CASE WHEN win = '${DAY_ROW}' OR expires_at > ?5 THEN spent ELSE 0 END + ?2,
       held = CASE WHEN win = '${DAY_ROW}' THEN held WHEN expires_at > ?5 THEN max(held - ?3, 0) ELSE 0 END,
       expires_at = CASE WHEN win = '${DAY_ROW}' OR expires_at <= ?5 THEN excluded.expires_at ELSE expires_at END`

// The SQL text of bookInPeriods for n periods with their windows bound, without (2n) or with (2n + 1) a day row,
// and for the five windows in order as literals (a settle's common case), without (0) or with (1) one; built once each.
const bookSql: string[] = []
const bookAllSql: string[] = []

/**
 * Charges `actual` and releases up to `reserved` of the hold (never below zero) in every one of `periods`,
 * in one statement; a missing or expired row is recreated with `expiresAt`. With `day`, the same
 * statement adds `actual` to the key's spend on that day and gives the row `day.expiresAt`.
 */
export function bookInPeriods(
  db: Db,
  hash: string,
  periods: readonly BookedPeriod[],
  actual: Micros,
  reserved: Micros,
  expiresAt: number,
  nowMs: number,
  day: BookedDay | null,
): void {
  const n = periods.length
  if (n === 0 && day === null) return
  // One of each window in order: the windows are literals in the SQL, and only the periods are bound.
  const all = inWindowOrder(periods)
  const cache = all ? bookAllSql : bookSql
  const shape = (all ? 0 : 2 * n) + (day === null ? 0 : 1)
  let sql = cache[shape]
  if (sql === undefined) {
    const values = all
      ? WINDOW_NAMES.map((window, i) => `(?1, '${window}', ?${6 + i}, ?2, 0, ?4)`)
      : periods.map((_, i) => `(?1, ?${6 + 2 * i}, ?${7 + 2 * i}, ?2, 0, ?4)`)
    const next = 6 + (all ? n : 2 * n)
    if (day !== null) values.push(`(?1, '${DAY_ROW}', ?${next}, ?2, 0, ?${next + 1})`)
    sql = `INSERT INTO periods (hash, win, period, spent, held, expires_at) VALUES ${values.join(', ')} ${BOOK_CONFLICT}`
    cache[shape] = sql
  }
  const statement = db.statement(sql)
  if (all) {
    // A settle's common case, bound without an array of arguments.
    const [m, h, d, w, mo] = periods as [BookedPeriod, BookedPeriod, BookedPeriod, BookedPeriod, BookedPeriod]
    if (day === null) statement.run(hash, actual, reserved, expiresAt, nowMs, m.period, h.period, d.period, w.period, mo.period)
    else statement.run(hash, actual, reserved, expiresAt, nowMs, m.period, h.period, d.period, w.period, mo.period, day.day, day.expiresAt)
    return
  }
  const args: Array<string | number> = [hash, actual, reserved, expiresAt, nowMs]
  for (const p of periods) args.push(p.window, p.period)
  if (day !== null) args.push(day.day, day.expiresAt)
  statement.run(...args)
}

export function readSession(db: Db, hash: string, id: string, nowMs: number): SessionRow | undefined {
  const v = db
    .arrayStatement('SELECT budget, max_steps, steps, spent, held, loop_limit FROM sessions WHERE hash = ? AND id = ? AND expires_at > ?')
    .get(hash, id, nowMs) as [budget: number | null, max_steps: number | null, steps: number, spent: number, held: number, loop_limit: number | null] | undefined
  return v === undefined ? undefined : { budget: v[0], max_steps: v[1], steps: v[2], spent: v[3], held: v[4], loop_limit: v[5] }
}

/** Writes a session's limits, counters and lifetime: every column, so a new session or one past its lifetime is written whole. */
export function writeSession(db: Db, hash: string, id: string, s: SessionRow, expiresAt: number): void {
  db.statement(
    `INSERT INTO sessions (hash, id, budget, max_steps, steps, spent, held, expires_at, loop_limit)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
     ON CONFLICT (hash, id) DO UPDATE SET budget = ?3, max_steps = ?4, steps = ?5, spent = ?6,
       held = ?7, expires_at = ?8, loop_limit = ?9`,
  ).run(hash, id, s.budget, s.max_steps, s.steps, s.spent, s.held, expiresAt, s.loop_limit ?? null)
}

/** Adds to a live session's hold; an expired session is not recreated. */
export function holdInSession(db: Db, hash: string, id: string, add: Micros, nowMs: number): void {
  db.statement('UPDATE sessions SET held = held + ? WHERE hash = ? AND id = ? AND expires_at > ?').run(add, hash, id, nowMs)
}

export function bookInSession(db: Db, hash: string, id: string, actual: Micros, reserved: Micros, nowMs: number): void {
  db.statement('UPDATE sessions SET spent = spent + ?, held = max(held - ?, 0) WHERE hash = ? AND id = ? AND expires_at > ?').run(
    actual,
    reserved,
    hash,
    id,
    nowMs,
  )
}

export function readReservation(db: Db, hash: string, requestId: string, nowMs: number): ReservationRow | undefined {
  const v = db
    .arrayStatement('SELECT state, amount, provider, booked, charged, created_at FROM reservations WHERE hash = ? AND request_id = ? AND expires_at > ?')
    .get(hash, requestId, nowMs) as [state: ReservationRow['state'], amount: number, provider: string, booked: string, charged: number, createdAt: string] | undefined
  return v === undefined ? undefined : { state: v[0], amount: v[1], provider: v[2], booked: v[3], charged: v[4], createdAt: v[5] }
}

/** Whether the request id has a live record (held, settled or a tombstone). */
export function reservationUsed(db: Db, hash: string, requestId: string, nowMs: number): boolean {
  return db.arrayStatement('SELECT 1 FROM reservations WHERE hash = ? AND request_id = ? AND expires_at > ?').get(hash, requestId, nowMs) !== undefined
}

/**
 * Writes a held record for a request id without a live record (an expired one is replaced); false, and
 * nothing written, when the id has a live record (held, settled or a tombstone): the id was used.
 */
export function writeHeldReservation(
  db: Db,
  hash: string,
  requestId: string,
  r: { amount: Micros; provider: string; booked: string; createdAt: string },
  expiresAt: number,
  nowMs: number,
): boolean {
  // Plain ? parameters (excluded.* in the update) measured no cheaper: ~200 of ~41k node:sqlite instructions a request.
  const { changes } = db
    .statement(
      `INSERT INTO reservations (hash, request_id, state, amount, provider, booked, charged, created_at, expires_at)
       VALUES (?1, ?2, 'held', ?3, ?4, ?5, 0, ?6, ?7)
       ON CONFLICT (hash, request_id) DO UPDATE SET state = 'held', amount = ?3, provider = ?4, booked = ?5,
         charged = 0, created_at = ?6, expires_at = ?7 WHERE expires_at <= ?8`,
    )
    .run(hash, requestId, r.amount, r.provider, r.booked, r.createdAt, expiresAt, nowMs)
  return changes === 1
}

export function growReservation(db: Db, hash: string, requestId: string, add: Micros): void {
  db.statement('UPDATE reservations SET amount = amount + ? WHERE hash = ? AND request_id = ?').run(add, hash, requestId)
}

/**
 * Marks a held request settled with `charged`, as settleHeld does, when its live record holds exactly `amount`
 * (the caller's own reservation, the common case): one statement instead of a read and a write. False, and
 * nothing changed, when it does not (settled before, no record, or another amount: ask settleHeld).
 */
export function settleHeldAmount(db: Db, hash: string, requestId: string, amount: Micros, charged: Micros, expiresAt: number, nowMs: number): boolean {
  const { changes } = db
    .statement(
      `UPDATE reservations SET state = 'settled', charged = ?4, booked = '', expires_at = ?5
       WHERE hash = ?1 AND request_id = ?2 AND expires_at > ?6 AND state = 'held' AND amount = ?3`,
    )
    .run(hash, requestId, amount, charged, expiresAt, nowMs)
  return changes === 1
}

/**
 * Marks a held request settled with `charged` (dropping its booked list, no longer needed: a settled record
 * only answers a repeated settle and blocks the id); returns what it held, or undefined when no live
 * record was held (settled before, or none: see settleReservation).
 */
export function settleHeld(db: Db, hash: string, requestId: string, charged: Micros, expiresAt: number, nowMs: number): number | undefined {
  // A read, then an update by primary key: cheaper in SQLite than one UPDATE … RETURNING (which buffers its rows).
  const row = db
    .arrayStatement(`SELECT amount FROM reservations WHERE hash = ? AND request_id = ? AND expires_at > ? AND state = 'held'`)
    .get(hash, requestId, nowMs) as [amount: number] | undefined
  if (row === undefined) return undefined
  db.statement(`UPDATE reservations SET state = 'settled', charged = ?3, booked = '', expires_at = ?4 WHERE hash = ?1 AND request_id = ?2`).run(
    hash,
    requestId,
    charged,
    expiresAt,
  )
  return row[0]
}

/**
 * Marks a request settled with `charged` (dropping its booked list, no longer needed: a settled record
 * only answers a repeated settle and blocks the id); with no live record, a tombstone blocks the id.
 */
export function settleReservation(db: Db, hash: string, requestId: string, charged: Micros, createdAt: string, expiresAt: number): void {
  db.statement(
    `INSERT INTO reservations (hash, request_id, state, amount, provider, booked, charged, created_at, expires_at)
     VALUES (?1, ?2, 'settled', 0, '', '', ?3, ?4, ?5)
     ON CONFLICT (hash, request_id) DO UPDATE SET state = 'settled', charged = ?3, booked = '', expires_at = ?5`,
  ).run(hash, requestId, charged, createdAt, expiresAt)
}

/**
 * A loop step's place in loop_steps, integers instead of three text columns, so a seek compares integers and a page
 * holds several times the rows: the step exactly, as `step` (its first 13 hex digits) and `stepLow` (its last 3), so
 * a scope's steps sort as their hex; the key hash and the scope hashed together into 84 bits: `scope` (52)
 * and `tag` (32), stored in the row and compared. A row whose tag differs is another (key, scope)'s and reads as
 * absent, so two scopes sharing a `scope` only restart each other's counts (the guard misses repeats, never refuses
 * wrongly); both sharing all 84 bits is a chance of about n^2 / 2^85 among n live scopes. Written into `out` (one per
 * caller, reused): no allocation per request.
 */
export interface LoopPlace {
  scope: number
  step: number
  stepLow: number
  tag: number
}

const TWO_32 = 2 ** 32

/** The hex digits of `s` from `from` to `to` (at most 13: exact in a double) as a number. */
function hexValue(s: string, from: number, to: number): number {
  let v = 0
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    v = v * 16 + (c <= 57 ? c - 48 : (c | 32) - 87)
  }
  return v
}

/** murmur3's 32-bit finalizer: every input bit moves every output bit. */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

// The lanes after the key hash's characters, for the key hash seen last (a key's requests come one after another).
let laneHash = ''
let laneA = 0
let laneB = 0
let laneC = 0

/** Sets `out` to the place of `step` (16 hex digits) in `scope` under the key `hash`. */
export function loopPlace(out: LoopPlace, hash: string, scope: string, step: string): LoopPlace {
  return placeOf(out, hash, scope, 0, step, 0)
}

/**
 * A request of a loop step ended, named by its booked key (`loopBookedKey`: l:<step>:<sinceMs>:<scope>), read where
 * it stands (no string or object made): endLoopStep at its place, `out` its place.
 */
export function endBookedLoopStep(db: Db, out: LoopPlace, hash: string, key: string): void {
  // The step is 16 hex chars from 2, the since digits from 19 up to the ':' before the scope (which may hold ':').
  let sinceMs = 0
  let at = 19
  for (; at < key.length; at++) {
    const c = key.charCodeAt(at)
    if (c === 58) break
    sinceMs = sinceMs * 10 + (c - 48)
  }
  endLoopStep(db, placeOf(out, hash, key, at + 1, key, 2), sinceMs)
}

/** loopPlace of the scope `scopeText` from `scopeFrom` to its end, and the step in `stepText` from `stepFrom`. */
function placeOf(out: LoopPlace, hash: string, scopeText: string, scopeFrom: number, stepText: string, stepFrom: number): LoopPlace {
  // Three 32-bit lanes (FNV-1a's step with three primes and offsets) over the key hash's characters, then the scope's.
  if (hash !== laneHash) {
    let a = 0x811c9dc5
    let b = 0x9e3779b9
    let c = 0x27d4eb2f
    for (let i = 0; i < hash.length; i++) {
      const ch = hash.charCodeAt(i)
      a = Math.imul(a ^ ch, 0x01000193)
      b = Math.imul(b ^ ch, 0x5bd1e995)
      c = Math.imul(c ^ ch, 0x165667b1)
    }
    laneHash = hash
    laneA = a
    laneB = b
    laneC = c
  }
  let a = laneA
  let b = laneB
  let c = laneC
  for (let i = scopeFrom; i < scopeText.length; i++) {
    const ch = scopeText.charCodeAt(i)
    a = Math.imul(a ^ ch, 0x01000193)
    b = Math.imul(b ^ ch, 0x5bd1e995)
    c = Math.imul(c ^ ch, 0x165667b1)
  }
  out.scope = (mix32(a) & 0xfffff) * TWO_32 + mix32(b)
  out.step = hexValue(stepText, stepFrom, stepFrom + 13)
  out.stepLow = hexValue(stepText, stepFrom + 13, stepFrom + 16)
  out.tag = mix32(c)
  return out
}

/**
 * The tag a row of the window's-first-request layout carries: its place's tag plus 2^32. The previous release compares
 * the tag with its own, so it reads such a row as another place's (absent: a count restarted, never a wrong refusal).
 */
export function firstLayoutTag(place: LoopPlace): number {
  return place.tag + TWO_32
}

/**
 * The row at a loop step's place: its counted repeats, first sighting, requests in flight, tag and first request;
 * undefined when absent. Tag `place.tag`: the previous release's layout, `inflight` every request of the window in
 * flight. Tag firstLayoutTag(place): `first` is the id of the window's first request, in flight while its reservation
 * is held (firstInFlight), and `inflight` counts the others. Any other tag is another (key, scope, step)'s row.
 * Expiry is the caller's (window) rule.
 */
export function readLoopStep(
  db: Db,
  place: LoopPlace,
): readonly [count: number, since_ms: number, inflight: number, tag: number, first: string | null] | undefined {
  return db.arrayStatement('SELECT count, since_ms, inflight, tag, first FROM loop_steps WHERE scope = ? AND step = ? AND step_low = ?').get(place.scope, place.step, place.stepLow) as
    | [count: number, since_ms: number, inflight: number, tag: number, first: string | null]
    | undefined
}

/**
 * Records the window's first request of a step at a place no row holds (a new step): counted once, nothing else in
 * flight, `requestId` the first request. False, and nothing written, when a row is there (readLoopStep it).
 */
export function insertFirstLoopStep(db: Db, place: LoopPlace, requestId: string, sinceMs: number, expiresAt: number): boolean {
  const { changes } = db
    .statement(
      `INSERT INTO loop_steps (scope, step, step_low, tag, count, since_ms, inflight, expires_at, first) VALUES (?1, ?2, ?3, ?4, 1, ?5, 0, ?6, ?7)
       ON CONFLICT DO NOTHING`,
    )
    .run(place.scope, place.step, place.stepLow, place.tag + TWO_32, sinceMs, expiresAt, requestId)
  return changes === 1
}

/** Removes the row insertFirstLoopStep wrote, when the same reserve then refuses its request. */
export function deleteLoopStep(db: Db, place: LoopPlace): void {
  db.statement('DELETE FROM loop_steps WHERE scope = ? AND step = ? AND step_low = ?').run(place.scope, place.step, place.stepLow)
}

/** Rewrites the row at a place (read by readLoopStep in this transaction): `tag` its layout, `first` its first request or null. */
export function updateLoopStep(db: Db, place: LoopPlace, tag: number, count: number, sinceMs: number, inflight: number, first: string | null, expiresAt: number): void {
  db.statement('UPDATE loop_steps SET tag = ?4, count = ?5, since_ms = ?6, inflight = ?7, first = ?8, expires_at = ?9 WHERE scope = ?1 AND step = ?2 AND step_low = ?3').run(
    place.scope,
    place.step,
    place.stepLow,
    tag,
    count,
    sinceMs,
    inflight,
    first,
    expiresAt,
  )
}

/** Whether the request `requestId` of the key `hash` is in flight: its reservation live and held (not settled or abandoned). */
export function firstInFlight(db: Db, hash: string, requestId: string, nowMs: number): boolean {
  return db.arrayStatement(`SELECT 1 FROM reservations WHERE hash = ? AND request_id = ? AND expires_at > ? AND state = 'held'`).get(hash, requestId, nowMs) !== undefined
}

/**
 * A booked request of the step ended: one fewer in flight, if the row is still its place's (either layout: a booked
 * request counts in `inflight` in both), in the window it was admitted in.
 */
export function endLoopStep(db: Db, place: LoopPlace, sinceMs: number): void {
  db.statement(
    'UPDATE loop_steps SET inflight = inflight - 1 WHERE scope = ?1 AND step = ?2 AND step_low = ?3 AND (tag = ?4 OR tag = ?5) AND since_ms = ?6 AND inflight > 0',
  ).run(place.scope, place.step, place.stepLow, place.tag, place.tag + TWO_32, sinceMs)
}

/** How many steps a scope holds (a read: no page written). */
export function countLoopSteps(db: Db, scope: number): number {
  return (db.arrayStatement('SELECT count(*) FROM loop_steps WHERE scope = ?').get(scope) as unknown as [n: number])[0]
}

/** A scope's steps as flat `[sinceMs, step, stepLow]` triples, oldest first sighting first (ties by place): a scan and sort. */
export function readLoopStepAges(db: Db, scope: number): number[] {
  const found = db.arrayStatement('SELECT since_ms, step, step_low FROM loop_steps WHERE scope = ? ORDER BY since_ms, step, step_low').all(scope) as unknown as Array<
    [since_ms: number, step: number, step_low: number]
  >
  const ages: number[] = []
  for (const [sinceMs, step, stepLow] of found) ages.push(sinceMs, step, stepLow)
  return ages
}

/**
 * Deletes a scope's steps up to and including the one first seen at `sinceMs` at (`step`, `stepLow`), in the order of
 * readLoopStepAges: one pass over the scope, no sort.
 */
export function deleteLoopStepsUpTo(db: Db, scope: number, sinceMs: number, step: number, stepLow: number): void {
  db.statement('DELETE FROM loop_steps WHERE scope = ?1 AND (since_ms < ?2 OR (since_ms = ?2 AND (step, step_low) <= (?3, ?4)))').run(scope, sinceMs, step, stepLow)
}

/** Settled spend per day from `first` to `last` (inclusive, 'YYYY-MM-DD'), days with none left out. */
export function readDays(db: Db, hash: string, first: string, last: string, nowMs: number): Array<{ day: string; spent: number }> {
  return db
    .statement(
      `SELECT day, sum(spent) AS spent FROM (
         SELECT period AS day, spent FROM periods WHERE hash = ?1 AND win = '${DAY_ROW}' AND period >= ?2 AND period <= ?3 AND expires_at > ?4
         UNION ALL
         SELECT day, spent FROM daily_spend WHERE hash = ?1 AND day >= ?2 AND day <= ?3 AND expires_at > ?4)
       GROUP BY day`,
    )
    .all(hash, first, last, nowMs) as Array<{ day: string; spent: number }>
}
