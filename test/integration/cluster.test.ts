import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient, type RedisStatus } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { BudgetStore, KeyAdmin, ReserveInput } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { LOOP_STEPS_PER_SCOPE } from '../../src/loop/rule.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// A Redis Cluster refuses any script or command whose keys span slots (CROSSSLOT), so every budget
// operation passing here proves the {hash} tag keeps one key's data in one slot.
let server: TestRedis
let client: RedisClient
let store: BudgetStore
let admin: KeyAdmin
const statuses: RedisStatus[] = []

beforeAll(async () => {
  server = await startRedis({ cluster: true })
  client = createRedisClient({
    url: 'redis://ignored:6379',
    clusterNodes: [`127.0.0.1:${server.port}`],
    commandTimeoutMs: 500,
    onStatus: (s) => statuses.push(s),
  })
  store = createBudgetStore(client)
  admin = createKeyAdmin(client)
  await eventually(() => store.ping())
})
afterAll(async () => {
  client?.disconnect()
  await server?.stop()
})

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

const input = (keyHash: string, micros: number, requestId = randomUUID()): ReserveInput => ({
  keyHash,
  provider: 'openai',
  requestId,
  minMicros: micros,
  maxMicros: micros,
  session: { id: 'agent-1', budgetMicros: 10_000, maxSteps: 10 },
})

describe('on a Redis Cluster', () => {
  it('runs every budget operation and the admin round trip', async () => {
    const { record } = await admin.createKey('cluster', ['openai'], { unlimited: true })
    expect(await admin.setBudget(record.hash, { limits: { daily: 1_000 } })).not.toBeNull()
    expect((await admin.listKeys()).map((k) => k.hash)).toContain(record.hash)

    const r = await store.reserve(input(record.hash, 600))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    expect(await store.extend(r.reservation, 1, 1_000)).toEqual({ ok: true, grantedMicros: 400 })
    expect(await store.reserve(input(record.hash, 1))).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily' })
    expect(await store.settle(r.reservation, 250)).toEqual({ chargedMicros: 250, alreadySettled: false })

    const timedOut = randomUUID()
    expect((await store.reserve(input(record.hash, 100, timedOut))).ok).toBe(true)
    await store.abandon(record.hash, timedOut)
    await store.abandon(record.hash, randomUUID())

    expect((await admin.status(record.hash))?.daily).toMatchObject({ limitMicros: 1_000, spentMicros: 250, heldMicros: 0 })
    expect(await admin.revokeKey(record.hash)).toBe(true)
    expect(await store.reserve(input(record.hash, 1))).toEqual({ ok: false, reason: 'key_revoked' })
    expect(statuses).toEqual(['ready'])
  })

  it('runs the loop guard through a scope that outgrows 256 steps (its age index shares the slot)', async () => {
    const { record } = await admin.createKey('cluster-loop', ['openai'], { unlimited: true, loopLimit: 1 })
    const hex = (n: number): string => n.toString(16).padStart(16, '0')
    const step = (n: number) => ({ ...input(record.hash, 1), session: null, loop: { scope: `c:${hex(1)}`, step: hex(n) } })
    for (let n = 0; n < LOOP_STEPS_PER_SCOPE + 80; n++) {
      const r = await store.reserve(step(n))
      if (!r.ok) throw new Error(`step ${n} refused: ${r.reason}`)
      await store.settle(r.reservation, 1)
    }
    expect(await client.exists(`lp:{${record.hash}}:loopt:c:${hex(1)}`)).toBe(1)
    // The newest step is remembered: its first repeat passes (limit 1), the second is refused.
    const newest = LOOP_STEPS_PER_SCOPE + 79
    const repeat = await store.reserve(step(newest))
    if (!repeat.ok) throw new Error(`repeat refused: ${repeat.reason}`)
    await store.settle(repeat.reservation, 1)
    expect(await store.reserve(step(newest))).toMatchObject({ ok: false, reason: 'loop_detected', count: 2 })
  })

  it('fails closed when the node dies and serves again after it returns', async () => {
    const { record } = await admin.createKey('cluster-outage', ['openai'], { unlimited: true })
    await server.kill()
    const started = performance.now()
    await expect(store.reserve(input(record.hash, 1))).rejects.toBeInstanceOf(StoreUnavailableError)
    expect(performance.now() - started).toBeLessThan(2_000)
    await server.restart()
    // Without persistence the key is gone after the restart: a typed refusal proves Redis answers.
    expect(await eventually(() => store.reserve(input(record.hash, 1)))).toEqual({ ok: false, reason: 'invalid_key' })
  })
})
