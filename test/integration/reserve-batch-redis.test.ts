import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { curKey, loopKeyStart, recordKey, reservationKey } from '../../src/budget/redis/redis-keys.js'
import type { ReserveInput, ReserveResult } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The string layout's reserves of one key without a session, issued in one event-loop turn, go to Redis as one
// reserve-batch.lua call, which admits each as reserve.lua would, in order, and leaves any other item to reserve.lua.

describe('redis store, string layout: a key\'s reserves of one turn in one call', () => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server, { redisLayout: 'string' })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  /** EVALSHA and EVAL calls Redis ran so far. */
  async function scriptCalls(): Promise<number> {
    const info = await f.redis.info('commandstats')
    let calls = 0
    for (const m of info.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)) calls += Number(m[1])
    return calls
  }

  /** A new key of `change` whose current periods' string exists (a key's first reserve makes it, alone). */
  async function primedKey(change: Parameters<BudgetFixture['newKey']>[0] = {}): Promise<string> {
    const hash = await f.newKey(change)
    await f.store.settle(await f.reserved(hash, 1), 0)
    return hash
  }

  /**
   * Each result with its request id and key left out (they differ between two keys), a refusal by its reason (a left
   * item is answered after the call's admitted ones, so its figures are of a later state), and what is stored.
   */
  async function outcome(hash: string, inputs: ReserveInput[], results: PromiseSettledResult<ReserveResult>[]): Promise<unknown> {
    const answers = results.map((r) => {
      if (r.status === 'rejected') return (r.reason as Error).constructor.name
      if (!r.value.ok) return { ok: false, reason: r.value.reason }
      const { reservedMicros, remainingMicros, bookedKeys } = r.value.reservation
      return { reservedMicros, remainingMicros, booked: bookedKeys.map((k) => k.replace(hash, '<h>')) }
    })
    const records = []
    for (const i of inputs) records.push([await f.redis.get(reservationKey(hash, i.requestId)), await f.redis.ttl(reservationKey(hash, i.requestId))])
    return { answers, records, cur: await f.redis.get(curKey(hash)), curTtl: await f.redis.ttl(curKey(hash)) }
  }

  /** The same requests on a fresh key of `change`: reserved together, and one at a time (request ids made alike). */
  async function togetherAndAlone(change: Parameters<BudgetFixture['newKey']>[0], make: (hash: string, i: number) => ReserveInput, n: number) {
    const together = await primedKey(change)
    const alone = await primedKey(change)
    const inputsTogether = Array.from({ length: n }, (_, i) => make(together, i))
    const inputsAlone = inputsTogether.map((x) => ({ ...x, keyHash: alone }))
    const before = await scriptCalls()
    const resultsTogether = await Promise.allSettled(inputsTogether.map((x) => f.store.reserve(x)))
    const calls = (await scriptCalls()) - before
    const resultsAlone: PromiseSettledResult<ReserveResult>[] = []
    for (const x of inputsAlone) resultsAlone.push((await Promise.allSettled([f.store.reserve(x)]))[0] as PromiseSettledResult<ReserveResult>)
    return { calls, together: await outcome(together, inputsTogether, resultsTogether), alone: await outcome(alone, inputsAlone, resultsAlone) }
  }

  it('admits each as its own reserve would, in order, in one call: grants shrunk by a limit, the string held as alone', async () => {
    const run = await togetherAndAlone({ limits: { daily: 1_000, monthly: 5_000 } }, (hash) => input(hash, 400, { minMicros: 100 }), 3)
    expect(run.calls).toBe(1)
    expect(run.together).toEqual(run.alone)
    expect((run.together as { answers: unknown[] }).answers).toEqual([
      expect.objectContaining({ reservedMicros: 400, remainingMicros: 600 }),
      expect.objectContaining({ reservedMicros: 400, remainingMicros: 200 }),
      expect.objectContaining({ reservedMicros: 200, remainingMicros: 0 }),
    ])
  })

  it('an unlimited key, several providers, a loop check with the key\'s guard off: admitted in the call, as alone', async () => {
    const hash = await primedKey({ loopLimit: 0 })
    await f.redis.hset(recordKey(hash), 'providers', 'anthropic,openai')
    const loop = { scope: 'c:0123456789abcdef', step: 'fedcba9876543210' }
    const before = await scriptCalls()
    const results = await Promise.all([f.store.reserve(input(hash, 10)), f.store.reserve(input(hash, 20, { provider: 'anthropic', loop }))])
    expect(await scriptCalls()).toBe(before + 1)
    expect(results.map((r) => r.ok && [r.reservation.reservedMicros, r.reservation.remainingMicros])).toEqual([[10, null], [20, null]])
    expect(await f.redis.exists(loopKeyStart(hash) + loop.scope)).toBe(0)
    expect((await f.redis.get(curKey(hash)))?.split(' ').slice(0, 11)).toEqual(['0', '30', '0', '30', '0', '30', '0', '30', '0', '30', '3'])
  })

  it('leaves to reserve.lua every item it cannot admit, each answered as a reserve alone answers it', async () => {
    const run = await togetherAndAlone({ limits: { daily: 1_000 } }, (hash, i) => {
      if (i === 1) return input(hash, 5_000) // over the daily limit
      if (i === 2) return input(hash, 10, { provider: 'anthropic' }) // not allowed
      if (i === 3 || i === 4) return input(hash, 10, { requestId: 'used-twice' })
      return input(hash, 10)
    }, 6)
    // The call, then reserve.lua for the three it left.
    expect(run.calls).toBe(4)
    expect(run.together).toEqual(run.alone)
    expect((run.together as { answers: unknown[] }).answers).toEqual([
      expect.objectContaining({ reservedMicros: 10 }),
      { ok: false, reason: 'budget_exceeded' },
      { ok: false, reason: 'provider_not_allowed' },
      expect.objectContaining({ reservedMicros: 10 }),
      'StoreUnavailableError',
      expect.objectContaining({ reservedMicros: 10 }),
    ])
  })

  it('admits no more than the minute\'s rpm: the rest are reserve.lua\'s, refused as alone', async () => {
    // The minute's first request was the key's priming one: the fourth here is over the rpm.
    const run = await togetherAndAlone({ limits: { daily: 1_000 }, rpm: 4 }, (hash) => input(hash, 10), 5)
    expect(run.calls).toBe(3)
    expect(run.together).toEqual(run.alone)
    expect((run.together as { answers: unknown[] }).answers.slice(2)).toEqual([
      expect.objectContaining({ reservedMicros: 10 }),
      { ok: false, reason: 'rate_limited' },
      { ok: false, reason: 'rate_limited' },
    ])
  })

  it('a loop check with the key\'s guard in force is reserve.lua\'s: the step is recorded, as alone', async () => {
    const loop = { scope: 'c:0123456789abcdef', step: 'fedcba9876543210' }
    const run = await togetherAndAlone({ limits: { daily: 1_000 }, loopLimit: 5 }, (hash, i) => input(hash, 10, i === 1 ? { loop } : {}), 2)
    expect(run.calls).toBe(2)
    expect(run.together).toEqual(run.alone)
  })

  it('requests with a session are reserve.lua\'s, each: the session counts its steps and holds, its limits hold', async () => {
    const hash = await primedKey({ limits: { daily: 1_000 } })
    const session = { id: 'agent-1', budgetMicros: null, maxSteps: 2, loopLimit: null }
    const before = await scriptCalls()
    const results = await Promise.all([10, 20, 30].map((micros) => f.store.reserve(input(hash, micros, { session }))))
    expect(await scriptCalls()).toBe(before + 3)
    expect(results.map((r) => r.ok || r.reason)).toEqual([true, true, 'session_steps_exceeded'])
    expect(await f.session(hash, session.id)).toMatchObject({ steps: '2', held: '30' })
  })

  it('a revoked key and a key on the hash layout: every item is reserve.lua\'s', async () => {
    const revoked = await primedKey({ limits: { daily: 1_000 } })
    await f.redis.hset(recordKey(revoked), 'active', '0')
    const before = await scriptCalls()
    expect(await Promise.all([f.store.reserve(input(revoked, 10)), f.store.reserve(input(revoked, 20))])).toEqual([
      { ok: false, reason: 'key_revoked' },
      { ok: false, reason: 'key_revoked' },
    ])
    expect(await scriptCalls()).toBe(before + 3)

    const hashLayout = await f.newKey({ limits: { daily: 1_000 } })
    await f.redis.hdel(recordKey(hashLayout), 'layout')
    const beforeHash = await scriptCalls()
    const results = await Promise.all([f.store.reserve(input(hashLayout, 10)), f.store.reserve(input(hashLayout, 20))])
    expect(results.map((r) => r.ok)).toEqual([true, true])
    expect(await scriptCalls()).toBe(beforeHash + 3)
    expect(await f.redis.exists(curKey(hashLayout))).toBe(0)
    expect(await f.period(hashLayout, 'daily')).toEqual({ spent: 0, held: 30 })
  })

  it('a batch that failed rejects each item; an item it admitted is held under its id, which a retry finds used', async () => {
    const slow = await createBudgetFixture(server, { redisLayout: 'string', commandTimeoutMs: 300 })
    try {
      slow.clock.set(new Date(f.clock.now()).toISOString())
      const hash = await slow.newKey({ limits: { daily: 10_000 } })
      await slow.store.settle(await slow.reserved(hash, 1), 0)
      const a = input(hash, 100)
      const b = input(hash, 200)
      const before = await scriptCalls()
      await f.redis.call('CLIENT', 'PAUSE', '1000', 'WRITE')
      const failed = await Promise.allSettled([slow.store.reserve(a), slow.store.reserve(b)])
      expect(failed.map((r) => r.status === 'rejected' && r.reason instanceof StoreUnavailableError)).toEqual([true, true])
      for (let waited = 0; waited < 5_000 && (await scriptCalls()) === before; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50))
      expect(await scriptCalls()).toBe(before + 1)
      expect(await slow.period(hash, 'daily')).toEqual({ spent: 0, held: 300 })
      await expect(slow.store.reserve(a)).rejects.toBeInstanceOf(StoreUnavailableError)
    } finally {
      await slow.close()
    }
  })
})
