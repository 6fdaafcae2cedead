/** A budget store, key admin and hand-driven clock on a test Redis, plus helpers to read raw state. */
import { Redis } from 'ioredis'
import { createKeyAdmin } from '../../src/budget/admin.js'
import { periodKey, sessionKey } from '../../src/budget/redis-keys.js'
import { createBudgetStore } from '../../src/budget/store.js'
import type { BudgetChange, BudgetStore, KeyAdmin, WindowName } from '../../src/budget/types.js'
import { periodOf } from '../../src/budget/windows.js'
import type { ProviderId } from '../../src/providers/types.js'

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

export interface BudgetFixture {
  redis: Redis
  store: BudgetStore
  admin: KeyAdmin
  clock: Clock
  /** A new key allowed for `providers` (default openai) with the given budget; returns its hash. */
  newKey(change?: BudgetChange, providers?: ProviderId[]): Promise<string>
  /** spent/held of a window's period at the clock's current time (or at `atIso`). */
  period(hash: string, window: WindowName, atIso?: string): Promise<{ spent: number; held: number }>
  session(hash: string, id: string): Promise<Record<string, string>>
  close(): Promise<void>
}

export async function createBudgetFixture(
  url: string,
  opts: { sessionTtlSeconds?: number; commandTimeoutMs?: number } = {},
): Promise<BudgetFixture> {
  const redis = new Redis(url, { commandTimeout: opts.commandTimeoutMs ?? 5_000, maxRetriesPerRequest: 0 })
  redis.on('error', () => {})
  const clock = createClock()
  const store = createBudgetStore(redis, { now: clock.now, ...(opts.sessionTtlSeconds ? { sessionTtlSeconds: opts.sessionTtlSeconds } : {}) })
  const admin = createKeyAdmin(redis, { now: clock.now })
  return {
    redis,
    store,
    admin,
    clock,
    async newKey(change = {}, providers = ['openai']) {
      const { record } = await admin.createKey('test', providers)
      if (Object.keys(change).length > 0) await admin.setBudget(record.hash, change)
      return record.hash
    },
    async period(hash, window, atIso) {
      const at = atIso === undefined ? clock.now() : Date.parse(atIso)
      const [spent, held] = await redis.hmget(periodKey(hash, window, periodOf(window, at).id), 'spent', 'held')
      return { spent: Number(spent ?? 0), held: Number(held ?? 0) }
    },
    session: (hash, id) => redis.hgetall(sessionKey(hash, id)),
    async close() {
      redis.disconnect()
    },
  }
}
