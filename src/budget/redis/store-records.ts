/**
 * The Redis store's per-call records (./store.ts), and blank examples of them that the idle release keeps
 * (../../proxy/keep-shapes.ts). Records are class instances, not object literals: a literal's allocation site may be
 * tenured (see argList). Each constructor gives its record every field, of the kind it will hold, so that one hidden
 * class serves every path (lone or batched, with a loop check asked or not).
 */
import type { Micros } from '../../money.js'
import type { LoopCheck, Reservation, ReserveInput, ReserveResult, SettleResult } from '../types.js'
import type { Period } from '../windows.js'
import { joinArg, type EncodedArgs, type EncodedStart } from './script-args.js'

/** What a reserve's reply is read with: its request and the keys it booked. */
export class ReserveCall {
  constructor(
    readonly hash: string,
    readonly requestId: string,
    readonly maxMicros: Micros,
    readonly periods: Period[],
    /** Its key's keys of the minute: the periods it books, the start of its loop scope's key. */
    readonly fixed: FixedKeys,
    readonly sessionKeyName: string | null,
    /** The loop check: a recorded step is booked as `<loop scope key>#<sinceMs>#<step>`. */
    readonly loop: LoopCheck | null,
    /** Its check asked without its scope and step: how to send it again on 'loop_needed' (null: not asked). */
    readonly asked: AskedLoop | null,
  ) {}
}

/** A reserve sent with its loop check asked ('?'): what sending it again with its check takes. */
export class AskedLoop {
  constructor(
    readonly input: ReserveInput,
    readonly nowMs: number,
    readonly inHashes: boolean,
    readonly started: number,
    readonly ended: ((call: ReserveCall) => void) | null,
    readonly resend: (call: ReserveCall, asked: AskedLoop) => Promise<ReserveResult>,
  ) {}
}

/** A settle waiting to be sent with its key's others (settle-batch.lua). */
export class QueuedSettle {
  constructor(
    readonly reservation: Reservation,
    readonly actualMicros: Micros,
    /** When its settle call began (performance.now()), for the observer. */
    readonly started: number,
    readonly fixed: FixedKeys,
    readonly resolve: (result: SettleResult) => void,
    readonly reject: (err: Error) => void,
  ) {}
}

/** A reserve without a session waiting to be sent with its key's others (reserve-batch.lua). */
export class QueuedReserve {
  constructor(
    readonly input: ReserveInput,
    /** Its time and periods, as reserve.lua would have been given them. */
    readonly nowMs: number,
    readonly periods: Period[],
    /** When its reserve call began (performance.now()), for the observer. */
    readonly started: number,
    readonly fixed: FixedKeys,
    readonly resolve: (result: ReserveResult) => void,
    readonly reject: (err: Error) => void,
  ) {}

  /** Set by reserveBatch: its loop check as sent (computed, or given), or null; or asked without it ('2'). */
  loop: LoopCheck | null = null
  asked = false
}

/** A reservation's booked keys, read apart. */
export class BookedParts {
  constructor(
    /** The booked keys; the first five are the periods. */
    readonly keys: readonly string[],
    readonly session: string | undefined,
    readonly loop: string | undefined,
  ) {}
}

export interface FixedKeys {
  minute: number
  record: string
  periodKeys: readonly [string, string, string, string, string]
  /** The record then the five period hashes, and the five then today's history counter, encoded (null until needed). */
  recordAndPeriods: EncodedArgs | null
  periodsAndToday: EncodedArgs | null
  /** The five current period ids, space separated, encoded as one argument (reserve's ARGV[5]). */
  periodIds: EncodedArgs
  /** The record then the current periods' string, encoded for reserve's and extend's first two KEYS. */
  recordAndCur: EncodedArgs
  /** The current periods' string then today's history counter, encoded for settle's first two KEYS. */
  curAndToday: EncodedArgs
  noSession: string
  /** The spend history counter of the minute's UTC day. */
  today: string
  /** The starts of the key's reservation record and loop state keys (a request id or scope follows). */
  reservationStart: EncodedStart
  loopStart: EncodedStart
  /** Its reserves without a session sent at once or queued, and not answered yet (a reserve goes at once only at 0). */
  reserves: number
  /** Likewise its settles that settle-batch.lua could take (a settle goes at once only at 0). */
  settles: number
  /**
   * When (performance.now()) the last turn that sent queued reserves, or settles, of it ended, or a batch of either was
   * answered (-Infinity: none).
   */
  reservesBatchedAt: number
  settlesBatchedAt: number
  /**
   * The key's loop guard as the last reply of this minute found it: false off (reserve-batch.lua's reply; its checks
   * then go without arguments), true in force (reserve-batch.lua's, or reserve.lua's 'loop_needed' without a session:
   * only then is a check's source computed before it is sent), null not known. It decides only what is sent: the
   * script decides what is checked.
   */
  loopGuard: boolean | null
}

/** One blank example of each record, and of what the records hold that is made per call (an input, a reservation). */
export interface BlankRecords {
  call: ReserveCall
  queuedReserve: QueuedReserve
  queuedSettle: QueuedSettle
  booked: BookedParts
  joined: object
}

/**
 * A blank example of each record, built by its constructor along the hidden-class transitions a live one takes, holding
 * no request data: `fixed` and `periods` are a key's keys and periods that no key has (./store.ts's warm-up), strings
 * are empty, numbers 0 (a small integer: stored into a field V8 holds as a double, it stays that field's kind),
 * functions no-ops (closures of the same kind as the live ones': an arrow for a promise's resolve or reject or a loop
 * check's source, a function declaration for `resend`).
 */
export function blankRecords(fixed: FixedKeys, periods: Period[], resend: AskedLoop['resend'], remainingMicros: 0 | null): BlankRecords {
  // As the pipeline builds a reserve's input (../../proxy/pipeline.ts): the same keys in the same order, one hidden class.
  const input: ReserveInput = { keyHash: '', provider: 'openai', requestId: '', session: null, loop: noLoop, minMicros: 0, maxMicros: 0 }
  // As readReserve builds a reservation (./store.ts), its remaining figure of the kind the last one read had (0 or null).
  const reservation: Reservation = { keyHash: '', requestId: '', reservedMicros: 0, bookedKeys: fixed.periodKeys, remainingMicros }
  const asked = new AskedLoop(input, 0, false, 0, countedNone, resend)
  return {
    call: new ReserveCall('', '', 0, periods, fixed, null, null, asked),
    queuedReserve: new QueuedReserve(input, 0, periods, 0, fixed, noop, noop),
    queuedSettle: new QueuedSettle(reservation, 0, 0, fixed, noop, noop),
    booked: new BookedParts(fixed.periodKeys, undefined, undefined),
    joined: joinArg(fixed.reservationStart, ''),
  }
}

const noop = (): void => undefined
const noLoop = (): null => null

/** As ./store.ts's reserveEnded: a module function (the blank is counted in no key's reserves). */
function countedNone(): void {
  // Nothing was counted.
}
