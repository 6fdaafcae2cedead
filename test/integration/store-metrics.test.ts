import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BudgetStore } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createMetrics, type Metrics } from '../../src/metrics.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

// Each store times its own reserve, extend and settle (observeCalls): the metrics count each call once, as the
// wrapper they replace did, failed ones too, and no wrapper stands between the proxy and the store.
describe.each(STORE_KINDS)('the %s store, instrumented', (kind) => {
  let server: TestStore
  let f: BudgetFixture
  let metrics: Metrics
  let store: BudgetStore

  beforeAll(async () => {
    server = await startTestStore(kind)
    f = await createBudgetFixture(server)
    metrics = createMetrics({ perKey: false })
    store = metrics.instrumentStore(f.store)
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  const count = async (name: string, op: string) => {
    const match = new RegExp(`^${name}\\{op="${op}"\\} (\\d+)$`, 'm').exec(await metrics.registry.metrics())
    return match === null ? 0 : Number(match[1])
  }
  const latencyCount = (op: string) => count('loopers_store_latency_seconds_count', op)
  const errors = (op: string) => count('loopers_store_errors_total', op)

  it('passes reserve, extend and settle through unwrapped', () => {
    expect(store.reserve).toBe(f.store.reserve)
    expect(store.extend).toBe(f.store.extend)
    expect(store.settle).toBe(f.store.settle)
  })

  it('counts each call once as it ends, refusals and failures too; abandon as abandon alone', async () => {
    const hash = await f.newKey({ limits: { daily: 1_000 } })
    const r = await f.reserved(hash, 400)
    expect((await store.extend(r, 100, 200)).ok).toBe(true)
    expect((await store.reserve(input(hash, 900))).ok).toBe(false)
    await store.settle(r, 300)
    await store.settle(r, 300)
    // Arguments it refuses before any round trip: a rejected call, counted as failed.
    await expect(store.settle(r, -1)).rejects.toThrow(RangeError)
    await expect(store.reserve({ ...input(hash, 1), minMicros: -5 })).rejects.toThrow()
    // A reused request id: the reply is read as a failure.
    await expect(store.reserve(input(hash, 1, { requestId: r.requestId }))).rejects.toThrow(StoreUnavailableError)
    // An admitted request abandoned: its release is the abandon call's, not a settle call.
    const held = input(hash, 50)
    expect((await store.reserve(held)).ok).toBe(true)
    await store.abandon(hash, held.requestId)
    // The store itself is timed from instrumentStore on: f.reserved's call through it counts too.
    expect({ reserve: await latencyCount('reserve'), extend: await latencyCount('extend'), settle: await latencyCount('settle'), abandon: await latencyCount('abandon') })
      .toEqual({ reserve: 5, extend: 1, settle: 3, abandon: 1 })
    expect({ reserve: await errors('reserve'), extend: await errors('extend'), settle: await errors('settle') }).toEqual({ reserve: 2, extend: 0, settle: 1 })
  })

  // What only one store can do: Redis makes a command be sent again; the embedded store reruns a failed group commit.
  if (kind === 'redis') it('counts a call Redis made it send again (its script cache flushed) once', async () => {
    const hash = await f.newKey()
    const before = await latencyCount('reserve')
    await f.redis.script('FLUSH')
    expect((await store.reserve(input(hash, 10, { requestId: randomUUID() }))).ok).toBe(true)
    expect(await latencyCount('reserve')).toBe(before + 1)
    expect(await errors('reserve')).toBe(2)
  })

  if (kind === 'sqlite') it('counts a call whose group commit failed, and that ran again alone, once', async () => {
    const hash = await f.newKey()
    const used = await f.reserved(hash, 10)
    const before = { calls: await latencyCount('reserve'), errors: await errors('reserve') }
    // Queued in one turn: one commit, which the reused id fails, so each runs again in a transaction of its own.
    const [good, reused] = await Promise.allSettled([store.reserve(input(hash, 10)), store.reserve(input(hash, 10, { requestId: used.requestId }))])
    expect(good.status === 'fulfilled' && good.value.ok).toBe(true)
    expect(reused.status).toBe('rejected')
    expect({ calls: await latencyCount('reserve'), errors: await errors('reserve') }).toEqual({ calls: before.calls + 2, errors: before.errors + 1 })
  })
})
