/** Reading what a request left behind: window totals, summary lines, settle calls, reservation records. */
import { Redis } from 'ioredis'
import type { KeyAdmin } from '../../src/budget/types.js'
import { expect } from 'vitest'
import type { LedgerEntry } from './fake-server.js'
import type { TestProxy } from './proxy.js'

export interface Totals {
  spent: number
  held: number
}

/** The daily window's settled spend and live holds of `hash`, in micro-USD (= tokens at test prices). */
export async function daily(admin: KeyAdmin, hash: string): Promise<Totals> {
  const status = await admin.status(hash)
  if (status === null) throw new Error(`no key ${hash}`)
  return { spent: status.daily.spentMicros, held: status.daily.heldMicros }
}

/** The proxy's summary lines ("request") of one key, oldest first. */
export function summaries(proxy: Pick<TestProxy, 'logs'>, hash: string): Array<Record<string, unknown>> {
  return proxy.logs.filter((l) => l.msg === 'request' && l.key === hash.slice(0, 8))
}

/** Micro-USD a summary line says was charged (the pipeline logs USD). */
export function chargedMicros(summary: Record<string, unknown>): number {
  return Math.round(Number(summary.chargedUsd) * 1_000_000)
}

/** How many times the proxy has called the store's settle, from its Prometheus metrics. */
export async function settleCalls(adminUrl: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const match = /^loopers_store_latency_seconds_count\{op="settle"\} (\d+)$/m.exec(text)
  return match === null ? 0 : Number(match[1])
}

export interface ReservationRecord {
  state: string
  amount: number
  charged: number | null
}

/** Every reservation record of `hash` in Redis (one per request that reserved). */
export async function reservations(redisUrl: string, hash: string): Promise<ReservationRecord[]> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 0, lazyConnect: true })
  redis.on('error', () => undefined)
  try {
    await redis.connect()
    const keys = await redis.keys(`lp:{${hash}}:r:*`)
    const records = await Promise.all(keys.map((k) => readRecord(redis, k)))
    return records.map((r) => ({ state: r.state ?? '', amount: Number(r.amount ?? 0), charged: r.charged === undefined ? null : Number(r.charged) }))
  } finally {
    redis.disconnect()
  }
}

/**
 * The fields of the Redis reservation record `key` ({} when there is none): a string, 'held <amount> <provider>
 * <created_at>' then its session and loop step, or 'settled <charged>' (lua/reserve.lua); or a hash an earlier
 * release wrote, as it is.
 */
export async function readRecord(redis: Redis, key: string): Promise<Record<string, string>> {
  if ((await redis.type(key)) === 'hash') return redis.hgetall(key)
  const text = await redis.get(key)
  if (text === null) return {}
  const [state = '', n = '', provider = '', createdAt = ''] = text.split(' ')
  if (state === 'settled') return { state, charged: n }
  // 'kept': held in the string layout of the key's current periods.
  return { state: state === 'kept' ? 'held' : state, amount: n, provider, created_at: createdAt }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * The input a stream that ended without reported usage was charged (its summary's `inputTokens`), checked
 * against the prompt tokens the upstream billed (its ledger entry): the proxy's message wrappers bound it
 * from above (at most 2 over), and it is below the byte bound it reserved. Returns it.
 */
export function expectCountedInput(summary: Record<string, unknown>, upstream: Pick<LedgerEntry, 'inputTokens'>): number {
  const input = Number(summary.inputTokens)
  const billed = upstream.inputTokens
  expect(billed, 'the upstream billed the prompt').toBeGreaterThan(0)
  expect(input, `charged ${input} input tokens, the upstream billed ${billed}`).toBeGreaterThanOrEqual(billed)
  expect(input, `charged ${input} input tokens, the upstream billed ${billed}`).toBeLessThanOrEqual(billed + 2)
  expect(input).toBeLessThan(Number(summary.inputBound))
  return input
}
