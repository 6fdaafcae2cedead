import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { reservationKey } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES, type WindowName } from '../../src/budget/types.js'
import { periodOf } from '../../src/budget/windows.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { readRecord } from '../support/fault-checks.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

describe.each(STORE_KINDS)('%s store', (kind) => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore(kind)
    f = await createBudgetFixture(server)
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  describe('flood: 1,000 concurrent reserves against a budget of exactly N requests', () => {
    const X = 7_919
    const N = 137

    it.each(WINDOW_NAMES)('%s: admits exactly N and holds exactly N·X', async (window) => {
      const hash = await f.newKey({ limits: { [window]: N * X } })
      const results = await Promise.all(Array.from({ length: 1_000 }, () => f.store.reserve(input(hash, X))))
      const admitted = results.filter((r) => r.ok)
      expect(admitted).toHaveLength(N)
      for (const r of results) {
        if (!r.ok) expect(r).toMatchObject({ reason: 'budget_exceeded', window, limitMicros: N * X, spentMicros: N * X, heldMicros: N * X })
      }
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w)).toEqual({ spent: 0, held: N * X })
    })
  })

  describe('window limits', () => {
    it.each(WINDOW_NAMES)('%s: spending exactly to the limit is allowed, one micro more is refused', async (window) => {
      const hash = await f.newKey({ limits: { [window]: 1_000 } })
      const first = await f.store.reserve(input(hash, 600))
      expect(first.ok).toBe(true)
      if (!first.ok) return
      await f.store.settle(first.reservation, 600)
      expect((await f.store.reserve(input(hash, 400))).ok).toBe(true)
      const refused = await f.store.reserve(input(hash, 1))
      // 600 settled + 400 still held: the refusal says which part holds make up.
      expect(refused).toMatchObject({ ok: false, reason: 'budget_exceeded', window, limitMicros: 1_000, spentMicros: 1_000, heldMicros: 400 })
      if (!refused.ok) expect(refused.resetsAt?.getTime()).toBeGreaterThan(f.clock.now())
    })

    it('grants as much of max as fits, at least min', async () => {
      const hash = await f.newKey({ limits: { daily: 1_000 } })
      const a = await f.store.reserve(input(hash, 0, { minMicros: 100, maxMicros: 700 }))
      expect(a.ok && a.reservation.reservedMicros).toBe(700)
      const b = await f.store.reserve(input(hash, 0, { minMicros: 100, maxMicros: 700 }))
      expect(b.ok && b.reservation.reservedMicros).toBe(300)
      const c = await f.store.reserve(input(hash, 0, { minMicros: 1, maxMicros: 700 }))
      expect(c).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily' })
      expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 1_000 })
    })

    it('reports the first window in order minute → monthly when several are full', async () => {
      const hash = await f.newKey({ limits: { hourly: 500, weekly: 500, monthly: 400 } })
      const refused = await f.store.reserve(input(hash, 450))
      // hourly and weekly fit 450; monthly (400) does not.
      expect(refused).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'monthly', limitMicros: 400, spentMicros: 0 })
      expect(refused.ok === false && refused.resetsAt?.toISOString()).toBe('2026-06-01T00:00:00.000Z')
      expect((await f.store.reserve(input(hash, 400))).ok).toBe(true)
      await f.admin.setBudget(hash, { limits: { minute: 100, monthly: 100 } })
      const again = await f.store.reserve(input(hash, 200))
      expect(again).toMatchObject({ reason: 'budget_exceeded', window: 'minute', limitMicros: 100, spentMicros: 400 })
      expect(again.ok === false && again.resetsAt?.toISOString()).toBe('2026-05-04T12:01:00.000Z')
    })

    it('a refused reserve changes nothing', async () => {
      const hash = await f.newKey({ limits: { daily: 100 } })
      const id = randomUUID()
      expect((await f.store.reserve(input(hash, 101, { requestId: id }))).ok).toBe(false)
      expect(await f.raw.reservation(hash, id)).toBeNull()
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w)).toEqual({ spent: 0, held: 0 })
    })

    it('every window records spend even when unlimited', async () => {
      const hash = await f.newKey()
      const r = await f.store.reserve(input(hash, 250))
      if (!r.ok) throw new Error('refused')
      await f.store.settle(r.reservation, 200)
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w)).toEqual({ spent: 200, held: 0 })
    })

    it('sets the period key TTL to the period length plus a day of grace', async () => {
      const hash = await f.newKey()
      const r = await f.store.reserve(input(hash, 1))
      if (!r.ok) throw new Error('refused')
      const expected: Record<WindowName, number> = {
        minute: 60 + 86_400, hourly: 3_600 + 86_400, daily: 2 * 86_400, weekly: 8 * 86_400, monthly: 32 * 86_400,
      }
      for (const [i, key] of r.reservation.bookedKeys.entries()) {
        const ttl = await f.raw.bookedTtl(hash, key)
        const window = WINDOW_NAMES[i] as WindowName
        // Redis counts from the minute's first reserve; the embedded store from the period's end (never later).
        const want = kind === 'redis' ? expected[window] : (periodOf(window, f.clock.now()).resetsAt.getTime() - f.clock.now()) / 1000 + 86_400
        expect(ttl).toBeLessThanOrEqual(want)
        expect(ttl).toBeGreaterThan(want - 5)
      }
      expect(await f.raw.reservationTtl(hash, r.reservation.requestId)).toBeGreaterThanOrEqual(35 * 86_400 - 5)
    })

    // Redis's record layout: defined for the Redis store only.

    if (kind === 'redis') it('records on the reservation when it was made, as toISOString writes it', async () => {
      const hash = await f.newKey()
      f.clock.set('2026-05-04T12:59:59.000Z')
      for (const step of [0, 7, 43, 899.5, 50, 1, 999]) {
        f.clock.advance(step)
        const r = await f.store.reserve(input(hash, 1))
        if (!r.ok) throw new Error('refused')
        const { created_at: created } = await readRecord(f.redis, reservationKey(hash, r.reservation.requestId))
        expect(created).toBe(new Date(f.clock.now()).toISOString())
      }
    })
  })

  describe('key checks', () => {
    it('refuses an unknown key, a revoked key and a provider the key may not use', async () => {
      expect(await f.store.reserve(input('0'.repeat(64), 1))).toEqual({ ok: false, reason: 'invalid_key' })
      expect(await f.store.reserve(input('not-a-hash', 1))).toEqual({ ok: false, reason: 'invalid_key' })
      const hash = await f.newKey({}, ['openai', 'anthropic'])
      expect((await f.store.reserve(input(hash, 1, { provider: 'anthropic' }))).ok).toBe(true)
      expect(await f.store.reserve(input(hash, 1, { provider: 'gemini' }))).toEqual({ ok: false, reason: 'provider_not_allowed' })
      await f.admin.revokeKey(hash)
      expect(await f.store.reserve(input(hash, 1))).toEqual({ ok: false, reason: 'key_revoked' })
    })

    it('matches providers as whole list entries, not substrings', async () => {
      const hash = await f.newKey({}, ['openai'])
      await f.raw.setProviders(hash, 'xopenai,openaix')
      expect(await f.store.reserve(input(hash, 1))).toEqual({ ok: false, reason: 'provider_not_allowed' })
    })

    it('rejects a reused request id as a fault, not a refusal, and holds nothing for it', async () => {
      const hash = await f.newKey()
      const id = randomUUID()
      expect((await f.store.reserve(input(hash, 10, { requestId: id }))).ok).toBe(true)
      await expect(f.store.reserve(input(hash, 10, { requestId: id }))).rejects.toBeInstanceOf(StoreUnavailableError)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 10 })
    })

    it('rejects a reused request id as a fault even where the request would be refused, and changes nothing', async () => {
      f.clock.set('2026-05-04T12:00:30.000Z')
      const hash = await f.newKey({ limits: { daily: 100 }, rpm: 2, loopLimit: 1 })
      const id = randomUUID()
      const loop = { scope: 'c:00000000000000aa', step: '00000000000000bb' }
      expect((await f.store.reserve(input(hash, 60, { requestId: id, loop }))).ok).toBe(true)
      expect((await f.store.reserve(input(hash, 1, { loop }))).ok).toBe(true) // the step's second repeat: the limit's next is refused
      expect(await f.store.reserve(input(hash, 60))).toMatchObject({ ok: false, reason: 'rate_limited' })
      await expect(f.store.reserve(input(hash, 60, { requestId: id }))).rejects.toBeInstanceOf(StoreUnavailableError) // rate
      f.clock.advance(60_000)
      expect(await f.store.reserve(input(hash, 60, { loop }))).toMatchObject({ ok: false, reason: 'loop_detected' })
      await expect(f.store.reserve(input(hash, 60, { requestId: id, loop }))).rejects.toBeInstanceOf(StoreUnavailableError) // loop
      expect(await f.store.reserve(input(hash, 60))).toMatchObject({ ok: false, reason: 'budget_exceeded' })
      await expect(f.store.reserve(input(hash, 60, { requestId: id }))).rejects.toBeInstanceOf(StoreUnavailableError) // budget
      expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 61 })
      // With a session: the id is a fault before the session is read, so its limits are not lowered by it.
      const session = { id: 's-reused', budgetMicros: 30, maxSteps: null }
      await expect(f.store.reserve(input(hash, 1, { requestId: id, session }))).rejects.toBeInstanceOf(StoreUnavailableError)
      expect(await f.session(hash, 's-reused')).toEqual({})
    })

    it('rejects malformed amounts before touching Redis', async () => {
      const hash = await f.newKey()
      await expect(f.store.reserve(input(hash, 0, { minMicros: 5, maxMicros: 4 }))).rejects.toThrow(RangeError)
      await expect(f.store.reserve(input(hash, -1))).rejects.toThrow(RangeError)
      await expect(f.store.reserve(input(hash, 1.5))).rejects.toThrow(RangeError)
    })

    it('keeps large amounts exact (no float formatting in Lua)', async () => {
      const hash = await f.newKey({ limits: { monthly: 9_007_199_254_740 } })
      const big = 123_456_789_012_345 // 15 digits: more than Lua's tostring() keeps
      expect((await f.store.reserve(input(hash, big))).ok).toBe(false)
      const unlimited = await f.newKey()
      const r = await f.store.reserve(input(unlimited, big))
      if (!r.ok) throw new Error('refused')
      expect(r.reservation.reservedMicros).toBe(big)
      expect(await f.period(unlimited, 'daily')).toEqual({ spent: 0, held: big })
      await f.store.settle(r.reservation, big + 1)
      expect(await f.period(unlimited, 'monthly')).toEqual({ spent: big + 1, held: 0 })
    })
  })
})
