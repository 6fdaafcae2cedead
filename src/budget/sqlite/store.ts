/**
 * The embedded budget store on SQLite: the Redis store's contract, each method one BEGIN IMMEDIATE
 * transaction of a few indexed statements, so processes sharing the file stay exact together.
 * Refusals are typed results; any SQLite fault (cannot open, busy past the timeout, disk) is
 * rethrown as StoreUnavailableError so the proxy fails closed.
 */
import { StoreUnavailableError } from '../../errors.js'
import { isKeyHash } from '../../keys.js'
import type { Micros } from '../../money.js'
import {
  WINDOW_NAMES,
  type WindowName,
  type BudgetStore,
  type ExtendResult,
  type LoopCheckSource,
  type Refusal,
  type Reservation,
  type ReserveInput,
  type ReserveResult,
  type SettleResult,
  type StoreCallObserver,
} from '../types.js'
import {
  assertMicros,
  assertRequestId,
  assertReserveInput,
  DEFAULT_SESSION_TTL_SECONDS,
  lowest,
  loopWindowMs,
  RESERVATION_TTL_SECONDS,
  SETTLED_RECORD_TTL_SECONDS,
} from '../validate.js'
import { dayExpiresAt, dayOf } from '../history.js'
import { currentPeriods, PERIOD_GRACE_SECONDS, periodOf, type Period } from '../windows.js'
import type { Db } from './database.js'
import { prepareMinute, type MinuteStatements } from './minute-statements.js'
import { createKeyCache } from './key-cache.js'
import { createScopeSizes } from './scope-sizes.js'
import { createPeriodReads } from './period-reads.js'
import { createPeriodWrites } from './period-writes.js'
import * as rows from './rows.js'
import { loopCheckOf } from '../../loop/check.js'
import { checksScopeSize, effectiveLoopLimit, LOOP_IN_FLIGHT_TOLERATED, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE } from '../../loop/rule.js'

interface SqliteStoreOptions {
  /** Clock in ms since the epoch; decides the window periods and expiry. Default Date.now. */
  now?: () => number
  /** Idle lifetime of a session, refreshed by each of its requests. Default 86 400 (one day). */
  sessionTtlSeconds?: number
}

const GRACE_MS = PERIOD_GRACE_SECONDS * 1000
const RESERVATION_TTL_MS = RESERVATION_TTL_SECONDS * 1000
const SETTLED_RECORD_TTL_MS = SETTLED_RECORD_TTL_SECONDS * 1000

type KeyCheck = { ok: true; key: rows.KeyRow } | Refusal
/** A window period's settled spend and holds. */
type Usage = (window: WindowName, periodId: string) => { spent: Micros; held: Micros }

/**
 * What every reserve within one UTC minute books alike, made once a minute: the periods, their booked keys
 * (frozen, so reservations share them) as an array and as the stored list, and the statements that hold and
 * book in them.
 */
interface MinutePlan {
  periods: readonly Period[]
  windows: readonly { period: Period; id: string }[]
  /** The periods' ids, in window order. */
  ids: readonly string[]
  bookedKeys: readonly string[]
  booked: string
  statements: MinuteStatements
}

function makeMinutePlan(db: Db, periods: readonly Period[], day: rows.BookedDay): MinutePlan {
  const bookedKeys = Object.freeze(periods.map((p) => rows.bookedKey({ kind: 'period', window: p.window, period: p.id })))
  const holds = periods.map((p) => ({ window: p.window, period: p.id, expiresAt: p.resetsAt.getTime() + GRACE_MS }))
  return {
    periods,
    windows: periods.map((period) => ({ period, id: period.id })),
    ids: Object.freeze(periods.map((period) => period.id)),
    bookedKeys,
    booked: bookedKeys.join('\n'),
    statements: prepareMinute(db, holds, day),
  }
}

