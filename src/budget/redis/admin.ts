/**
 * Key and budget administration for the CLI: plain Redis commands on the key record and the key
 * index. Any Redis fault is rethrown as StoreUnavailableError.
 */
import { StoreUnavailableError } from '../../errors.js'
import { generateKey, hashKey, isKeyHash } from '../../keys.js'
import { isProviderId, type ProviderId } from '../../providers/types.js'
import { Cluster } from 'ioredis'
import type { RedisClient } from './redis-client.js'
import { dayKey, EVENTS_KEY, KEY_INDEX, LAYOUT_FIELD, LAYOUT_KEY, parseSessionKey, recordKey, sessionPattern, TABLE_FIELD, TABLE_VALUE } from './redis-keys.js'
import { readPeriods } from './periods.js'
import { orderSessions, SESSIONS_SHOWN, type SessionStatus } from '../sessions.js'
import { eventFromJson, eventJson, EVENTS_KEPT, type BudgetEvent, type EventJson } from '../events.js'
import { lastDays, type DaySpend } from '../history.js'
import { parseKeyRef, pickKey } from '../resolve.js'
import { WINDOW_NAMES, type BudgetChange, type KeyAdmin, type KeyLookup, type KeyRecord, type WindowName, type WindowStatus } from '../types.js'
import { periodOf } from '../windows.js'

interface KeyAdminOptions {
  /** Clock in ms since the epoch (creation time, current periods). Default Date.now. */
  now?: () => number
}

const limitField = (window: WindowName): string => `lim:${window}`

