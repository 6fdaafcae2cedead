/**
 * The two budget stores the tests run on: `sqlite` (the embedded default, a fresh temporary database
 * file) and `redis` (a real redis-server the test starts). `env` selects the store for a proxy or CLI.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { Redis } from 'ioredis'
import { LAYOUT_KEY } from '../../src/budget/redis/redis-keys.js'
import { reservations, type ReservationRecord } from './fault-checks.js'
import { startRedis, type TestRedis } from './redis.js'

export type StoreKind = 'sqlite' | 'redis'

/**
 * The Redis store's layout of a key's current periods the tests run on (lua/reserve.lua): 'string' (what a fresh
 * store gives every key, the default) or 'hash' (LOOPERS_TEST_REDIS_LAYOUT=hash: the vitest project "redis-hash"
 * runs the store suites again on it, Redis only).
 */
export const REDIS_LAYOUT: 'string' | 'hash' = process.env.LOOPERS_TEST_REDIS_LAYOUT === 'hash' ? 'hash' : 'string'
export const STORE_KINDS: readonly StoreKind[] = REDIS_LAYOUT === 'hash' ? ['redis'] : ['sqlite', 'redis']

/** Keeps the test store on `layout` (default REDIS_LAYOUT): on 'hash', keys created on it from now keep the hash layout. */
export async function keepRedisLayout(redis: Redis, layout = REDIS_LAYOUT): Promise<void> {
  if (layout === 'hash') await redis.set(LAYOUT_KEY, '0')
}

export interface TestStore {
  kind: StoreKind
  /** Environment that selects this store: LOOPERS_DB or REDIS_URL. */
  env: Record<string, string>
  /** The Redis server (redis only). */
  redis: TestRedis | null
  /** The database file (sqlite only). */
  dbPath: string | null
  /** Every reservation record of a key as stored (charged: null while held). */
  reservations(hash: string): Promise<ReservationRecord[]>
  stop(): Promise<void>
}

/** A fresh store of `kind` (default: the embedded one, as a new user runs it). */
export async function startTestStore(kind: StoreKind = 'sqlite'): Promise<TestStore> {
  if (kind === 'redis') {
    const redis = await startRedis()
    const client = new Redis(redis.url, { maxRetriesPerRequest: 0 })
    try {
      await keepRedisLayout(client)
    } finally {
      client.disconnect()
    }
    return { kind, env: { REDIS_URL: redis.url }, redis, dbPath: null, reservations: (hash) => reservations(redis.url, hash), stop: () => redis.stop() }
  }
  const dir = mkdtempSync(join(tmpdir(), 'loopers-db-'))
  const dbPath = join(dir, 'loopers.db')
  return {
    kind,
    env: { LOOPERS_DB: dbPath },
    redis: null,
    dbPath,
    reservations: async (hash) => {
      const db = new DatabaseSync(dbPath, { readOnly: true })
      try {
        const rows = db.prepare('SELECT state, amount, charged FROM reservations WHERE hash = ?').all(hash) as Array<{ state: string; amount: number; charged: number }>
        return rows.map((r) => ({ state: r.state, amount: r.amount, charged: r.state === 'held' ? null : r.charged }))
      } finally {
        db.close()
      }
    },
    stop: async () => rmSync(dir, { recursive: true, force: true }),
  }
}
