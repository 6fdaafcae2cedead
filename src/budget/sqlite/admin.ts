/**
 * Key and budget administration on the embedded store. Each change is one transaction; the budget
 * store's cached key rows are dropped by any write to keys (Db.keysVersion), so a change bites on the next request.
 */
import { generateKey, hashKey, isKeyHash } from '../../keys.js'
import { isProviderId, type ProviderId } from '../../providers/types.js'
import { EVENTS_KEPT, type BudgetEvent } from '../events.js'
import { lastDays, type DaySpend } from '../history.js'
import { SESSIONS_SHOWN, type SessionStatus } from '../sessions.js'
import { parseKeyRef, pickKey } from '../resolve.js'
import { WINDOW_NAMES, type BudgetChange, type KeyAdmin, type KeyLookup, type KeyRecord, type WindowName, type WindowStatus } from '../types.js'
import { periodOf } from '../windows.js'
import type { Db } from './database.js'
import { readDays, readPeriod, readRequests, type KeyRow } from './rows.js'

interface SqliteAdminOptions {
  /** Clock in ms since the epoch (creation time, current periods). Default Date.now. */
  now?: () => number
}

/** A whole `keys` row: the columns reserve reads, and the ones only listings show. */
interface KeyRecordRow extends KeyRow {
  hash: string
  name: string
  created_at: string
}

const SELECT_KEY = 'SELECT * FROM keys'

/** Admin operations on `db`. Unknown or malformed hashes read as "no such key". */
export function createSqliteKeyAdmin(db: Db, opts: SqliteAdminOptions = {}): KeyAdmin {
  const now = opts.now ?? Date.now

  async function createKey(name: string, providers: ProviderId[], budget: BudgetChange = {}): Promise<{ key: string; record: KeyRecord }> {
    if (name.trim() === '') throw new RangeError('a key needs a name')
    if (providers.length === 0) throw new RangeError('a key needs at least one provider')
    for (const p of providers) if (!isProviderId(p)) throw new RangeError(`unknown provider: ${String(p)}`)
    const columns = budgetColumns(budget).filter(([, value]) => value !== null)
    const key = generateKey()
    const hash = hashKey(key)
    await db.transaction('create key', () => {
      // Column names come from the fixed list in budgetColumns, never from input.
      const names = ['hash', 'name', 'providers', 'active', 'created_at', ...columns.map(([c]) => c)]
      db.statement(`INSERT INTO keys (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`).run(
        hash,
        name,
        [...new Set(providers)].join(','),
        1,
        new Date(now()).toISOString(),
        ...columns.map(([, v]) => v),
      )
    })
    return { key, record: read(hash) as KeyRecord }
  }

  function read(hash: string): KeyRecord | null {
    if (!isKeyHash(hash)) return null
    const row = db.read('read key', () => db.statement(`${SELECT_KEY} WHERE hash = ?`).get(hash)) as KeyRecordRow | undefined
    return row === undefined ? null : toRecord(row)
  }

  async function listKeys(): Promise<KeyRecord[]> {
    const all = db.read('list keys', () => db.statement(`${SELECT_KEY} ORDER BY created_at, name`).all()) as unknown as KeyRecordRow[]
    return all.map(toRecord)
  }

  async function revokeKey(hash: string): Promise<boolean> {
    if (!isKeyHash(hash)) return false
    const changed = await db.transaction('revoke key', () => db.statement('UPDATE keys SET active = 0 WHERE hash = ?').run(hash))
    return Number(changed.changes) > 0
  }

  async function setBudget(hash: string, change: BudgetChange): Promise<KeyRecord | null> {
    const columns = budgetColumns(change)
    if (!isKeyHash(hash)) return null
    const found = await db.transaction('set budget', () => {
      if (db.statement('SELECT 1 FROM keys WHERE hash = ?').get(hash) === undefined) return false
      // Column names come from the fixed list above, never from input.
      if (columns.length > 0) {
        db.statement(`UPDATE keys SET ${columns.map(([c]) => `${c} = ?`).join(', ')} WHERE hash = ?`).run(
          ...columns.map(([, v]) => v),
          hash,
        )
      }
      return true
    })
    return found ? read(hash) : null
  }

  async function status(hash: string): Promise<Record<WindowName, WindowStatus> | null> {
    const record = read(hash)
    if (record === null) return null
    const nowMs = now()
    const entries = WINDOW_NAMES.map((window): [WindowName, WindowStatus] => {
      const period = periodOf(window, nowMs)
      const { spent, held } = db.read('read status', () => readPeriod(db, hash, window, period.id, nowMs))
      const requests = window === 'minute' ? { requests: db.read('read status', () => readRequests(db, hash, window, period.id, nowMs)) } : {}
      return [window, { limitMicros: record.limits[window] ?? null, spentMicros: spent, heldMicros: held, resetsAt: period.resetsAt, ...requests }]
    })
    return Object.fromEntries(entries) as Record<WindowName, WindowStatus>
  }

  /** Hash prefix: a range scan of the primary key ('g' sorts after every hex digit); name: the keys_name index. */
  async function resolveKey(ref: string): Promise<KeyLookup> {
    const { prefix, name } = parseKeyRef(ref)
    return db.read('resolve key', () => {
      const byHash = prefix === null ? [] : db.statement(`${SELECT_KEY} WHERE hash >= ? AND hash < ? LIMIT 2`).all(prefix, `${prefix}g`)
      const byName = db.statement(`${SELECT_KEY} WHERE name = ? LIMIT 2`).all(name)
      return pickKey([...byHash, ...byName].map((row) => toRecord(row as unknown as KeyRecordRow)))
    })
  }

  /** Range reads of the key's day rows (periods, and daily_spend of files written before). */
  async function history(hash: string, days: number): Promise<DaySpend[] | null> {
    const nowMs = now()
    const dates = lastDays(nowMs, days)
    if (read(hash) === null) return null
    const found = db.read('read history', () => readDays(db, hash, dates[0] ?? '', dates.at(-1) ?? '', nowMs))
    const byDay = new Map(found.map((r) => [r.day, r.spent]))
    return dates.map((date) => ({ date, spentMicros: byDay.get(date) ?? 0 }))
  }

  /** One insert and a delete of what falls past EVENTS_KEPT (by rowid), in one transaction. */
  async function recordEvent(e: BudgetEvent): Promise<void> {
    await db.transaction('record event', () => {
      const added = db
        .statement('INSERT INTO events (time, kind, key_hash_prefix, provider, reason, win) VALUES (?, ?, ?, ?, ?, ?)')
        .run(e.time.toISOString(), e.kind, e.keyHashPrefix, e.provider, e.reason, e.window)
      db.statement('DELETE FROM events WHERE id <= ?').run(Number(added.lastInsertRowid) - EVENTS_KEPT)
    })
  }

  async function recentEvents(limit: number): Promise<BudgetEvent[]> {
    const found = db.read('read events', () =>
      db.statement('SELECT time, kind, key_hash_prefix, provider, reason, win FROM events ORDER BY id DESC LIMIT ?').all(limit),
    ) as Array<{ time: string; kind: 'refusal' | 'cutoff'; key_hash_prefix: string; provider: string; reason: string; win: string | null }>
    return found.map((r) => ({ time: new Date(r.time), kind: r.kind, keyHashPrefix: r.key_hash_prefix, provider: r.provider, reason: r.reason, window: r.win }))
  }

  /** One key: a primary-key prefix scan; every key: the whole (small, swept) sessions table. */
  async function sessions(hash: string | null): Promise<SessionStatus[]> {
    if (hash !== null && !isKeyHash(hash)) return []
    const columns = 'SELECT hash, id, budget, max_steps, steps, spent, held FROM sessions'
    const found = db.read('read sessions', () =>
      hash === null
        ? db.statement(`${columns} WHERE expires_at > ? ORDER BY hash, id LIMIT ?`).all(now(), SESSIONS_SHOWN)
        : db.statement(`${columns} WHERE hash = ? AND expires_at > ? ORDER BY id LIMIT ?`).all(hash, now(), SESSIONS_SHOWN),
    ) as Array<{ hash: string; id: string; budget: number | null; max_steps: number | null; steps: number; spent: number; held: number }>
    return found.map((r) => ({ hash: r.hash, id: r.id, spentMicros: r.spent, heldMicros: r.held, steps: r.steps, budgetMicros: r.budget, maxSteps: r.max_steps }))
  }

  return {
    createKey, listKeys, getKey: async (hash) => read(hash), revokeKey, setBudget, status, resolveKey, history, recordEvent, recentEvents, sessions,
  }
}

