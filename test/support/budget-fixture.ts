/**
 * A budget store, key admin and hand-driven clock on either store (a test Redis or a temporary SQLite
 * file), plus store-neutral helpers to read and poke raw state, so one contract suite runs on both.
 */
import { randomUUID } from 'node:crypto'
import { DatabaseSync } from 'node:sqlite'
import { Redis } from 'ioredis'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { readPeriods } from '../../src/budget/redis/periods.js'
import { curKey, periodKey, recordKey, reservationKey, sessionKey } from '../../src/budget/redis/redis-keys.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import { createSqliteKeyAdmin } from '../../src/budget/sqlite/admin.js'
import { createDb, type Db } from '../../src/budget/sqlite/database.js'
import { parseBooked } from '../../src/budget/sqlite/rows.js'
import { createSqliteBudgetStore } from '../../src/budget/sqlite/store.js'
import { WINDOW_NAMES, type BudgetChange, type BudgetStore, type KeyAdmin, type Reservation, type ReserveInput, type WindowName } from '../../src/budget/types.js'
import { periodOf } from '../../src/budget/windows.js'
import type { ProviderId } from '../../src/providers/types.js'
import { readRecord } from './fault-checks.js'
import { keepRedisLayout, type StoreKind, type TestStore } from './stores.js'

export interface Clock {
  now: () => number
  set(iso: string): void
  advance(ms: number): void
}

export function createClock(iso = '2026-05-04T12:00:30.000Z'): Clock {
  let t = Date.parse(iso)
  return {
    now: () => t,
    set: (next) => {
      t = Date.parse(next)
    },
    advance: (ms) => {
      t += ms
    },
  }
}

type Counters = { spent: number; held: number }

/** Raw state behind the store, the same questions on both stores. TTLs in seconds; -2 = absent. */
export interface RawState {
  /** spent/held of a place a reservation booked (one of its bookedKeys); null when absent. */
  booked(hash: string, bookedKey: string): Promise<Counters | null>
  bookedTtl(hash: string, bookedKey: string): Promise<number>
  deleteBooked(hash: string, bookedKey: string): Promise<void>
  reservation(hash: string, requestId: string): Promise<{ state: string } | null>
  reservationTtl(hash: string, requestId: string): Promise<number>
  deleteReservation(hash: string, requestId: string): Promise<void>
  sessionTtl(hash: string, id: string): Promise<number>
  setSessionTtl(hash: string, id: string, seconds: number): Promise<void>
  setProviders(hash: string, providersCsv: string): Promise<void>
  deleteKey(hash: string): Promise<void>
  /** Everything stored, as text (to prove no raw key is kept). */
  dump(): Promise<string>
}

export interface BudgetFixture {
  kind: StoreKind
  /** The Redis connection (Redis fixtures only; throws on the embedded store). */
  redis: Redis
  raw: RawState
  store: BudgetStore
  admin: KeyAdmin
  clock: Clock
  /**
   * A new key allowed for `providers` (default openai) with the given budget; returns its hash. It is
   * marked `unlimited` (a key with no limit is refused: budget_not_set) unless `change` says `unlimited: false`.
   */
  newKey(change?: BudgetChange, providers?: ProviderId[]): Promise<string>
  /** spent/held of a window's period at the clock's current time (or at `atIso`). */
  period(hash: string, window: WindowName, atIso?: string): Promise<Counters>
  /** The session's stored fields as strings (absent fields missing), as Redis HGETALL shows them. */
  session(hash: string, id: string): Promise<Record<string, string>>
  /** Reserves `reserveInput(hash, micros, extra)`; throws when refused. */
  reserved(hash: string, micros: number, extra?: Partial<ReserveInput>): Promise<Reservation>
  close(): Promise<void>
}

/** A reservation request for exactly `micros` on openai with no session, unless `extra` says otherwise. */
export function reserveInput(keyHash: string, micros: number, extra: Partial<ReserveInput> = {}): ReserveInput {
  return { keyHash, provider: 'openai', requestId: randomUUID(), minMicros: micros, maxMicros: micros, session: null, ...extra }
}

interface FixtureOptions {
  sessionTtlSeconds?: number
  commandTimeoutMs?: number
  /** The Redis layout of the keys it creates (default REDIS_LAYOUT of ./stores.ts), for a suite defined for one. */
  redisLayout?: 'string' | 'hash'
}

