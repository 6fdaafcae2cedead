/**
 * The budget store on Redis: each method is one Lua script, one round trip, atomic across every
 * window period and the session of a key. Refusals are typed results; any Redis fault (unreachable,
 * timeout, error reply) is rethrown as StoreUnavailableError so the proxy fails closed.
 */
import { StoreUnavailableError } from '../../errors.js'
import { keepRecords } from '../../proxy/keep-shapes.js'
import { isKeyHash } from '../../keys.js'
import type { Micros } from '../../money.js'
import type { RedisClient } from './redis-client.js'
import { argList, encodeArgs, encodeStart, joinArg, type EncodedArgs, type ScriptArg } from './script-args.js'
import { evalScript, script } from './script-command.js'
import { AskedLoop, blankRecords, BookedParts, QueuedReserve, QueuedSettle, ReserveCall, type FixedKeys } from './store-records.js'
import { ALREADY, DUPLICATE, HELD, int, intIn, LOOP_NEEDED, NOT_HELD, OK, refusal, replyOf, unexpected } from './script-replies.js'
import { curKey, dayKey, LAYOUT_KEY, loopKeyStart, noSessionKey, periodKey, recordKey, reservationKey, reservationKeyStart, sessionKey, suffixKey } from './redis-keys.js'
import type {
  BudgetStore,
  ExtendResult,
  Reservation,
  ReserveInput,
  ReserveResult,
  SettleResult,
  StoreCallObserver,
} from '../types.js'
import {
  assertMicros,
  assertRequestId,
  assertReserveInput,
  DEFAULT_SESSION_TTL_SECONDS,
  SETTLED_RECORD_TTL_SECONDS,
} from '../validate.js'
import { dayOf } from '../history.js'
import { loopCheckOf } from '../../loop/check.js'
import { currentPeriods, PERIOD_GRACE_SECONDS, type Period } from '../windows.js'

interface BudgetStoreOptions {
  /** Clock in ms since the epoch; decides the window periods. Default Date.now. */
  now?: () => number
  /** Idle lifetime of a session, refreshed by each of its requests. Default 86 400 (one day). */
  sessionTtlSeconds?: number
  /**
   * How long (ms) after a turn that sent queued reserves (or settles) of a key, or after a batch of either was answered,
   * its next ones still wait for their turn's end even when none is in flight: under load a turn's first reserve sent
   * alone costs a call of its own. Default 2.
   */
  batchedHoldMs?: number
}

