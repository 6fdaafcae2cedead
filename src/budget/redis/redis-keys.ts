/**
 * The one place that names Redis keys. Every key of one proxy key carries the hash tag `{<hash>}`,
 * so Redis Cluster keeps them in one slot and a Lua script may touch them all.
 */
import type { WindowName } from '../types.js'

/** Set of every key hash; read by the admin/CLI only, never by the Lua scripts (it lives in another slot). */
export const KEY_INDEX = 'lp:keys'

/** Recent refusals and cut-offs, a list of JSON lines, newest first (admin and a fire-and-forget push only). */
export const EVENTS_KEY = 'lp:events'

const prefix = (hash: string): string => `lp:{${hash}}`

/** The key record hash (name, providers, active, created_at, lim:<window>, session defaults). */
export function recordKey(hash: string): string {
  return `${prefix(hash)}:key`
}

/**
 * Store-level marker: present ('1'), every key created from then on keeps its current periods in one string
 * (curKey). Written when this release finds a store with no key, or by `loopers store use-string-periods`.
 */
export const LAYOUT_KEY = 'lp:layout'

/** The key record field that puts one key on the string layout (value '1'). */
export const LAYOUT_FIELD = 'layout'

/**
 * A key record field whose value, 65 characters (past Redis's hash-max-listpack-value, 64 by default), makes Redis
 * keep the record as a hash table from then on: reserve's HMGET of 10 to 14 fields finds each by its hash, not by a
 * scan of a listpack (about 5k fewer Redis instructions a reserve). Written with the record, and by reserve.lua
 * once a minute (HSETNX) to a record an earlier release wrote; never read.
 */
export const TABLE_FIELD = 'table'
export const TABLE_VALUE = '0'.repeat(65)

/**
 * The string layout's five current periods of a key: '<spent> <held>' of each window minute to monthly, the minute's
 * admitted requests, then the five period ids (see lua/reserve.lua). While a period is current there, its periodKey
 * holds the string 'cur' (a tombstone); a turned period moves into its periodKey hash.
 */
export function curKey(hash: string): string {
  return `${prefix(hash)}:cur`
}

/**
 * One period of one window, a hash with integer fields `spent` and `held` (micro-USD): every period of a key on the
 * hash layout, the turned ones of a key on the string layout (a current one is in curKey).
 */
export function periodKey(hash: string, window: WindowName, periodId: string): string {
  return `${prefix(hash)}:w:${window}:${periodId}`
}

/** A session: budget, max_steps, steps, spent, held. */
export function sessionKey(hash: string, sessionId: string): string {
  return `${prefix(hash)}:s:${sessionId}`
}

/** SCAN pattern of the sessions of one key, or of every key when `hash` is null. */
export function sessionPattern(hash: string | null): string {
  return `lp:{${hash ?? '*'}}:s:*`
}

/** The key hash and session id of a session key name, or null when it is not one. */
export function parseSessionKey(name: string): { hash: string; id: string } | null {
  const m = /^lp:\{([0-9a-f]{64})\}:s:(.+)$/.exec(name)
  return m === null ? null : { hash: m[1] as string, id: m[2] as string }
}

/** Placeholder in the session position of the extend script's KEYS when the reservation has no session; never written. */
export function noSessionKey(hash: string): string {
  return `${prefix(hash)}:nosession`
}

/**
 * A key of `hash` named by what follows its tag `lp:{<hash>}:`, as a held reservation record lists its session
 * and loop step (`s:<id>`, `loop:<scope>#<sinceMs>#<step>`).
 */
export function suffixKey(hash: string, suffix: string): string {
  return `${prefix(hash)}:${suffix}`
}

/** A reservation record, one string ('held <amount> <provider> <created_at>' and its session and loop step, or 'settled <charged>'), or a settled tombstone. */
export function reservationKey(hash: string, requestId: string): string {
  return reservationKeyStart(hash) + requestId
}

/** What every reservation record key of `hash` starts with: the request id follows. */
export function reservationKeyStart(hash: string): string {
  return `${prefix(hash)}:r:`
}

/**
 * Followed by a scope (`s:<session>` or `c:<conversation>`): the loop guard's state of that scope, field
 * <step> = "<count>:<sinceMs>#<request id of the window's first request>" (in flight while its reservation record is
 * held), field <step>:<sinceMs> = its other requests in flight (the previous release's "<count>:<sinceMs>": all of
 * them), '#e' = when the scope expires (ms; written 65 characters long, zero-padded, so the scope is a hash table from
 * its first write rather than a listpack each lookup scans), negated once the scope is indexed by age (the previous
 * release marked that with a field '#z'). The index by age, `lp:{<hash>}:loopt:<scope>` (a sorted set: member <step>, score its
 * sinceMs, read by the trim), is named by reserve.lua itself from this key, on the rare paths that touch it (a key
 * passed would cost every loop check Redis time).
 */
export function loopKeyStart(hash: string): string {
  return `${prefix(hash)}:loop:`
}

/** Settled spend of one UTC day (`YYYY-MM-DD`), an integer string in micro-USD, kept HISTORY_DAYS days. */
export function dayKey(hash: string, date: string): string {
  return `${prefix(hash)}:d:${date}`
}