/** A fixture on `target`: a TestStore of either kind, or a Redis URL. */
export async function createBudgetFixture(target: TestStore | string, opts: FixtureOptions = {}): Promise<BudgetFixture> {
  const clock = createClock()
  const ttl = opts.sessionTtlSeconds ? { sessionTtlSeconds: opts.sessionTtlSeconds } : {}
  const url = typeof target === 'string' ? target : target.redis?.url
  const parts =
    url !== undefined
      ? redisParts(url, clock, ttl, opts)
      : sqliteParts((target as TestStore).dbPath as string, clock, ttl)
  const { redis, ...rest } = parts
  if (redis !== null) await keepRedisLayout(redis, opts.redisLayout)
  const f: BudgetFixture = {
    ...rest,
    get redis(): Redis {
      if (redis === null) throw new Error('raw Redis access on the embedded store: use f.raw')
      return redis
    },
    clock,
    async newKey(change = {}, providers = ['openai']) {
      const { record } = await parts.admin.createKey('test', providers, { unlimited: true })
      if (Object.keys(change).length > 0) await parts.admin.setBudget(record.hash, change)
      return record.hash
    },
    async period(hash, window, atIso) {
      const at = atIso === undefined ? clock.now() : Date.parse(atIso)
      return parts.periodAt(hash, window, periodOf(window, at).id)
    },
    async reserved(hash, micros, extra = {}) {
      const r = await parts.store.reserve(reserveInput(hash, micros, extra))
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      return r.reservation
    },
  }
  return f
}

type Parts = Omit<BudgetFixture, 'clock' | 'newKey' | 'period' | 'reserved' | 'redis'> & {
  redis: Redis | null
  periodAt(hash: string, window: WindowName, periodId: string): Promise<Counters>
}

function redisParts(url: string, clock: Clock, ttl: { sessionTtlSeconds?: number }, opts: FixtureOptions): Parts {
  const redis = new Redis(url, { commandTimeout: opts.commandTimeoutMs ?? 5_000, maxRetriesPerRequest: 0 })
  redis.on('error', () => {})
  const counters = async (key: string): Promise<Counters | null> => {
    if ((await redis.exists(key)) === 0) return null
    const period = periodOfKey(key)
    if (period === null) {
      const [spent, held] = await redis.hmget(key, 'spent', 'held')
      return { spent: Number(spent ?? 0), held: Number(held ?? 0) }
    }
    const [counts] = await readPeriods(redis, period.hash, [{ window: period.window, periodId: period.periodId }])
    return { spent: counts?.spentMicros ?? 0, held: counts?.heldMicros ?? 0 }
  }
  const raw: RawState = {
    booked: (_hash, key) => counters(key),
    bookedTtl: (_hash, key) => redis.ttl(key),
    // A period current in the string layout expires with the string (and its five tombstones): all of it goes.
    deleteBooked: async (hash, key) => {
      const cur = await redis.get(curKey(hash))
      if ((await redis.type(key)) === 'string' && cur !== null) {
        const ids = cur.split(' ').slice(11)
        await redis.del(curKey(hash), ...WINDOW_NAMES.map((window, i) => periodKey(hash, window, ids[i] as string)))
      } else {
        await redis.del(key)
      }
    },
    reservation: async (hash, id) => {
      const { state } = await readRecord(redis, reservationKey(hash, id))
      return state === undefined ? null : { state }
    },
    reservationTtl: (hash, id) => redis.ttl(reservationKey(hash, id)),
    deleteReservation: async (hash, id) => void (await redis.del(reservationKey(hash, id))),
    sessionTtl: (hash, id) => redis.ttl(sessionKey(hash, id)),
    setSessionTtl: async (hash, id, seconds) => void (await redis.expire(sessionKey(hash, id), seconds)),
    setProviders: async (hash, csv) => void (await redis.hset(recordKey(hash), 'providers', csv)),
    deleteKey: async (hash) => void (await redis.del(recordKey(hash))),
    dump: async () => {
      const keys = await redis.keys('*')
      const read = async (k: string): Promise<unknown> => {
        const type = await redis.type(k)
        return type === 'hash' ? redis.hgetall(k) : type === 'string' ? redis.get(k) : type === 'list' ? redis.lrange(k, 0, -1) : redis.smembers(k)
      }
      const values = await Promise.all(keys.map(read))
      return JSON.stringify([keys, values])
    },
  }
  return {
    kind: 'redis',
    redis,
    raw,
    store: createBudgetStore(redis, { now: clock.now, ...ttl }),
    admin: createKeyAdmin(redis, { now: clock.now }),
    periodAt: async (hash, window, id) => {
      const [counts] = await readPeriods(redis, hash, [{ window, periodId: id }])
      return { spent: counts?.spentMicros ?? 0, held: counts?.heldMicros ?? 0 }
    },
    session: (hash, id) => redis.hgetall(sessionKey(hash, id)),
    close: async () => redis.disconnect(),
  }
}