/** Returns the store (no Redis round trip happens here). */
export function createBudgetStore(redis: RedisClient, opts: BudgetStoreOptions = {}): BudgetStore {
  const now = opts.now ?? Date.now
  const sessionTtlSeconds = opts.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS
  const batchedHoldMs = opts.batchedHoldMs ?? BATCHED_HOLD_MS
  const scripts = { reserve: script('reserve'), reserveBatch: script('reserve-batch'), extend: script('extend'), settle: script('settle'), settleBatch: script('settle-batch'), abandon: script('abandon'), layout: script('layout') }
  // Told of each reserve, extend and settle as its command ends (observeCalls); abandon's own settle is not one.
  let observer: StoreCallObserver | null = null
  // Whether the store is not marked for the string layout (LAYOUT_KEY), read once a minute of the clock without
  // waiting: then the scripts are passed the five period hashes as KEYS (the hash layout's keys, named in Lua
  // otherwise at a cost). Either way a key on either layout is handled; until the first read, the string layout's keys.
  let periodsInHashes = false
  let layoutReadAt = Number.NaN

  /** Whether to pass the period hashes, refreshed when `stamp` (a minute) is not the last one read in. */
  function passPeriods(stamp: number): boolean {
    if (stamp !== layoutReadAt) readLayout(stamp)
    return periodsInHashes
  }

  /** Reads the marker for the minute `stamp` without waiting; NaN reads nothing (the warm-up below). */
  function readLayout(stamp: number): void {
    layoutReadAt = stamp
    if (Number.isNaN(stamp)) return
    // A script, not ioredis' get: a command of ioredis' own class sent with a timeout ends with its properties in a
    // dictionary, so the hidden class its optimized send and reply paths embed for it lives only while one waits.
    evalScript(redis, scripts.layout, 1, [LAYOUT_KEY], readMarker, null).then((stringLayout) => { periodsInHashes = !stringLayout }, () => { /* kept as it was: either is correct */ })
  }

  // The minute's re-read given V8's feedback now, so that the first minute's turn is no new path for the optimized
  // request code (without it: a deopt of reserve, and of passPeriods, and their recompiles, in every young process).
  for (let i = 0; i < WARM_CALLS; i++) passPeriods(Number.NaN)

  // reserve, extend and settle are plain functions resolving with the script command's own promise: no async frame
  // or await waits across the round trip. What a reply means is read as it arrives (readReserve, …); a failed
  // argument check rejects, as an async function's would.
  function reserve(input: ReserveInput): Promise<ReserveResult> {
    const started = observer === null ? 0 : performance.now()
    try {
      assertReserveInput(input)
      const { keyHash: hash, session } = input
      if (!isKeyHash(hash)) {
        observer?.('reserve', started, false)
        return Promise.resolve({ ok: false, reason: 'invalid_key' })
      }
      const nowMs = now()
      const periods = currentPeriods(nowMs)
      const fixed = fixedKeys(hash, periods)
      const inHashes = passPeriods(fixed.minute)
      // Without a session, on a store marked for the string layout (nearly always): sent at once when none of its key's
      // reserves is queued or unanswered, none was queued within batchedHoldMs (a key under load keeps batching)
      // and no settle of the key waits for the turn's end (sent first, its release would leave room); else it waits for
      // the turn's other reserves of its key, sent as one reserve-batch.lua call.
      if (session === null && !inHashes) {
        if (fixed.reserves === 0 && performance.now() - fixed.reservesBatchedAt >= batchedHoldMs && (waiting.size === 0 || !waiting.has(fixed))) {
          // Counted once sent: a call that ends at once (a client that refuses commands offline) was counted down first.
          const sent = reserveWith(input, nowMs, periods, fixed, false, started, reserveEnded)
          fixed.reserves++
          return sent
        }
        fixed.reserves++
        const queued = new Promise<ReserveResult>(takeSettlers)
        const resolve = takenResolve
        const reject = takenReject
        takenResolve = takenReject = NOTHING_TAKEN
        queueReserve(new QueuedReserve(input, nowMs, periods, started, fixed, resolve, reject))
        return queued
      }
      return reserveWith(input, nowMs, periods, fixed, inHashes, started, null)
    } catch (err) {
      observer?.('reserve', started, true)
      return Promise.reject(err as Error)
    }
  }

  /** reserve.lua's call for a checked input, in the periods of `nowMs`; `ended` hears of its end (reserveEnded, or null). */
  function reserveWith(input: ReserveInput, nowMs: number, periods: Period[], fixed: FixedKeys, inHashes: boolean, started: number, ended: ((call: ReserveCall) => void) | null): Promise<ReserveResult> {
    const { keyHash: hash, session } = input
    // A check's source is computed only when a limit may be in force: the key's guard was found in force, or the request
    // asks a session limit. Else it is asked without its scope and step, and reserve.lua answers 'loop_needed' if a
    // limit is in force after all (resendChecked).
    const source = input.loop
    const asked = typeof source === 'function' && fixed.loopGuard !== true && session?.loopLimit == null
    const loop = asked ? null : loopCheckOf(input)
    // Only the keys the request can touch, and their arguments: the common ones, then a session's, then a loop check's.
    // Written into a list of its final length: pushing onto a short one copies it into a longer one.
    const sessionKeyName = session === null ? null : sessionKey(hash, session.id)
    const args = argList((inHashes ? 6 : 7) + (session === null ? 0 : 5) + (loop === null ? (asked ? 1 : 0) : 3))
    let at = 0
    args[at++] = inHashes ? recordAndPeriods(fixed) : fixed.recordAndCur
    args[at++] = joinArg(fixed.reservationStart, input.requestId)
    if (sessionKeyName !== null) args[at++] = sessionKeyName
    if (loop !== null) {
      args[at++] = joinArg(fixed.loopStart, loop.scope)
    }
    // (The scope's steps by age, lp:{h}:loopt:<scope>, are named by reserve.lua on the rare paths that touch them.)
    const keyCount = (inHashes ? 7 : 3) + (sessionKeyName === null ? 0 : 1) + (loop === null ? 0 : 1)
    args[at++] = input.provider
    args[at++] = input.minMicros
    args[at++] = input.maxMicros
    args[at++] = isoTime(nowMs)
    // (With the period hashes, their ids are not passed: reserve.lua reads them from the names when it needs them.)
    if (!inHashes) args[at++] = fixed.periodIds
    if (session !== null) {
      args[at++] = session.budgetMicros ?? ''
      args[at++] = session.maxSteps ?? ''
      args[at++] = sessionTtlSeconds
      args[at++] = session.loopLimit ?? ''
    }
    if (loop !== null) {
      args[at++] = loop.step
      args[at++] = nowMs
    } else if (asked) {
      args[at++] = LOOP_ASKED
    }
    const call = new ReserveCall(hash, input.requestId, input.maxMicros, periods, fixed, sessionKeyName, loop, asked ? new AskedLoop(input, nowMs, inHashes, started, ended, resendChecked) : null)
    return evalScript(redis, scripts.reserve, keyCount, args, readReserve, call, observer, started, ended)
  }

  /**
   * A reserve whose check was asked without its scope and step, answered 'loop_needed' (a limit is in force; nothing
   * was written): sent again with its check computed, the same request id, time and periods. The observer hears of the
   * second call's end (timed from the first's start), not of the first's (evalScript).
   */
  function resendChecked(call: ReserveCall, asked: AskedLoop): Promise<ReserveResult> {
    const { input, ended } = asked
    // The key's own guard is in force (a session's limit says nothing of the key's other requests).
    if (input.session === null) call.fixed.loopGuard = true
    const sent = reserveWith({ ...input, loop: loopCheckOf(input) }, asked.nowMs, call.periods, call.fixed, asked.inHashes, asked.started, ended)
    // Counted once sent, as reserve counts it (the first call's end counts its own down).
    if (ended !== null) call.fixed.reserves++
    return sent
  }

  // Reserves (without a session) waiting for the event loop's turn to end, by their key's keys of the minute: a key's
  // reserves of one turn cost Redis one call, one read of its record and one read and write of its current periods.
  const reserving = new Map<FixedKeys, QueuedReserve[]>()

  function queueReserve(item: QueuedReserve): void {
    const line = reserving.get(item.fixed)
    // Array.of, not a literal: a line lives until its batch's answer, and a literal's allocation site would have V8
    // change its tenuring under load, throwing away reserve's optimized code (Array.of's arrays have no site).
    if (line === undefined) reserving.set(item.fixed, Array.of(item))
    else line.push(item)
    if (!flushQueued) {
      flushQueued = true
      setImmediate(flushTurn)
    }
  }

  /** An item reserved with reserve.lua, as a reserve not batched is. */
  function reserveAlone(item: QueuedReserve): void {
    try {
      reserveWith(item.input, item.nowMs, item.periods, item.fixed, false, item.started, reserveEnded).then(item.resolve, item.reject)
    } catch (err) {
      item.fixed.reserves--
      observer?.('reserve', item.started, true)
      item.reject(err as Error)
    }
  }

  /**
   * Items `from` to `to` of a line of one key, admitted in one call as reserve.lua would each; any it leaves
   * untouched, with reserve.lua.
   */
  function reserveBatch(fixed: FixedKeys, line: QueuedReserve[], from: number, to: number): void {
    const n = to - from
    // A loop check goes without its scope, step and time ('2') when the key's guard was last found off (a check given
    // computed) or was not found in force (a check's source, computed only then): the script leaves it to reserve.lua
    // should the guard be in force after all.
    const guardOff = fixed.loopGuard === false
    const guardOn = fixed.loopGuard === true
    let loops = 0
    for (let i = 0; i < n; i++) {
      const item = line[from + i] as QueuedReserve
      const source = item.input.loop
      if (source == null) continue
      if (typeof source === 'function') {
        if (!guardOn) {
          item.asked = true
          continue
        }
        try {
          item.loop = loopCheckOf(item.input)
        } catch {
          // Sent as asked: reserve.lua's, which computes it again (and rejects the item) should a limit be in force.
          item.asked = true
          continue
        }
      } else if (!guardOff) {
        item.loop = source
      } else {
        item.asked = true
        continue
      }
      if (item.loop !== null) loops++
    }
    // KEYS: the record and string, each item's record, each loop check's scope; ARGV: the periods, the time, the flags,
    // each item's three, each loop check's two.
    const argvAt = 1 + n + loops
    const args = argList(argvAt + 3 + 3 * n + 2 * loops)
    args[0] = fixed.recordAndCur
    let flags = ''
    let loop = 0
    for (let i = 0; i < n; i++) {
      const item = line[from + i] as QueuedReserve
      const { input } = item
      args[1 + i] = joinArg(fixed.reservationStart, input.requestId)
      args[argvAt + 3 + 3 * i] = input.provider
      args[argvAt + 4 + 3 * i] = input.minMicros
      args[argvAt + 5 + 3 * i] = input.maxMicros
      if (item.asked) {
        flags += '2'
        continue
      }
      const check = item.loop
      if (check === null) {
        flags += '0'
        continue
      }
      flags += '1'
      args[1 + n + loop] = joinArg(fixed.loopStart, check.scope)
      args[argvAt + 3 + 3 * n + 2 * loop] = check.step
      args[argvAt + 4 + 3 * n + 2 * loop] = item.nowMs
      loop++
    }
    args[argvAt] = fixed.periodIds
    args[argvAt + 1] = isoTime((line[from] as QueuedReserve).nowMs)
    args[argvAt + 2] = flags
    void answerReserveBatch(evalScript(redis, scripts.reserveBatch, 2 + n + loops, args, readReserveBatch, n), fixed, line, from, to)
  }

  /**
   * Hands each of a reserve batch's items its reply (a null one: sent alone) or, when the call failed, its error. An
   * async function rather than a callback made per batch: V8 keeps a callback's optimized code only while one such
   * callback lives, so a quiet period's full collection dropped it and the next burst compiled it again.
   */
  async function answerReserveBatch(sent: Promise<unknown[]>, fixed: FixedKeys, line: QueuedReserve[], from: number, to: number): Promise<void> {
    const n = to - from
    let replies: unknown[]
    try {
      replies = await sent
    } catch (err) {
      // Each item was admitted, or not touched: an admitted one's hold is released by the caller's abandon, as a
      // reserve's whose reply was lost.
      for (let i = from; i < to; i++) {
        const item = line[i] as QueuedReserve
        fixed.reserves--
        observer?.('reserve', item.started, true)
        item.reject(err as Error)
      }
      return
    }
    const guard = replies[n]
    fixed.loopGuard = guard === 0 ? false : guard === 1 ? true : null
    // Held from the answer too: with Redis slower than the hold, the settles (and reserves) it sets off would each
    // turn send one alone (at 8 in flight under callgrind, EVALSHA a request 0.73 against 0.28).
    fixed.reservesBatchedAt = fixed.settlesBatchedAt = performance.now()
    for (let i = 0; i < n; i++) {
      const item = line[from + i] as QueuedReserve
      const reply = replies[i]
      if (reply === null) {
        reserveAlone(item)
        continue
      }
      const { input } = item
      fixed.reserves--
      let result: ReserveResult
      try {
        result = readReserve(reply, new ReserveCall(input.keyHash, input.requestId, input.maxMicros, item.periods, fixed, null, item.loop, null))
      } catch (err) {
        observer?.('reserve', item.started, true)
        item.reject(err as Error)
        continue
      }
      observer?.('reserve', item.started, false)
      item.resolve(result)
    }
  }

  function extend(reservation: Reservation, minMicros: Micros, wantMicros: Micros): Promise<ExtendResult> {
    const started = observer === null ? 0 : performance.now()
    try {
      assertMicros('minMicros', minMicros)
      assertMicros('wantMicros', wantMicros)
      if (minMicros > wantMicros) throw new RangeError('minMicros must not exceed wantMicros')
      const booked = bookedParts(reservation)
      const fixed = fixedKeys(reservation.keyHash, currentPeriods(now()))
      const inHashes = passPeriods(fixed.minute)
      const args: ScriptArg[] = [inHashes ? recordAndBooked(booked, fixed) : fixed.recordAndCur, booked.session ?? fixed.noSession, joinArg(fixed.reservationStart, reservation.requestId)]
      args.push(minMicros, wantMicros, sessionFlag(booked), PERIOD_GRACE_SECONDS)
      if (!inHashes) args.push(bookedIds(booked, fixed))
      return evalScript(redis, scripts.extend, inHashes ? 8 : 4, args, readExtend, reservation, observer, started)
    } catch (err) {
      observer?.('extend', started, true)
      return Promise.reject(err as Error)
    }
  }

  function readExtend(raw: unknown, reservation: Reservation): ExtendResult {
    const reply = replyOf(raw, 'extend')
    if (OK.equals(reply[0])) {
      const grantedMicros = int(reply[1])
      reservation.reservedMicros += grantedMicros
      return { ok: true, grantedMicros }
    }
    if (NOT_HELD.equals(reply[0])) {
      throw new StoreUnavailableError(`reservation ${reservation.requestId} is not held (settled or abandoned)`)
    }
    return refusal(reply, currentPeriods(now()))
  }

  function settle(reservation: Reservation, actualMicros: Micros): Promise<SettleResult> {
    const started = observer === null ? 0 : performance.now()
    try {
      assertMicros('actualMicros', actualMicros)
      const booked = bookedParts(reservation)
      const fixed = fixedKeys(reservation.keyHash, currentPeriods(now()))
      // Booked in the string layout's current periods, with no session or loop step (nearly always): sent at once when
      // none of its key's settles is queued or unanswered and none was queued within batchedHoldMs; else it
      // waits for the turn's other settles of its key, sent as one settle-batch.lua call.
      if (booked.keys.length === 5 && !passPeriods(fixed.minute) && samePeriods(booked.keys, fixed.periodKeys)) {
        if (fixed.settles === 0 && performance.now() - fixed.settlesBatchedAt >= batchedHoldMs) {
          // Counted once sent, as a reserve sent at once.
          const sent = settleWith(reservation, actualMicros, observer, started, fixed)
          fixed.settles++
          return sent
        }
        fixed.settles++
        const queued = new Promise<SettleResult>(takeSettlers)
        const resolve = takenResolve
        const reject = takenReject
        takenResolve = takenReject = NOTHING_TAKEN
        queueSettle(new QueuedSettle(reservation, actualMicros, started, fixed, resolve, reject))
        return queued
      }
      return settleWith(reservation, actualMicros, observer, started, null)
    } catch (err) {
      observer?.('settle', started, true)
      return Promise.reject(err as Error)
    }
  }

  // Settles waiting for the event loop's turn to end (setImmediate), by their key's keys of the minute: a key's
  // settles of one turn cost Redis one call, one read and one write of its current periods.
  const waiting = new Map<FixedKeys, QueuedSettle[]>()
  let flushQueued = false

  function queueSettle(item: QueuedSettle): void {
    const line = waiting.get(item.fixed)
    // Array.of, not a literal: as queueReserve's line.
    if (line === undefined) waiting.set(item.fixed, Array.of(item))
    else line.push(item)
    if (!flushQueued) {
      flushQueued = true
      setImmediate(flushTurn)
    }
  }

  /** Sends the turn's waiting settles, then its reserves (a hold released first leaves room for them). */
  function flushTurn(): void {
    // The maps are emptied once sent, not replaced (nothing is queued while this runs): a turn with one request
    // allocates no map, nor a slice of a line of one.
    flushQueued = false
    let at = Number.NaN
    try {
      // A key with several waiting, or one and another unanswered, is loaded: it holds. One waiting for the hold alone
      // renews nothing, or a key whose calls come a little under the hold apart would queue each for good (the open
      // loop at 500 req/s: every reserve and settle a turn's hop, two paths run where the floor runs one).
      // A line past a batch's most goes in several calls, each a range of it: one path for every line (a slice taken
      // only for a long one had no feedback from a warm-up whose lines never were, and deoptimized this function).
      for (const [fixed, line] of waiting) {
        const n = line.length
        if (n > 1 || fixed.settles > 1) fixed.settlesBatchedAt = Number.isNaN(at) ? (at = performance.now()) : at
        for (let from = 0; from < n; from += SETTLE_BATCH_MAX) {
          const to = Math.min(n, from + SETTLE_BATCH_MAX)
          if (to - from === 1) settleAlone(line[from] as QueuedSettle)
          else settleBatch(fixed, line, from, to)
        }
      }
      for (const [fixed, line] of reserving) {
        const n = line.length
        if (n > 1 || fixed.reserves > 1) fixed.reservesBatchedAt = Number.isNaN(at) ? (at = performance.now()) : at
        for (let from = 0; from < n; from += RESERVE_BATCH_MAX) {
          const to = Math.min(n, from + RESERVE_BATCH_MAX)
          if (to - from === 1) reserveAlone(line[from] as QueuedReserve)
          else reserveBatch(fixed, line, from, to)
        }
      }
    } finally {
      waiting.clear()
      reserving.clear()
    }
  }

  /** An item settled with settle.lua, as an unbatched settle is. */
  function settleAlone(item: QueuedSettle): void {
    try {
      settleWith(item.reservation, item.actualMicros, observer, item.started, item.fixed).then(item.resolve, item.reject)
    } catch (err) {
      item.fixed.settles--
      observer?.('settle', item.started, true)
      item.reject(err as Error)
    }
  }

  /**
   * Items `from` to `to` of a line of one key booked in its current string, settled in one call; any it leaves
   * untouched, with settle.lua.
   */
  function settleBatch(fixed: FixedKeys, line: QueuedSettle[], from: number, to: number): void {
    const n = to - from
    const args = argList(2 + 2 * n)
    args[0] = fixed.curAndToday
    for (let i = 0; i < n; i++) {
      const item = line[from + i] as QueuedSettle
      args[1 + i] = joinArg(fixed.reservationStart, item.reservation.requestId)
      args[2 + n + i] = item.actualMicros
    }
    args[1 + n] = fixed.periodIds
    void answerSettleBatch(evalScript(redis, scripts.settleBatch, 2 + n, args, readSettleBatch, n), fixed, line, from, to)
  }

  /** Hands each of a settle batch's items its charge (a negative one: settled alone) or its error, as answerReserveBatch. */
  async function answerSettleBatch(sent: Promise<number[]>, fixed: FixedKeys, line: QueuedSettle[], from: number, to: number): Promise<void> {
    const n = to - from
    let charges: number[]
    try {
      charges = await sent
    } catch (err) {
      // Each item was settled, or not touched: the caller's retry settles it, or finds it settled.
      for (let i = from; i < to; i++) {
        const item = line[i] as QueuedSettle
        fixed.settles--
        observer?.('settle', item.started, true)
        item.reject(err as Error)
      }
      return
    }
    // Held from the answer too, as a reserve batch's.
    fixed.reservesBatchedAt = fixed.settlesBatchedAt = performance.now()
    for (let i = 0; i < n; i++) {
      const item = line[from + i] as QueuedSettle
      const charged = charges[i] as number
      if (charged < 0) {
        settleAlone(item)
      } else {
        fixed.settles--
        observer?.('settle', item.started, false)
        item.resolve({ chargedMicros: charged, alreadySettled: false })
      }
    }
  }

  /**
   * settle's call, told to `callObserver` (abandon's release is not a settle call of its own), and counted down in
   * `counted`'s settles at its end (null: not counted); throws on bad arguments.
   */
  function settleWith(reservation: Reservation, actualMicros: Micros, callObserver: StoreCallObserver | null, started: number, counted: FixedKeys | null): Promise<SettleResult> {
    assertMicros('actualMicros', actualMicros)
    const nowMs = now()
    const booked = bookedParts(reservation)
    const loop = bookedLoop(booked)
    const fixed = fixedKeys(reservation.keyHash, currentPeriods(nowMs))
    // Only the keys settle touches: the current periods' string, today's history, the record, then the session and
    // loop scope it booked (the booked periods' hashes are named by settle.lua from their ids).
    const record = joinArg(fixed.reservationStart, reservation.requestId)
    const inHashes = passPeriods(fixed.minute)
    const keyCount = (inHashes ? 7 : 3) + (booked.session === undefined ? 0 : 1) + (loop === null ? 0 : 1)
    // Written into a list of its final length (see reserve): the keys, as few arguments as encoded, then ARGV.
    const args = argList(keyCount - (inHashes ? 5 : 1) + (loop === null ? 1 : 2) + (inHashes ? 0 : 1))
    let at = 0
    args[at++] = inHashes ? bookedAndToday(booked, fixed) : fixed.curAndToday
    args[at++] = record
    if (booked.session !== undefined) args[at++] = booked.session
    if (loop !== null) args[at++] = loop.key
    args[at++] = actualMicros
    if (!inHashes) args[at++] = bookedIds(booked, fixed)
    if (loop !== null) args[at++] = loop.inFlightField
    return evalScript(redis, scripts.settle, keyCount, args, readSettle, counted, callObserver, started, counted === null ? null : settleEnded)
  }

  async function abandon(keyHash: string, requestId: string): Promise<void> {
    assertRequestId(requestId)
    if (!isKeyHash(keyHash)) return
    const reply = await evalScript(redis, scripts.abandon, 1, [reservationKey(keyHash, requestId), SETTLED_RECORD_TTL_SECONDS], replyOf, 'abandon')
    if (!HELD.equals(reply[0])) return
    // The reserve did run: release its hold (settle at 0) in the keys it booked.
    const bookedKeys = recordedKeys(keyHash, String(reply[2] ?? ''), String(reply[3] ?? ''))
    await settleWith({ keyHash, requestId, reservedMicros: int(reply[1]), bookedKeys }, 0, null, 0, null)
  }

  async function ping(): Promise<void> {
    try {
      await redis.ping()
    } catch (err) {
      throw new StoreUnavailableError(`budget store ping failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
  }

  function observeCalls(callObserver: StoreCallObserver): void {
    observer = callObserver
  }

  return { reserve, extend, settle, abandon, ping, observeCalls }
}

/** reserve.lua's last argument for a loop check asked without its scope and step. */
const LOOP_ASKED = '?'

/** A reserve counted in its key's `reserves` has its answer. */
function reserveEnded(call: ReserveCall): void {
  call.fixed.reserves--
}

/** A settle counted in its key's `settles` has its answer. */
function settleEnded(fixed: FixedKeys | null): void {
  if (fixed !== null) fixed.settles--
}

/** Whether layout.lua's reply is the marker of the string layout ('1'). */
function readMarker(raw: unknown): boolean {
  if (raw !== null && !Buffer.isBuffer(raw)) throw unexpected('layout', raw)
  return raw !== null && raw.length === 1 && raw[0] === STRING_LAYOUT_MARK
}

const STRING_LAYOUT_MARK = 0x31

/**
 * Whether the last reservation read had a remaining figure (not the figure): the blank one kept is given the same kind
 * (a null where the live ones hold numbers changes the field's representation, a deopt of the code that reads it).
 */
let remainingRead = false

function readReserve(raw: unknown, call: ReserveCall): ReserveResult {
  // Admitted with the maximum asked, no loop step booked (a step's first request in its window is not: its record
  // tells whether it is in flight): the reply is what remains (-1: nothing is limited).
  if (typeof raw === 'number') {
    const remainingMicros = raw >= 0 ? raw : null
    remainingRead = raw >= 0
    const reservation = { keyHash: call.hash, requestId: call.requestId, reservedMicros: call.maxMicros, bookedKeys: bookedList(call.fixed.periodKeys, call.sessionKeyName, null), remainingMicros }
    return { ok: true, reservation }
  }
  if (Buffer.isBuffer(raw)) return readAdmitted(raw, call)
  const reply = replyOf(raw, 'reserve')
  // A reused request id means a caller bug or a racing abandon; admitting it could double-book.
  if (DUPLICATE.equals(reply[0])) throw new StoreUnavailableError(`request id ${call.requestId} was already used`)
  // A limit is in force for a check asked without its scope and step: the call's promise follows the one sent again.
  if (LOOP_NEEDED.equals(reply[0])) {
    if (call.asked === null) throw unexpected('reserve', reply)
    return call.asked.resend(call, call.asked) as unknown as ReserveResult
  }
  return refusal(reply, call.periods)
}

const SPACE = 0x20

/** An admitted reserve's reply, one string: '<granted> <remaining> <loopSinceMs>', the last two possibly empty. */
function readAdmitted(reply: Buffer, call: ReserveCall): ReserveResult {
  const first = reply.indexOf(SPACE)
  const second = first < 1 ? -1 : reply.indexOf(SPACE, first + 1)
  if (second < 0) throw unexpected('reserve', reply)
  const { loop } = call
  // The reply names the step's sinceMs when it was recorded; the caller knows its scope's key and the step.
  const booked = loop === null || second + 1 === reply.length ? null : `${call.fixed.loopStart.text}${loop.scope}#${reply.toString('utf8', second + 1)}#${loop.step}`
  const bookedKeys = bookedList(call.fixed.periodKeys, call.sessionKeyName, booked)
  const remainingMicros = second === first + 1 ? null : intIn(reply, first + 1, second)
  remainingRead = remainingMicros !== null
  return { ok: true, reservation: { keyHash: call.hash, requestId: call.requestId, reservedMicros: intIn(reply, 0, first), bookedKeys, remainingMicros } }
}

/** batchedHoldMs's default: about two turns of a loaded event loop. */
const BATCHED_HOLD_MS = 2

/** The most reserves one reserve-batch.lua call takes (a longer line is sent in several). */
const RESERVE_BATCH_MAX = 64

/** What takenResolve and takenReject hold between two queued calls, so that neither keeps a promise (or its caller). */
const NOTHING_TAKEN = (): void => {}
/** The settlers of the promise takeSettlers last ran for, until the queued item that holds them is made. */
let takenResolve: (value: unknown) => void = NOTHING_TAKEN
let takenReject: (err: Error) => void = NOTHING_TAKEN

/**
 * The executor of a queued reserve's or settle's promise, made once: an executor made per call is a function of its
 * own whose optimized code V8 keeps only while one such function lives, so a quiet period's full collection dropped it.
 */
function takeSettlers(resolve: (value: never) => void, reject: (err: Error) => void): void {
  takenResolve = resolve as (value: unknown) => void
  takenReject = reject
}

/** reserve-batch.lua's reply: one an item, reserve.lua's admitted reply or null (untouched); then 1 (the key's loop guard in force) or 0. */
function readReserveBatch(raw: unknown, items: number): unknown[] {
  if (!Array.isArray(raw) || raw.length !== items + 1 || !isReserveBatchReply(raw, items)) throw unexpected('reserve-batch', raw)
  return raw as unknown[]
}

/**
 * Whether each item's reply is null, an integer or bytes, and the last 0 or 1. A loop, as isSettleBatchReply, not a
 * callback made per call (whose optimized code a quiet period's full collection drops: see takeSettlers).
 */
function isReserveBatchReply(raw: unknown[], items: number): boolean {
  for (let i = 0; i < items; i++) {
    const v = raw[i]
    if (v !== null && typeof v !== 'number' && !Buffer.isBuffer(v)) return false
  }
  return raw[items] === 0 || raw[items] === 1
}

/** The most settles one settle-batch.lua call takes (a longer line is sent in several). */
const SETTLE_BATCH_MAX = 64

/** settle-batch.lua's reply: one integer an item, its charge or -1 (untouched). */
function readSettleBatch(raw: unknown, items: number): number[] {
  if (!Array.isArray(raw) || raw.length !== items || !isSettleBatchReply(raw)) throw unexpected('settle-batch', raw)
  return raw as number[]
}

/** Whether each item's reply is an integer of -1 or more. */
function isSettleBatchReply(raw: unknown[]): boolean {
  for (const v of raw) if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) return false
  return true
}

/** Settled now: the charge, an integer; settled before: `['already', charge]`. */
function readSettle(raw: unknown): SettleResult {
  if (typeof raw === 'number') return { chargedMicros: raw, alreadySettled: false }
  const reply = replyOf(raw, 'settle')
  if (!ALREADY.equals(reply[0])) throw unexpected('settle', reply)
  return { chargedMicros: int(reply[1]), alreadySettled: true }
}

/**
 * A reservation's booked keys, frozen: the five periods, then its session and its loop step when it has them.
 * With neither (the common case) they are the minute's shared list itself.
 */
function bookedList(periods: FixedKeys['periodKeys'], session: string | null, loop: string | null): readonly string[] {
  if (session === null && loop === null) return periods
  // A list literal: copying the frozen list (slice) takes a slow path.
  const keys = [periods[0], periods[1], periods[2], periods[3], periods[4]]
  if (session !== null) keys.push(session)
  if (loop !== null) keys.push(loop)
  return Object.freeze(keys)
}

/**
 * The keys a held reservation record booked, from what abandon read of it (its created_at and booked entries): the
 * five periods of `createdAt`, then the session and loop step `booked` names after the key's tag. A record written
 * by an earlier release lists every key in full in `booked`.
 */
function recordedKeys(hash: string, booked: string, createdAt: string): string[] {
  const entries = booked === '' ? [] : booked.split(' ')
  if (entries[0]?.startsWith('lp:') === true) return entries
  const at = Date.parse(createdAt)
  if (Number.isNaN(at)) throw unexpected('abandon', { booked, createdAt })
  const periods = currentPeriods(at).map((p) => periodKey(hash, p.window, p.id))
  return [...periods, ...entries.map((entry) => suffixKey(hash, entry))]
}

/**
 * A reservation's booked keys: five periods, then its session if any, then its loop step if recorded
 * (`<loop scope key>#<sinceMs>#<step>`, the one entry with '#', which no key name holds).
 */
function bookedParts(r: Reservation): BookedParts {
  const keys = r.bookedKeys
  let session: string | undefined
  let loop: string | undefined
  for (let i = 5; i < keys.length; i++) {
    const k = keys[i] as string
    if (k.includes('#')) loop ??= k
    else session ??= k
  }
  if (keys.length < 5 || keys.length - 5 !== (loop === undefined ? 0 : 1) + (session === undefined ? 0 : 1)) {
    throw new RangeError(`reservation ${r.requestId} has ${keys.length} booked keys, expected five periods, a session and a loop step at most`)
  }
  return new BookedParts(keys, session, loop)
}

/** The ids of a reservation's five booked periods, space separated, as the scripts take them (nearly always the current ones, encoded). */
function bookedIds(booked: BookedParts, fixed: FixedKeys): ScriptArg {
  const p = booked.keys
  if (samePeriods(p, fixed.periodKeys)) return fixed.periodIds
  // Written out, not mapped and joined: TurboFan's inlined map makes a holey array where the interpreter's made a packed
  // one, so the join's map check deoptimized settle at the first minute's turn its optimized code met.
  return `${periodIdOf(p[0] as string)} ${periodIdOf(p[1] as string)} ${periodIdOf(p[2] as string)} ${periodIdOf(p[3] as string)} ${periodIdOf(p[4] as string)}`
}

/** The record then the five current period hashes, encoded once a key's minute needs them (reserve's first six KEYS). */
function recordAndPeriods(fixed: FixedKeys): EncodedArgs {
  return (fixed.recordAndPeriods ??= encodeArgs([fixed.record, ...fixed.periodKeys]))
}

/** The record then a reservation's five booked period hashes (extend's first six KEYS), encoded when current. */
function recordAndBooked(booked: BookedParts, fixed: FixedKeys): ScriptArg {
  const p = booked.keys
  if (samePeriods(p, fixed.periodKeys)) return recordAndPeriods(fixed)
  return encodeArgs([fixed.record, p[0] as string, p[1] as string, p[2] as string, p[3] as string, p[4] as string])
}

/** A reservation's five booked period hashes then today's history counter (settle's first six KEYS), encoded when current. */
function bookedAndToday(booked: BookedParts, fixed: FixedKeys): ScriptArg {
  const p = booked.keys
  if (samePeriods(p, fixed.periodKeys)) return (fixed.periodsAndToday ??= encodeArgs([...fixed.periodKeys, fixed.today]))
  return encodeArgs([p[0] as string, p[1] as string, p[2] as string, p[3] as string, p[4] as string, fixed.today])
}

/** Whether a reservation was booked in the current minute's periods (nearly always). */
function samePeriods(p: readonly string[], current: FixedKeys['periodKeys']): boolean {
  return p[0] === current[0] && p[1] === current[1] && p[2] === current[2] && p[3] === current[3] && p[4] === current[4]
}

/** The period id a period key ends with ('lp:{<hash>}:w:<window>:<id>'; an id may hold ':'). */
function periodIdOf(key: string): string {
  const window = key.indexOf(':w:')
  const id = window < 0 ? -1 : key.indexOf(':', window + 3)
  if (id < 0) throw new RangeError(`not a period key: ${key}`)
  return key.slice(id + 1)
}

function sessionFlag(booked: BookedParts): '0' | '1' {
  return booked.session === undefined ? '0' : '1'
}

/**
 * The loop step a reservation holds in flight: its scope's key and the field `<step>:<sinceMs>` counting the step's
 * requests in flight in the window it was admitted in.
 */
function bookedLoop(booked: BookedParts): { key: string; inFlightField: string } | null {
  const { loop } = booked
  if (loop === undefined) return null
  const [key, sinceMs, step] = loop.split('#') as [string, string, string]
  return { key, inFlightField: `${step}:${sinceMs}` }
}

/** Keys of a key hash that change only with the minute; a few thousand keys at most are kept. */
const fixedByHash = new Map<string, FixedKeys>()
const FIXED_KEYS_KEPT = 4_096
/** A key hash no key has (not hex), whose keys fixedKeys builds at load (see WARM_CALLS). */
const WARM_HASH = 'warm'

/** The record, period, placeholder and day-history keys of `hash` in the current periods, built once per key and minute. */
function fixedKeys(hash: string, periods: readonly Period[]): FixedKeys {
  // Every period starts on a minute boundary: the minute's start names the whole set (any clock, any store).
  const stamp = periodsStamp(periods)
  const cached = fixedByHash.get(hash)
  if (cached !== undefined && cached.minute === stamp) return cached
  if (cached === undefined && fixedByHash.size >= FIXED_KEYS_KEPT) fixedByHash.clear()
  const record = recordKey(hash)
  // A list literal, not periods.map: one hidden class whichever tier builds it (see currentPeriods).
  const key = (i: number): string => {
    const p = periods[i] as Period
    return periodKey(hash, p.window, p.id)
  }
  const periodKeys = Object.freeze([key(0), key(1), key(2), key(3), key(4)]) as FixedKeys['periodKeys']
  const todayKey = dayKey(hash, today(stamp).date)
  const fresh: FixedKeys = {
    minute: stamp,
    record,
    periodKeys,
    recordAndPeriods: null,
    periodsAndToday: null,
    periodIds: encodeArgs([periods.map((p) => p.id).join(' ')]),
    recordAndCur: encodeArgs([record, curKey(hash)]),
    curAndToday: encodeArgs([curKey(hash), todayKey]),
    noSession: noSessionKey(hash),
    today: todayKey,
    reservationStart: encodeStart(reservationKeyStart(hash)),
    loopStart: encodeStart(loopKeyStart(hash)),
    reserves: 0,
    settles: 0,
    reservesBatchedAt: Number.NEGATIVE_INFINITY,
    settlesBatchedAt: Number.NEGATIVE_INFINITY,
    loopGuard: null,
  }
  fixedByHash.set(hash, fresh)
  return fresh
}

/** The start (ms) of the minute period: it identifies the whole set of current periods. */
function periodsStamp(periods: readonly Period[]): number {
  return (periods[0] as Period).start.getTime()
}

let cachedDay: { dayNumber: number; date: string } = { dayNumber: Number.NaN, date: '' }

/** The UTC day of `nowMs` (settle.lua tells when its history record may go from the date), built once per day. */
function today(nowMs: number): { date: string } {
  const dayNumber = Math.floor(nowMs / 86_400_000)
  if (dayNumber !== cachedDay.dayNumber) cachedDay = { dayNumber, date: dayOf(nowMs) }
  return cachedDay
}

let isoSecond = { start: Number.NaN, prefix: '' }

/** `nowMs` as toISOString writes it; the text up to its second ('…T12:34:56.') is built once per second. */
function isoTime(nowMs: number): string {
  const start = Math.floor(nowMs / 1000) * 1000
  if (start !== isoSecond.start) isoSecond = { start, prefix: new Date(start).toISOString().slice(0, -4) }
  const ms = Math.floor(nowMs) - start
  return `${isoSecond.prefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`
}

/**
 * Calls of a once-a-minute path made at start so V8 collects its feedback (it allocates a function's feedback only after
 * some calls): a path first met by optimized code deoptimizes it.
 */
const WARM_CALLS = 64

// The minute's rebuild of a key's keys (and the periods') given V8's feedback at load: with the first minute's turn as
// its first use with feedback, optimized fixedKeys and reserve deoptimized there, in every young process.
for (let i = 0; i < WARM_CALLS; i++) fixedKeys(WARM_HASH, currentPeriods(i * 60_000))
/** The warm-up's last keys and periods: what the blank records hold (no key has them). */
const BLANK_FIXED = fixedByHash.get(WARM_HASH) as FixedKeys
const BLANK_PERIODS = currentPeriods(0)
fixedByHash.delete(WARM_HASH)

/** A blank AskedLoop's `resend`: a function declaration, as each store's resendChecked is (one hidden class). */
function resendNone(): Promise<ReserveResult> {
  return Promise.reject(new Error('a blank example is never sent'))
}

// Blank examples of the records, made at each idle release once a key's call has been made (before, there is no hidden
// class to keep, and a blank made first would set its fields' kinds): through a quiet period's full collection their
// hidden classes, which the store's optimized code embeds, stay alive (../../proxy/keep-shapes.ts).
keepRecords({ blankCopy: () => (fixedByHash.size === 0 ? null : blankRecords(BLANK_FIXED, BLANK_PERIODS, resendNone, remainingRead ? 0 : null)) })
