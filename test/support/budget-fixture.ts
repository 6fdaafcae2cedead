/** A budget store, key admin and hand-driven clock on a test Redis, plus helpers to read raw state. */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { periodKey, sessionKey } from '../../src/budget/redis/redis-keys.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { BudgetChange, BudgetStore, KeyAdmin, Reservation, ReserveInput, WindowName } from '../../src/budget/types.js'
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
  /** Reserves `reserveInput(hash, micros, extra)`; throws when refused. */
  reserved(hash: string, micros: number, extra?: Partial<ReserveInput>): Promise<Reservation>
  close(): Promise<void>
}

/** A reservation request for exactly `micros` on openai with no session, unless `extra` says otherwise. */
export function reserveInput(keyHash: string, micros: number, extra: Partial<ReserveInput> = {}): ReserveInput {
  return { keyHash, provider: 'openai', requestId: randomUUID(), minMicros: micros, maxMicros: micros, session: null, ...extra }
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
    async reserved(hash, micros, extra = {}) {
      const r = await store.reserve(reserveInput(hash, micros, extra))
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      return r.reservation
    },
    async close() {
      redis.disconnect()
    },
  }
}
