import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient, type RedisStatus } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { BudgetStore, ReserveInput } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startRedis, type TestRedis } from '../support/redis.js'

const COMMAND_TIMEOUT_MS = 300

let server: TestRedis
let f: BudgetFixture
const clients: RedisClient[] = []

beforeAll(async () => {
  server = await startRedis({ appendonly: true })
  f = await createBudgetFixture(server.url)
})
afterAll(async () => {
  for (const c of clients) c.disconnect()
  await f?.close()
  await server?.stop()
})

function failClosedStore(statuses: RedisStatus[] = [], errors: Error[] = []): { client: RedisClient; store: BudgetStore } {
  const client = createRedisClient({
    url: server.url,
    clusterNodes: null,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    onStatus: (s, err) => {
      statuses.push(s)
      if (err !== undefined) errors.push(err)
    },
  })
  clients.push(client)
  return { client, store: createBudgetStore(client, { now: f.clock.now }) }
}

const input = (keyHash: string, micros: number, requestId = randomUUID()): ReserveInput => ({
  keyHash,
  provider: 'openai',
  requestId,
  minMicros: micros,
  maxMicros: micros,
  session: null,
})

/** Rejected without waiting for the command timeout: no offline queue, no retries (measured ≈1 ms; queued ≈100 ms). */
const AT_ONCE_MS = 50

/** Time taken by `promise` to reject with StoreUnavailableError. */
async function rejectsWithin(promise: Promise<unknown>): Promise<number> {
  const started = performance.now()
  await expect(promise).rejects.toBeInstanceOf(StoreUnavailableError)
  return performance.now() - started
}

async function eventually<T>(attempt: () => Promise<T>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await attempt()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}

describe('fail closed when Redis is away', () => {
  it('a frozen Redis: reserve rejects after the command timeout; abandon later releases the hold it made', async () => {
    const { store } = failClosedStore()
    await eventually(() => store.ping())
    const hash = await f.newKey({ limits: { daily: 1_000 } })
    const id = randomUUID()
    server.pause()
    try {
      const elapsed = await rejectsWithin(store.reserve(input(hash, 400, id)))
      expect(elapsed).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - 20)
      expect(elapsed).toBeLessThan(2_000)
      await rejectsWithin(store.ping())
    } finally {
      server.resume()
    }
    // The timed-out reserve still ran once Redis woke up: abandon must hand its hold back.
    await eventually(async () => expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 400 }))
    await store.abandon(hash, id)
    expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 0 })
    expect((await store.reserve(input(hash, 1_000))).ok).toBe(true)
  })

  it('a dead Redis: reserve and admin reject at once; service resumes after restart with holds kept', async () => {
    const statuses: RedisStatus[] = []
    const { client, store } = failClosedStore(statuses)
    await eventually(() => store.ping())
    const hash = await f.newKey({ limits: { daily: 1_000 } })
    expect((await store.reserve(input(hash, 300))).ok).toBe(true)

    await server.kill()
    expect(await rejectsWithin(store.reserve(input(hash, 1)))).toBeLessThan(2_000)
    await rejectsWithin(createKeyAdmin(client).listKeys())
    // Once the client noticed and is reconnecting, commands are refused at once.
    await new Promise((r) => setTimeout(r, 200))
    expect(await rejectsWithin(store.reserve(input(hash, 1)))).toBeLessThan(AT_ONCE_MS)
    expect(await rejectsWithin(store.ping())).toBeLessThan(AT_ONCE_MS)
    expect(statuses).toContain('down')

    await server.restart()
    const r = await eventually(() => store.reserve(input(hash, 700)))
    expect(r.ok).toBe(true)
    expect(statuses.at(-1)).toBe('ready')
    // The hold made before the crash survived it (AOF) and still counts.
    expect(await store.reserve(input(hash, 1))).toMatchObject({ ok: false, reason: 'budget_exceeded', spentMicros: 1_000 })
  })

  it('a client started while Redis is down refuses at once and serves once Redis answers', async () => {
    const hash = await f.newKey()
    await server.kill()
    const statuses: RedisStatus[] = []
    const errors: Error[] = []
    const { store } = failClosedStore(statuses, errors)
    expect(await rejectsWithin(store.reserve(input(hash, 1)))).toBeLessThan(AT_ONCE_MS)
    await new Promise((r) => setTimeout(r, 300))
    expect(await rejectsWithin(store.ping())).toBeLessThan(AT_ONCE_MS)
    // The first failure is reported with its cause (the CLI gives up on it); retries are not repeated.
    expect(statuses).toEqual(['down'])
    expect(errors.map((e) => e.message).join()).toMatch(/ECONNREFUSED/)
    await server.restart()
    const r = await eventually(() => store.reserve(input(hash, 1)), 3_000)
    expect(r.ok).toBe(true)
    expect(statuses).toEqual(['down', 'ready'])
  })
})

describe('scripts missing from Redis', () => {
  it('after SCRIPT FLUSH (as after a failover or restart) every script is sent again and runs', async () => {
    const hash = await f.newKey({ limits: { daily: 1_000 } })
    const { client, store } = failClosedStore()
    await eventually(() => store.ping())
    const first = await store.reserve(input(hash, 100))
    expect(first.ok).toBe(true)
    await client.call('SCRIPT', 'FLUSH')
    const second = await store.reserve(input(hash, 200))
    expect(second.ok).toBe(true)
    if (!first.ok || !second.ok) return
    await client.call('SCRIPT', 'FLUSH')
    expect(await store.extend(second.reservation, 1, 50)).toEqual({ ok: true, grantedMicros: 50 })
    await client.call('SCRIPT', 'FLUSH')
    expect(await store.settle(first.reservation, 60)).toEqual({ chargedMicros: 60, alreadySettled: false })
    await client.call('SCRIPT', 'FLUSH')
    await store.abandon(hash, second.reservation.requestId)
    expect(await f.period(hash, 'daily')).toEqual({ spent: 60, held: 0 })
  })
})