/** The key columns a budget change writes; null clears one (a 0 removes a limit). */
function budgetColumns(change: BudgetChange): Array<[string, number | null]> {
  const columns: Array<[string, number | null]> = []
  const apply = (column: string, value: number | undefined): void => {
    if (value === undefined) return
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${column} must be a non-negative integer`)
    columns.push([column, value === 0 ? null : value])
  }
  for (const window of WINDOW_NAMES) apply(`lim_${window}`, change.limits?.[window])
  apply('session_budget', change.sessionBudgetMicros)
  apply('session_max_steps', change.sessionMaxSteps)
  apply('rpm', change.rpm)
  apply('loop_window', change.loopWindowSeconds)
  // 0 is a loop limit (the guard off), not a removal: kept as written.
  if (change.loopLimit !== undefined) {
    if (!Number.isSafeInteger(change.loopLimit) || change.loopLimit < 0) throw new RangeError('loop_limit must be a non-negative integer')
    columns.push(['loop_limit', change.loopLimit])
  }
  if (change.unlimited !== undefined) columns.push(['unlimited', change.unlimited ? 1 : 0])
  return columns
}

function toRecord(row: KeyRecordRow): KeyRecord {
  const limits: Partial<Record<WindowName, number>> = {}
  for (const window of WINDOW_NAMES) {
    const v = row[`lim_${window}`]
    if (v !== null) limits[window] = v
  }
  return {
    hash: row.hash,
    name: row.name,
    providers: row.providers.split(',').filter(isProviderId),
    active: row.active === 1,
    createdAt: row.created_at,
    limits,
    sessionBudgetMicros: row.session_budget,
    sessionMaxSteps: row.session_max_steps,
    unlimited: row.unlimited === 1,
    rpm: row.rpm,
    loopLimit: row.loop_limit,
    loopWindowSeconds: row.loop_window,
  }
}