// The UTC day of the last settle and its history row's lifetime: made once a day, not once a request.
let lastDay: { index: number; booked: rows.BookedDay } = { index: -1, booked: { day: '', expiresAt: 0 } }
function bookedDay(nowMs: number): rows.BookedDay {
  const index = Math.floor(nowMs / 86_400_000)
  if (index !== lastDay.index) lastDay = { index, booked: Object.freeze({ day: dayOf(nowMs), expiresAt: dayExpiresAt(nowMs) }) }
  return lastDay.booked
}

const COMMA = 44

/**
 * The loop step's booked key of a reservation booked in the minute's periods (`minuteKeys`, in order) and its loop
 * step alone; null for any other list.
 */
function minuteWithLoopStep(bookedKeys: readonly string[], minuteKeys: readonly string[]): string | null {
  const n = minuteKeys.length
  if (bookedKeys.length !== n + 1) return null
  for (let i = 0; i < n; i++) if (bookedKeys[i] !== minuteKeys[i]) return null
  const last = bookedKeys[n] as string
  return last.startsWith('l:') ? last : null
}

/** A reserve with a request id that has a live record: a caller fault, not a refusal. */
function usedId(requestId: string): StoreUnavailableError {
  return new StoreUnavailableError(`request id ${requestId} was already used`)
}

/** Whether the comma-separated list `providers` names `provider` (without making an array per request). */
function allowsProvider(providers: string, provider: string): boolean {
  for (let at = providers.indexOf(provider); at !== -1; at = providers.indexOf(provider, at + 1)) {
    const end = at + provider.length
    if ((at === 0 || providers.charCodeAt(at - 1) === COMMA) && (end === providers.length || providers.charCodeAt(end) === COMMA)) return true
  }
  return false
}