function sqliteParts(path: string, clock: Clock, ttl: { sessionTtlSeconds?: number }): Parts {
  const db: Db = createDb(path)
  const store = createSqliteBudgetStore(db, { now: clock.now, ...ttl })
  const admin = createSqliteKeyAdmin(db, { now: clock.now })
  // A second connection, as another process would have: raw reads and pokes, never through the store.
  let rawDb: DatabaseSync | null = null
  const sql = (): DatabaseSync => (rawDb ??= new DatabaseSync(path, { timeout: 5_000 }))
  const row = (q: string, ...args: (string | number)[]) => sql().prepare(q).get(...args) as Record<string, number | string | null> | undefined
  const run = (q: string, ...args: (string | number)[]): void => void sql().prepare(q).run(...args)
  const live = (): number => clock.now()
  const ttlOf = (r: Record<string, unknown> | undefined): number =>
    r === undefined || (r.expires_at as number) <= live() ? -2 : Math.floor(((r.expires_at as number) - live()) / 1000)
  const where = (hash: string, key: string): [string, (string | number)[]] => {
    const b = parseBooked(key)
    if (b.kind === 'loop') throw new RangeError(`a loop step holds no money: ${key}`)
    return b.kind === 'period'
      ? ['periods WHERE hash = ? AND win = ? AND period = ?', [hash, b.window, b.period]]
      : ['sessions WHERE hash = ? AND id = ?', [hash, b.id]]
  }
  const counters = (hash: string, key: string): Counters | null => {
    const [w, args] = where(hash, key)
    const r = row(`SELECT spent, held, expires_at FROM ${w}`, ...args)
    return r === undefined || (r.expires_at as number) <= live() ? null : { spent: r.spent as number, held: r.held as number }
  }
  const raw: RawState = {
    booked: async (hash, key) => counters(hash, key),
    bookedTtl: async (hash, key) => {
      const [w, args] = where(hash, key)
      return ttlOf(row(`SELECT expires_at FROM ${w}`, ...args))
    },
    deleteBooked: async (hash, key) => {
      const [w, args] = where(hash, key)
      run(`DELETE FROM ${w}`, ...args)
    },
    reservation: async (hash, id) => {
      const r = row('SELECT state, expires_at FROM reservations WHERE hash = ? AND request_id = ?', hash, id)
      return r === undefined || (r.expires_at as number) <= live() ? null : { state: r.state as string }
    },
    reservationTtl: async (hash, id) => ttlOf(row('SELECT expires_at FROM reservations WHERE hash = ? AND request_id = ?', hash, id)),
    deleteReservation: async (hash, id) => run('DELETE FROM reservations WHERE hash = ? AND request_id = ?', hash, id),
    sessionTtl: async (hash, id) => ttlOf(row('SELECT expires_at FROM sessions WHERE hash = ? AND id = ?', hash, id)),
    setSessionTtl: async (hash, id, seconds) =>
      run('UPDATE sessions SET expires_at = ? WHERE hash = ? AND id = ?', live() + seconds * 1000, hash, id),
    setProviders: async (hash, csv) => run('UPDATE keys SET providers = ? WHERE hash = ?', csv, hash),
    deleteKey: async (hash) => run('DELETE FROM keys WHERE hash = ?', hash),
    dump: async () =>
      JSON.stringify(['keys', 'periods', 'sessions', 'reservations', 'daily_spend'].map((t) => sql().prepare(`SELECT * FROM ${t}`).all())),
  }
  return {
    kind: 'sqlite',
    redis: null,
    raw,
    store,
    admin,
    periodAt: async (hash, window, id) => counters(hash, `w:${window}:${id}`) ?? { spent: 0, held: 0 },
    session: async (hash, id) => {
      const r = row('SELECT budget, max_steps, steps, spent, held, expires_at FROM sessions WHERE hash = ? AND id = ?', hash, id)
      if (r === undefined || (r.expires_at as number) <= live()) return {}
      const out: Record<string, string> = {}
      for (const field of ['budget', 'max_steps', 'steps', 'spent', 'held']) if (r[field] !== null) out[field] = String(r[field])
      return out
    },
    close: async () => {
      rawDb?.close()
      db.close()
    },
  }
}

/** The key hash, window and period id a Redis period key names ('lp:{<hash>}:w:<window>:<id>'; an id may hold ':'), or null. */
function periodOfKey(key: string): { hash: string; window: WindowName; periodId: string } | null {
  const m = /^lp:\{([0-9a-f]+)\}:w:([a-z]+):(.+)$/.exec(key)
  if (m === null) return null
  return { hash: m[1] as string, window: m[2] as WindowName, periodId: m[3] as string }
}
