import type { Micros } from '../money.js'
import type { ProviderId } from '../providers/types.js'
import type { BudgetEvent } from './events.js'
import type { DaySpend } from './history.js'
import type { SessionStatus } from './sessions.js'

/** The five fixed UTC windows, in the order they are checked (first limit hit wins). */
export const WINDOW_NAMES = ['minute', 'hourly', 'daily', 'weekly', 'monthly'] as const
export type WindowName = (typeof WINDOW_NAMES)[number]

/** A proxy key's stored record (never the raw key). */
export interface KeyRecord {
  hash: string
  name: string
  providers: ProviderId[]
  active: boolean
  createdAt: string
  /** Limits per window in micro-USD; a missing window is unlimited. */
  limits: Partial<Record<WindowName, Micros>>
  /** Key-level defaults applied to every session; null = none. */
  sessionBudgetMicros: Micros | null
  sessionMaxSteps: number | null
  /** Marked `budget set --unlimited`: may spend without any window limit (else such a key is refused, budget_not_set). */
  unlimited: boolean
  /** Admitted requests per UTC minute (`--rpm`); null = no rate limit. */
  rpm: number | null
  /** Repeats of one step a conversation may make (`--loop-limit`); null = DEFAULT_LOOP_LIMIT, 0 = guard off. */
  loopLimit: number | null
  /** The loop guard's window in seconds (`--loop-window`); null = DEFAULT_LOOP_WINDOW_SECONDS. */
  loopWindowSeconds: number | null
}

/** Session limits a request asks for (header values); null fields leave the session as it is. */
export interface SessionRequest {
  id: string
  budgetMicros: Micros | null
  maxSteps: number | null
  /** `X-Loopers-Loop-Limit`: lowers the session's loop limit (0 = no repeat), never raises it; null/absent leaves it. */
  loopLimit?: number | null
}

/** The loop guard's view of a request (src/loop/README.md): where its state lives and which step it takes. */
export interface LoopCheck {
  /** `loopScope(sessionId, fingerprint)`: "s:<session id>" or "c:<conversation>". */
  scope: string
  /** 16 hex chars. */
  step: string
}

/**
 * A conversation request's loop check, computed when a store first calls it (each call after the first returns the
 * same): null when the body holds no conversation. A store calls it only when a loop limit may be in force for the
 * request (the key's, or its session's), so a key whose guard is off pays no fingerprint (`createLoopCheck`,
 * src/loop/check.ts).
 */
export type LoopCheckSource = () => LoopCheck | null

export interface ReserveInput {
  keyHash: string
  provider: ProviderId
  /** Unique per request; settlement is idempotent on it. */
  requestId: string
  /** The least that makes the request useful; refuse when even this does not fit. */
  minMicros: Micros
  /** The worst case; grant as much of it as fits, at least `minMicros`. */
  maxMicros: Micros
  session: SessionRequest | null
  /**
   * The loop check of a conversation request, as computed or as a source computed only when a limit may be in force;
   * null/absent: no loop check.
   */
  loop?: LoopCheck | LoopCheckSource | null
}

/** A held reservation. `reservedMicros` grows with each successful extend. */
export interface Reservation {
  keyHash: string
  requestId: string
  reservedMicros: Micros
  /** Opaque to callers: where the store booked the hold (five window periods, then the session if any). */
  readonly bookedKeys: readonly string[]
  /**
   * Set by reserve: what the tightest limited window or the session has left after this hold (settled
   * spend and every hold counted); null when nothing is limited. Not updated by extend.
   */
  readonly remainingMicros?: Micros | null
}

type RefusalReason =
  | 'invalid_key'
  | 'key_revoked'
  | 'provider_not_allowed'
  | 'budget_exceeded'
  | 'session_budget_exceeded'
  | 'session_steps_exceeded'
  | 'budget_not_set'
  | 'rate_limited'
  | 'loop_detected'

export interface Refusal {
  ok: false
  reason: RefusalReason
  /** Set for budget_exceeded: the first window that could not hold the request. */
  window?: WindowName
  limitMicros?: Micros
  /** Settled spend plus what in-flight requests hold, in that window or session. */
  spentMicros?: Micros
  /**
   * The part of `spentMicros` that in-flight holds make up (budget and session budget refusals):
   * a refusal whose holds alone block the request may pass once they settle.
   */
  heldMicros?: Micros
  /** When the refusing window resets (budget_exceeded; rate_limited: the next UTC minute). */
  resetsAt?: Date
  /**
   * rate_limited: the key's requests per minute, and how many this minute has admitted. loop_detected:
   * the loop limit in force, and how often the step was admitted before (its repeats).
   */
  limitCount?: number
  count?: number
  /** loop_detected: the repeated step's hash (never prompt text). */
  step?: string
}