/** Admin operations on `redis`. Unknown or malformed hashes read as "no such key". */
export function createKeyAdmin(redis: RedisClient, opts: KeyAdminOptions = {}): KeyAdmin {
  const now = opts.now ?? Date.now

  async function createKey(name: string, providers: ProviderId[], budget: BudgetChange = {}): Promise<{ key: string; record: KeyRecord }> {
    if (name.trim() === '') throw new RangeError('a key needs a name')
    if (providers.length === 0) throw new RangeError('a key needs at least one provider')
    for (const p of providers) if (!isProviderId(p)) throw new RangeError(`unknown provider: ${String(p)}`)
    const limits = budgetFields(budget)
    const key = generateKey()
    const hash = hashKey(key)
    const fields: Record<string, string> = { name, providers: [...new Set(providers)].join(','), active: '1', created_at: new Date(now()).toISOString(), ...limits.set }
    await run('create key', async () => {
      if (await stringLayout(redis)) fields[LAYOUT_FIELD] = '1'
      // Record first, limits in the same write: an index entry must never name a missing record. (Different slots: no MULTI.)
      await redis.hset(recordKey(hash), { ...fields, [TABLE_FIELD]: TABLE_VALUE })
      await redis.sadd(KEY_INDEX, hash)
    })
    return { key, record: toRecord(hash, fields) }
  }

  async function getKey(hash: string): Promise<KeyRecord | null> {
    if (!isKeyHash(hash)) return null
    const fields = await run('read key', () => redis.hgetall(recordKey(hash)))
    return fields.active === undefined ? null : toRecord(hash, fields)
  }

  async function listKeys(): Promise<KeyRecord[]> {
    const hashes = await run('list keys', () => redis.smembers(KEY_INDEX))
    const records = await Promise.all(hashes.map(getKey))
    return records
      .filter((r): r is KeyRecord => r !== null)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name))
  }

  async function revokeKey(hash: string): Promise<boolean> {
    if ((await getKey(hash)) === null) return false
    await run('revoke key', () => redis.hset(recordKey(hash), 'active', '0'))
    return true
  }

  async function setBudget(hash: string, change: BudgetChange): Promise<KeyRecord | null> {
    const { set, remove } = budgetFields(change)
    if ((await getKey(hash)) === null) return null
    await run('set budget', async () => {
      if (Object.keys(set).length > 0) await redis.hset(recordKey(hash), set)
      if (remove.length > 0) await redis.hdel(recordKey(hash), ...remove)
    })
    return getKey(hash)
  }

  async function status(hash: string): Promise<Record<WindowName, WindowStatus> | null> {
    const record = await getKey(hash)
    if (record === null) return null
    const nowMs = now()
    const periods = WINDOW_NAMES.map((window) => periodOf(window, nowMs))
    const counts = await run('read status', () => readPeriods(redis, hash, periods.map((p) => ({ window: p.window, periodId: p.id }))))
    const entries = periods.map((period, i): [WindowName, WindowStatus] => {
      const { spentMicros, heldMicros, requests } = counts[i] as (typeof counts)[number]
      return [
        period.window,
        {
          limitMicros: record.limits[period.window] ?? null,
          spentMicros,
          heldMicros,
          resetsAt: period.resetsAt,
          ...(period.window === 'minute' ? { requests } : {}),
        },
      ]
    })
    return Object.fromEntries(entries) as Record<WindowName, WindowStatus>
  }

  /** Hash prefix: the key index set; name: every record (admin-only, never on the request path). */
  async function resolveKey(ref: string): Promise<KeyLookup> {
    const { prefix, name } = parseKeyRef(ref)
    const all = await listKeys()
    return pickKey(all.filter((r) => (prefix !== null && r.hash.startsWith(prefix)) || r.name === name))
  }

  /** One MGET of the day counters (one hash tag, so one slot on a cluster). */
  async function history(hash: string, days: number): Promise<DaySpend[] | null> {
    const dates = lastDays(now(), days)
    if ((await getKey(hash)) === null) return null
    const values = await run('read history', () => redis.mget(...dates.map((date) => dayKey(hash, date))))
    return dates.map((date, i) => ({ date, spentMicros: Number(values[i] ?? 0) }))
  }

  /** LPUSH and LTRIM in one MULTI: the list never holds more than EVENTS_KEPT. */
  async function recordEvent(event: BudgetEvent): Promise<void> {
    await run('record event', () => redis.multi().lpush(EVENTS_KEY, JSON.stringify(eventJson(event))).ltrim(EVENTS_KEY, 0, EVENTS_KEPT - 1).exec())
  }

  async function recentEvents(limit: number): Promise<BudgetEvent[]> {
    const lines = await run('read events', () => redis.lrange(EVENTS_KEY, 0, Math.max(0, limit - 1)))
    return lines.map((line) => eventFromJson(JSON.parse(line) as EventJson))
  }

  /**
   * SCAN for the session keys (every master of a cluster), then one HGETALL each. Admin-only: a scan walks
   * the keyspace, so it never runs on the request path; it stops once SESSIONS_SHOWN are found.
   */
  async function sessions(hash: string | null): Promise<SessionStatus[]> {
    if (hash !== null && !isKeyHash(hash)) return []
    const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
    const names: string[] = []
    await run('scan sessions', async () => {
      for (const node of nodes) {
        let cursor = '0'
        do {
          const [next, batch] = await node.scan(cursor, 'MATCH', sessionPattern(hash), 'COUNT', 1000)
          names.push(...batch)
          cursor = next
        } while (cursor !== '0' && names.length < SESSIONS_SHOWN)
      }
    })
    const found = await Promise.all(
      names.map(async (name): Promise<SessionStatus | null> => {
        const where = parseSessionKey(name)
        const f = where === null ? {} : await run('read session', () => redis.hgetall(name))
        if (where === null || Object.keys(f).length === 0) return null // gone since the scan
        const optional = (v: string | undefined): number | null => (v === undefined || v === '' ? null : Number(v))
        return { ...where, spentMicros: Number(f.spent ?? 0), heldMicros: Number(f.held ?? 0), steps: Number(f.steps ?? 0), budgetMicros: optional(f.budget), maxSteps: optional(f.max_steps) }
      }),
    )
    return orderSessions(found.filter((s): s is SessionStatus => s !== null))
  }

  return { createKey, listKeys, getKey, revokeKey, setBudget, status, resolveKey, history, recordEvent, recentEvents, sessions }
}