/** The budget store on the database `db`. */
export function createSqliteBudgetStore(db: Db, opts: SqliteStoreOptions = {}): BudgetStore {
  const now = opts.now ?? Date.now
  const sessionTtlMs = (opts.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS) * 1000
  // Told of each reserve, extend and settle as it ends (observeCalls); abandon's own settle is not one.
  let observer: StoreCallObserver | null = null
  let plan: MinutePlan | null = null
  const minutePlan = (nowMs: number): MinutePlan => {
    const periods = currentPeriods(nowMs)
    if (plan?.periods !== periods) plan = makeMinutePlan(db, periods, bookedDay(nowMs))
    return plan
  }
  // A reservation's created_at: requests in the same millisecond share the string.
  let created = { ms: Number.NaN, iso: '' }
  const createdAt = (nowMs: number): string => {
    if (created.ms !== nowMs) created = { ms: nowMs, iso: new Date(nowMs).toISOString() }
    return created.iso
  }

  const periodReads = createPeriodReads(db)
  const periodWrites = createPeriodWrites(db, GRACE_MS, periodReads.written)
  const keys = createKeyCache(db)
  const scopeSizes = createScopeSizes(db)
  // The loop step's place of the reserve and of the settle running now (filled per call, never kept).
  const reservePlace: rows.LoopPlace = { scope: 0, step: 0, stepLow: 0, tag: 0 }
  const settlePlace: rows.LoopPlace = { scope: 0, step: 0, stepLow: 0, tag: 0 }
  /** A period's settled spend and holds, with the holds of this transaction's reserves not yet written. */
  const usage = (hash: string, window: WindowName, id: string, nowMs: number): { spent: Micros; held: Micros } => {
    const stored = periodReads.usage(hash, window, id, nowMs)
    const pending = periodWrites.pendingHeld(hash, window, id)
    return pending === 0 ? stored : { spent: stored.spent, held: stored.held + pending }
  }

  function checkKey(hash: string, provider: string): KeyCheck {
    const key = keys.read(hash)
    if (key === undefined) return { ok: false, reason: 'invalid_key' }
    if (key.active !== 1) return { ok: false, reason: 'key_revoked' }
    if (!allowsProvider(key.providers, provider)) return { ok: false, reason: 'provider_not_allowed' }
    return { ok: true, key }
  }

  /** A key with no limit in any window must be marked `--unlimited` to be used. */
  function budgetNotSet(key: rows.KeyRow): boolean {
    return key.unlimited !== 1 && WINDOW_NAMES.every((window) => rows.limitOf(key, window) === null)
  }

  /**
   * Every limited window must hold `minMicros`; returns the grant shrunk to the tightest one and what that
   * window had left before it (`room`, null when none is limited), or the refusal.
   */
  function fitWindows(key: rows.KeyRow, periods: readonly { period: Period; id: string }[], minMicros: Micros, want: Micros, usage: Usage): { grant: Micros; room: Micros | null } | Refusal {
    let grant = want
    let room: Micros | null = null
    for (const { period, id } of periods) {
      const limit = rows.limitOf(key, period.window)
      if (limit === null) continue
      const { spent, held } = usage(period.window, id)
      const used = spent + held
      if (limit - used < minMicros) {
        return { ok: false, reason: 'budget_exceeded', window: period.window, limitMicros: limit, spentMicros: used, heldMicros: held, resetsAt: period.resetsAt }
      }
      grant = Math.min(grant, limit - used)
      room = lowest(room, limit - used)
    }
    return { grant, room }
  }

  function reserveTx(input: ReserveInput, nowMs: number): ReserveResult {
    const { keyHash: hash, session } = input
    const checked = checkKey(hash, input.provider)
    if (!checked.ok) return checked
    const { key } = checked
    if (budgetNotSet(key)) return { ok: false, reason: 'budget_not_set' }
    const minute = minutePlan(nowMs)
    const periods = minute.windows
    const sessionExpiresAt = nowMs + sessionTtlMs

    // The session's limits are the lowest of what it has, what this request asks and the key's
    // defaults: lowered, never raised, and a lowering sticks even when this request is refused.
    let s: rows.SessionRow | undefined
    // The session row is written once: by a refusal as read and lowered (keepAlive), by an admission counted.
    let keepAlive = false
    // Whether this reserve recorded its loop step as new before its other checks (taken back if one refuses).
    let loopInserted = false
    const refuse = (refusal: Refusal): Refusal => {
      // A request id is used once: a live record (held, settled or tombstone) means a caller fault, before any
      // refusal. Asked here for a refusal; an admission finds it as it writes the record (one probe fewer).
      if (rows.reservationUsed(db, hash, input.requestId, nowMs)) throw usedId(input.requestId)
      if (keepAlive && session !== null && s !== undefined) rows.writeSession(db, hash, session.id, s, sessionExpiresAt)
      // A refused request records nothing.
      if (loopInserted) rows.deleteLoopStep(db, reservePlace)
      return refusal
    }
    if (session !== null) {
      // A row past its idle lifetime reads as none (a new session) and is overwritten whole when written.
      const stored = rows.readSession(db, hash, session.id, nowMs)
      s = {
        budget: lowest(lowest(stored?.budget ?? null, session.budgetMicros), key.session_budget),
        max_steps: lowest(lowest(stored?.max_steps ?? null, session.maxSteps), key.session_max_steps),
        steps: stored?.steps ?? 0,
        spent: stored?.spent ?? 0,
        held: stored?.held ?? 0,
        loop_limit: lowest(stored?.loop_limit ?? null, session.loopLimit ?? null),
      }
      // Every request with a session keeps it alive, admitted or not.
      keepAlive = stored !== undefined || s.budget !== null || s.max_steps !== null || s.loop_limit !== null
    }

    // The loop guard (src/loop/README.md): a step repeated more than the limit within its window is refused.
    // With the guard off (no limit in force) nothing is read or recorded.
    const loopLimit = input.loop == null ? null : effectiveLoopLimit(key.loop_limit, s?.loop_limit ?? null)
    // Its fingerprint is computed only with a limit in force: a key whose guard is off (and no session's) pays none.
    const loop = loopLimit === null ? null : loopCheckOf(input)
    // The step's entry as read (live) or started over (absent or past its window): count, first sighting, requests in
    // flight (booked: the first request of the entry's window aside when it has `loopFirst`), and its row's layout.
    let loopCount = 0
    let loopSince = nowMs
    let loopInflight = 0
    let loopWindow = 0
    let loopIsNew = false
    let loopStarts = true
    let loopTag = 0
    let loopFirst: string | null = null
    const guarded = loop !== null && loopLimit !== null
    if (guarded) {
      loopWindow = loopWindowMs(key.loop_window)
      rows.loopPlace(reservePlace, hash, loop.scope, loop.step)
      // A new step (most of them) is recorded at once as its window's first request: one statement, no read. A new
      // entry is never refused by the guard, and a later check that refuses deletes it (refuse).
      loopInserted = rows.insertFirstLoopStep(db, reservePlace, input.requestId, nowMs, nowMs + loopWindow)
      loopIsNew = loopInserted
      if (!loopInserted) {
        const found = rows.readLoopStep(db, reservePlace) as NonNullable<ReturnType<typeof rows.readLoopStep>>
        // A row of another place (its tag differs) reads as none and is overwritten; either layout of this place's is read.
        const tag = found[3]
        const mine = tag === reservePlace.tag || tag === rows.firstLayoutTag(reservePlace)
        if (mine && nowMs < found[1] + loopWindow) {
          loopCount = found[0]
          loopSince = found[1]
          loopInflight = found[2]
          loopStarts = false
          loopTag = tag
          loopFirst = tag === reservePlace.tag ? null : found[4]
        }
        loopIsNew = !mine
      }
      if (loopCount > loopLimit) {
        return refuse({ ok: false, reason: 'loop_detected', step: loop.step, count: loopCount, limitCount: loopLimit })
      }
    }

    // The request rate: at most rpm admitted requests per UTC minute, counted in the minute period.
    if (key.rpm !== null) {
      const { period, id } = periods[0] as { period: Period; id: string }
      const count = periodReads.requests(hash, 'minute', id, nowMs) + periodWrites.pendingRequests(hash, id)
      if (count >= key.rpm) return refuse({ ok: false, reason: 'rate_limited', limitCount: key.rpm, count, resetsAt: period.resetsAt })
    }

    const fitted = fitWindows(key, periods, input.minMicros, input.maxMicros, (window, id) => usage(hash, window, id, nowMs))
    if ('ok' in fitted) return refuse(fitted)
    let { grant } = fitted
    let { room } = fitted
    if (session !== null && s !== undefined) {
      if (s.max_steps !== null && s.steps >= s.max_steps) return refuse({ ok: false, reason: 'session_steps_exceeded' })
      if (s.budget !== null) {
        const used = s.spent + s.held
        if (s.budget - used < input.minMicros) {
          return refuse({ ok: false, reason: 'session_budget_exceeded', limitMicros: s.budget, spentMicros: used, heldMicros: s.held })
        }
        grant = Math.min(grant, s.budget - used)
        room = lowest(room, s.budget - used)
      }
    }

    // Admitted: hold the grant in every window period (limited or not, so status shows all spend).
    // Booked beyond the periods: the session and the loop step.
    // The minute's periods' keys (shared), then the session's and the loop step's.
    let bookedKeys = minute.bookedKeys
    let booked = minute.booked
    periodWrites.hold(minute.statements, minute.ids, hash, grant, nowMs)
    if (session !== null && s !== undefined) {
      rows.writeSession(db, hash, session.id, { ...s, steps: s.steps + 1, held: s.held + grant }, sessionExpiresAt)
      const sessionKey = rows.bookedKey({ kind: 'session', id: session.id })
      bookedKeys = [...bookedKeys, sessionKey]
      booked = `${booked}\n${sessionKey}`
    }
    if (guarded) {
      if (loopStarts) {
        // The window's first request is not booked: it is in flight while its reservation is held, which settle and
        // abandon change exactly once, so its settle writes nothing here.
        if (!loopInserted) {
          rows.updateLoopStep(db, reservePlace, rows.firstLayoutTag(reservePlace), 1, nowMs, 0, input.requestId, nowMs + loopWindow)
          scopeSizes.restarted(reservePlace.scope)
        }
      } else {
        // A repeat counts unless requests of the step are in flight (beyond a previous one still settling): requests
        // fired at once are not repeats. The first request's reservation is read only when it decides that.
        let inFlight = loopInflight
        if (loopFirst !== null && inFlight === LOOP_IN_FLIGHT_TOLERATED && rows.firstInFlight(db, hash, loopFirst, nowMs)) inFlight++
        const counted = inFlight <= LOOP_IN_FLIGHT_TOLERATED ? loopCount + 1 : loopCount
        rows.updateLoopStep(db, reservePlace, loopTag, counted, loopSince, loopInflight + 1, loopFirst, loopSince + loopWindow)
        const loopKey = rows.loopBookedKey(loop.step, loopSince, loop.scope)
        bookedKeys = [...bookedKeys, loopKey]
        booked = `${booked}\n${loopKey}`
      }
      if (loopInserted) scopeSizes.added(reservePlace, nowMs)
      // Only a new step that checks its scope's size counts it (kept, or a read), and trims a scope found past the limit.
      if (loopIsNew && checksScopeSize(loop.step)) {
        if (scopeSizes.count(reservePlace.scope) > LOOP_STEPS_PER_SCOPE) scopeSizes.trim(reservePlace.scope, LOOP_STEPS_AFTER_TRIM, loopWindow, nowMs)
      }
    }
    if (bookedKeys !== minute.bookedKeys) Object.freeze(bookedKeys)
    const written = rows.writeHeldReservation(
      db,
      hash,
      input.requestId,
      { amount: grant, provider: input.provider, booked: bookedKeys === minute.bookedKeys ? rows.MINUTE_BOOKED : booked, createdAt: createdAt(nowMs) },
      nowMs + RESERVATION_TTL_MS,
      nowMs,
    )
    // Throwing rolls back everything this reserve wrote.
    if (!written) throw usedId(input.requestId)
    const remainingMicros = room === null ? null : room - grant
    return { ok: true, reservation: { keyHash: hash, requestId: input.requestId, reservedMicros: grant, bookedKeys, remainingMicros } }
  }

  /**
   * Computes a loop check's source now, before its transaction, when the key's row as last read puts a limit in force
   * (its own, or the one this request asks for its session): the fingerprint then runs outside the write lock rather
   * than inside the group commit's transaction, which only reads the computed check. The transaction decides as
   * before (the key read anew, a session's stored limit): a row changed since only costs a fingerprint computed
   * unused, and one that throws throws again inside, failing its request as it did.
   */
  function fingerprintEarly(input: ReserveInput, source: LoopCheckSource): void {
    const key = keys.lastRead(input.keyHash)
    if (key === undefined || key.active !== 1) return
    if (effectiveLoopLimit(key.loop_limit, input.session?.loopLimit ?? null) === null) return
    try {
      source()
    } catch {
      // Left to the transaction, which asks it again.
    }
  }

  // The key hash a reserve last found well formed: a key's requests come one after another, and the check is a regex.
  let wellFormedHash = ''
  // reserve and settle are plain functions resolving with their transaction's own promise: no async frame or await
  // per call, and the observer is told as the group commit hands out the result. A failed argument check rejects,
  // as an async function's would.
  function reserve(input: ReserveInput): Promise<ReserveResult> {
    const started = observer === null ? 0 : performance.now()
    try {
      assertReserveInput(input)
      if (input.keyHash !== wellFormedHash) {
        if (!isKeyHash(input.keyHash)) {
          observer?.('reserve', started, false)
          return Promise.resolve({ ok: false, reason: 'invalid_key' })
        }
        wellFormedHash = input.keyHash
      }
      const nowMs = now()
      if (typeof input.loop === 'function') fingerprintEarly(input, input.loop)
      return db.transaction('reserve', () => reserveTx(input, nowMs), observer, started)
    } catch (err) {
      observer?.('reserve', started, true)
      return Promise.reject(err as Error)
    }
  }

  // Rare (a stream past its reservation), so an async function: the grant is added to the reservation only once
  // the transaction has committed (its work may run twice when its group commit fails).
  async function extend(reservation: Reservation, minMicros: Micros, wantMicros: Micros): Promise<ExtendResult> {
    const started = observer === null ? 0 : performance.now()
    try {
      const result = await extendOnce(reservation, minMicros, wantMicros)
      observer?.('extend', started, false)
      return result
    } catch (err) {
      observer?.('extend', started, true)
      throw err
    }
  }

  async function extendOnce(reservation: Reservation, minMicros: Micros, wantMicros: Micros): Promise<ExtendResult> {
    assertMicros('minMicros', minMicros)
    assertMicros('wantMicros', wantMicros)
    if (minMicros > wantMicros) throw new RangeError('minMicros must not exceed wantMicros')
    const { keyHash: hash, requestId } = reservation
    const booked = reservation.bookedKeys.map(rows.parseBooked)
    const nowMs = now()
    const result = await db.transaction('extend', (): ExtendResult => {
      const held = rows.readReservation(db, hash, requestId, nowMs)
      if (held?.state !== 'held') throw new StoreUnavailableError(`reservation ${requestId} is not held (settled or abandoned)`)
      const checked = checkKey(hash, held.provider)
      if (!checked.ok) return checked
      const nowPeriods = currentPeriods(nowMs)
      const periods = booked.flatMap((b) => {
        if (b.kind !== 'period') return []
        const period = nowPeriods.find((p) => p.window === b.window) as Period
        return [{ period, id: b.period }]
      })
      const fitted = fitWindows(checked.key, periods, minMicros, wantMicros, (window, id) => usage(hash, window, id, nowMs))
      if ('ok' in fitted) return fitted
      let grant = fitted.grant
      // The session budget (lowered by a new key default too). An expired session is not recreated.
      const sessionId = booked.find((b) => b.kind === 'session')?.id
      const s = sessionId === undefined ? undefined : rows.readSession(db, hash, sessionId, nowMs)
      if (s !== undefined) {
        const budget = lowest(s.budget, checked.key.session_budget)
        if (budget !== null) {
          const used = s.spent + s.held
          if (budget - used < minMicros) {
            return { ok: false, reason: 'session_budget_exceeded', limitMicros: budget, spentMicros: used, heldMicros: s.held }
          }
          grant = Math.min(grant, budget - used)
        }
      }
      for (const { id, period } of periods) rows.holdInPeriod(db, hash, period.window, id, grant, nowMs + GRACE_MS, nowMs)
      periodReads.written()
      if (sessionId !== undefined && s !== undefined) rows.holdInSession(db, hash, sessionId, grant, nowMs)
      rows.growReservation(db, hash, requestId, grant)
      return { ok: true, grantedMicros: grant }
    })
    if (result.ok) reservation.reservedMicros += result.grantedMicros
    return result
  }

  /**
   * Charges `actual` and releases the hold in the booked places, once per request id. `heldMicros`: what the
   * caller believes the record holds (null: unknown); the record's own amount is what is released.
   */
  function settleTx(hash: string, requestId: string, bookedKeys: readonly string[], actual: Micros, nowMs: number, heldMicros: Micros | null): SettleResult {
    const expiresAt = nowMs + SETTLED_RECORD_TTL_MS
    // The common case, a record held with the caller's amount, is marked settled in one statement; otherwise
    // a held record is read and marked settled.
    let reserved =
      heldMicros !== null && rows.settleHeldAmount(db, hash, requestId, heldMicros, actual, expiresAt, nowMs)
        ? heldMicros
        : rows.settleHeld(db, hash, requestId, actual, expiresAt, nowMs)
    if (reserved === undefined) {
      const record = rows.readReservation(db, hash, requestId, nowMs)
      if (record?.state === 'settled') return { chargedMicros: record.charged, alreadySettled: true }
      // No record: nothing to release, but the request did run, so its cost is still charged.
      reserved = 0
      rows.settleReservation(db, hash, requestId, actual, new Date(nowMs).toISOString(), expiresAt)
    }
    const day = actual > 0 ? bookedDay(nowMs) : null
    // The common case, a reservation of this minute booked in its periods alone or with its loop step, needs
    // no parsing of its periods, and its minute's statement books it when the history day is that minute's too.
    if (plan !== null && (day === null || day.day === plan.statements.day)) {
      if (bookedKeys === plan.bookedKeys) {
        periodWrites.book(plan.statements, hash, actual, reserved, nowMs, day !== null)
        return { chargedMicros: actual, alreadySettled: false }
      }
      const loopKey = minuteWithLoopStep(bookedKeys, plan.bookedKeys)
      if (loopKey !== null) {
        rows.endBookedLoopStep(db, settlePlace, hash, loopKey)
        periodWrites.book(plan.statements, hash, actual, reserved, nowMs, day !== null)
        return { chargedMicros: actual, alreadySettled: false }
      }
    }
    const periods: rows.BookedPeriod[] = []
    for (const key of bookedKeys) {
      if (key.startsWith('l:')) {
        rows.endBookedLoopStep(db, settlePlace, hash, key)
        continue
      }
      const b = rows.parseBooked(key)
      if (b.kind === 'period') periods.push(b)
      else if (b.kind === 'session') rows.bookInSession(db, hash, b.id, actual, reserved, nowMs)
    }
    periodWrites.writeHolds(hash)
    rows.bookInPeriods(db, hash, periods, actual, reserved, nowMs + GRACE_MS, nowMs, day)
    periodReads.written()
    return { chargedMicros: actual, alreadySettled: false }
  }

  function settle(reservation: Reservation, actualMicros: Micros): Promise<SettleResult> {
    const started = observer === null ? 0 : performance.now()
    try {
      assertMicros('actualMicros', actualMicros)
      const { keyHash, requestId, bookedKeys, reservedMicros } = reservation
      const nowMs = now()
      return db.transaction('settle', () => settleTx(keyHash, requestId, bookedKeys, actualMicros, nowMs, reservedMicros), observer, started)
    } catch (err) {
      observer?.('settle', started, true)
      return Promise.reject(err as Error)
    }
  }

  /** The booked keys of every window's period of the minute of `createdAt` (a held record's MINUTE_BOOKED list). */
  function minuteBookedKeys(createdAt: string): readonly string[] {
    const ms = Date.parse(createdAt)
    const first = plan?.periods[0]
    if (plan !== null && first !== undefined && first.start.getTime() <= ms && ms < first.resetsAt.getTime()) return plan.bookedKeys
    return WINDOW_NAMES.map((window) => rows.bookedKey({ kind: 'period', window, period: periodOf(window, ms).id }))
  }

  async function abandon(keyHash: string, requestId: string): Promise<void> {
    assertRequestId(requestId)
    if (!isKeyHash(keyHash)) return
    const nowMs = now()
    await db.transaction('abandon', () => {
      const record = rows.readReservation(db, keyHash, requestId, nowMs)
      if (record?.state === 'settled') return
      // Held: release it (settle at 0) where it was booked. None: the tombstone blocks a late reserve.
      const booked =
        record === undefined ? [] : record.booked === rows.MINUTE_BOOKED ? minuteBookedKeys(record.createdAt) : record.booked.split('\n').filter((k) => k !== '')
      settleTx(keyHash, requestId, booked, 0, nowMs, record === undefined ? null : record.amount)
    })
  }

  async function ping(): Promise<void> {
    await db.transaction('ping', () => undefined)
  }

  return {
    reserve,
    extend,
    settle,
    abandon,
    ping,
    observeCalls(next) {
      observer = next
    },
  }
}