export type ReserveResult = { ok: true; reservation: Reservation } | Refusal
export type ExtendResult = { ok: true; grantedMicros: Micros } | Refusal

export interface SettleResult {
  chargedMicros: Micros
  /** True when this request id had been settled before; nothing changed. */
  alreadySettled: boolean
}

/**
 * The budget engine. Every method is one atomic step (a Lua call on Redis, one transaction on SQLite). Methods throw only for
 * infrastructure faults (store unreachable, timeout); "no budget" is a typed Refusal.
 */
export interface BudgetStore {
  /** Checks key, provider, every limited window and the session; holds the grant everywhere or nowhere. */
  reserve(input: ReserveInput): Promise<ReserveResult>
  /** Adds between `minMicros` and `wantMicros` to a live reservation (as much as fits); re-checks key and limits. */
  extend(reservation: Reservation, minMicros: Micros, wantMicros: Micros): Promise<ExtendResult>
  /** Charges `actualMicros`, releases the rest of the hold, in the periods it was booked in. Idempotent per request id. */
  settle(reservation: Reservation, actualMicros: Micros): Promise<SettleResult>
  /** Releases a reservation whose reserve call may or may not have run (it timed out): settles it at 0, or blocks it. */
  abandon(keyHash: string, requestId: string): Promise<void>
  /** Resolves when the store answers. */
  ping(): Promise<void>
  /**
   * The store times its own reserve, extend and settle calls: from now on `observer` hears of each of this store's
   * calls as it ends, so no wrapper per call is needed (metrics). Set once, before the store serves.
   */
  observeCalls(observer: StoreCallObserver): void
}

/** Told of each reserve, extend or settle call as it ends: its op, when it began (performance.now()), whether it failed. */
export type StoreCallObserver = (op: 'reserve' | 'extend' | 'settle', startedMs: number, failed: boolean) => void

export interface WindowStatus {
  limitMicros: Micros | null
  spentMicros: Micros
  heldMicros: Micros
  resetsAt: Date
  /** Requests admitted in this period (kept for the minute window, where `--rpm` applies; else absent). */
  requests?: number
}

/** Key and budget administration, used by the CLI. */
export interface KeyAdmin {
  /** Stores a new key record with the limits of `budget` (as setBudget applies them); returns the raw key once. */
  createKey(name: string, providers: ProviderId[], budget?: BudgetChange): Promise<{ key: string; record: KeyRecord }>
  listKeys(): Promise<KeyRecord[]>
  getKey(hash: string): Promise<KeyRecord | null>
  /** Returns false when no such key exists. */
  revokeKey(hash: string): Promise<boolean>
  /** Applies limit changes; a value of 0 removes that limit. Returns the updated record or null if unknown. */
  setBudget(hash: string, change: BudgetChange): Promise<KeyRecord | null>
  /** Current period of every window. */
  status(hash: string): Promise<Record<WindowName, WindowStatus> | null>
  /** The one key `ref` names: its full hash, a unique prefix of at least MIN_HASH_PREFIX hex digits, or its name. */
  resolveKey(ref: string): Promise<KeyLookup>
  /** Settled spend of the last `days` UTC days (1..HISTORY_DAYS), oldest first, zero-filled; null if no such key. */
  history(hash: string, days: number): Promise<DaySpend[] | null>
  /** Adds a refusal or cut-off to the store's recent events (the newest EVENTS_KEPT stay). */
  recordEvent(event: BudgetEvent): Promise<void>
  /** The newest `limit` events, newest first. */
  recentEvents(limit: number): Promise<BudgetEvent[]>
  /** Live (not expired) sessions of one key, or of every key when `hash` is null; at most SESSIONS_SHOWN. */
  sessions(hash: string | null): Promise<SessionStatus[]>
}

/** The shortest hash prefix that names a key (as logs and metrics show it). */
export const MIN_HASH_PREFIX = 8

export type KeyLookup = { ok: true; record: KeyRecord } | { ok: false; reason: 'unknown' | 'ambiguous'; matches: number }

export interface BudgetChange {
  limits?: Partial<Record<WindowName, Micros>>
  sessionBudgetMicros?: Micros
  sessionMaxSteps?: number
  /** True marks the key `--unlimited`, false clears the mark; a limit flag leaves it as it is. */
  unlimited?: boolean
  /** Requests per UTC minute; 0 removes the rate limit. */
  rpm?: number
  /** Loop limit; 0 turns the loop guard off (kept as 0, not removed). */
  loopLimit?: number
  /** Loop window in seconds; 0 goes back to the default. */
  loopWindowSeconds?: number
}