/**
 * Whether a key created now keeps its current periods in one string (the store's LAYOUT_KEY). A store holding no key
 * yet is marked here (SET NX): no process of a previous release can share data that does not exist.
 */
async function stringLayout(redis: RedisClient): Promise<boolean> {
  if ((await redis.exists(KEY_INDEX)) === 0) await redis.set(LAYOUT_KEY, '1', 'NX')
  return (await redis.get(LAYOUT_KEY)) === '1'
}

/**
 * Puts every key of the store on the string layout, and every key created from now on (LAYOUT_KEY): each key's
 * current periods are folded into its string by its next reserve. Only safe once no process of a previous release
 * shares the store: one would fail every request of a key on the string layout. Returns how many keys were marked.
 */
export async function useStringPeriods(redis: RedisClient): Promise<number> {
  return run('use string periods', async () => {
    await redis.set(LAYOUT_KEY, '1')
    const hashes = await redis.smembers(KEY_INDEX)
    let marked = 0
    for (const hash of hashes) {
      // Only an existing record: HSETNX on a missing one would create a record of that field alone.
      if (!isKeyHash(hash) || (await redis.exists(recordKey(hash))) === 0) continue
      if ((await redis.hsetnx(recordKey(hash), LAYOUT_FIELD, '1')) === 1) marked++
    }
    return marked
  })
}

/** The record fields a budget change writes (`set`) and removes (`remove`: a 0 removes a limit). */
function budgetFields(change: BudgetChange): { set: Record<string, string>; remove: string[] } {
  const set: Record<string, string> = {}
  const remove: string[] = []
  const apply = (field: string, value: number | undefined): void => {
    if (value === undefined) return
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${field} must be a non-negative integer`)
    if (value === 0) remove.push(field)
    else set[field] = String(value)
  }
  for (const window of WINDOW_NAMES) apply(limitField(window), change.limits?.[window])
  apply('session_budget', change.sessionBudgetMicros)
  apply('session_max_steps', change.sessionMaxSteps)
  apply('rpm', change.rpm)
  apply('loop_window', change.loopWindowSeconds)
  // 0 is a loop limit (the guard off), not a removal: kept as written.
  if (change.loopLimit !== undefined) {
    if (!Number.isSafeInteger(change.loopLimit) || change.loopLimit < 0) throw new RangeError('loop_limit must be a non-negative integer')
    set.loop_limit = String(change.loopLimit)
  }
  if (change.unlimited !== undefined) apply('unlimited', change.unlimited ? 1 : 0)
  return { set, remove }
}

function toRecord(hash: string, f: Record<string, string>): KeyRecord {
  const limits: Partial<Record<WindowName, number>> = {}
  for (const window of WINDOW_NAMES) {
    const v = f[limitField(window)]
    if (v !== undefined) limits[window] = Number(v)
  }
  return {
    hash,
    name: f.name ?? '',
    providers: (f.providers ?? '').split(',').filter(isProviderId),
    active: f.active === '1',
    createdAt: f.created_at ?? '',
    limits,
    sessionBudgetMicros: f.session_budget === undefined ? null : Number(f.session_budget),
    sessionMaxSteps: f.session_max_steps === undefined ? null : Number(f.session_max_steps),
    unlimited: f.unlimited === '1',
    rpm: f.rpm === undefined ? null : Number(f.rpm),
    loopLimit: f.loop_limit === undefined ? null : Number(f.loop_limit),
    loopWindowSeconds: f.loop_window === undefined ? null : Number(f.loop_window),
  }
}

async function run<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    throw new StoreUnavailableError(`budget store ${what} failed: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    })
  }
}
