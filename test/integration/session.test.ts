import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Reservation, ReserveInput, SessionRequest } from '../../src/budget/types.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

const SESSION_TTL = 3_600

describe.each(STORE_KINDS)('%s store', (kind) => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore(kind)
    f = await createBudgetFixture(server, { sessionTtlSeconds: SESSION_TTL })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  const session = (id: string, budgetMicros: number | null = null, maxSteps: number | null = null): SessionRequest => ({
    id,
    budgetMicros,
    maxSteps,
  })

  const input = (keyHash: string, micros: number, s: SessionRequest | null, min = micros): ReserveInput => ({
    keyHash,
    provider: 'openai',
    requestId: randomUUID(),
    minMicros: min,
    maxMicros: micros,
    session: s,
  })

  async function reserved(hash: string, micros: number, s: SessionRequest | null): Promise<Reservation> {
    const r = await f.store.reserve(input(hash, micros, s))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    return r.reservation
  }

  describe('sessions', () => {
    it('enforce their budget; reaching it exactly is allowed', async () => {
      const hash = await f.newKey()
      const a = await reserved(hash, 60, session('s', 100))
      expect(await f.store.reserve(input(hash, 50, session('s')))).toEqual({
        ok: false, reason: 'session_budget_exceeded', limitMicros: 100, spentMicros: 60, heldMicros: 60,
      })
      await f.store.settle(a, 30)
      const b = await f.store.reserve(input(hash, 100, session('s'), 1))
      expect(b.ok && b.reservation.reservedMicros).toBe(70)
      // Other sessions and session-less requests of the same key are not affected.
      expect((await f.store.reserve(input(hash, 500, session('other')))).ok).toBe(true)
      expect((await f.store.reserve(input(hash, 500, null))).ok).toBe(true)
    })

    it('count every admitted request as one step and refuse once the steps are used', async () => {
      const hash = await f.newKey()
      expect((await f.store.reserve(input(hash, 10, session('s', 25, 3)))).ok).toBe(true)
      expect((await f.store.reserve(input(hash, 10, session('s')))).ok).toBe(true)
      // Refused on budget: not a step.
      expect(await f.store.reserve(input(hash, 10, session('s')))).toMatchObject({ reason: 'session_budget_exceeded' })
      expect((await f.store.reserve(input(hash, 5, session('s')))).ok).toBe(true)
      // Three steps used: steps are reported before budget.
      expect(await f.store.reserve(input(hash, 0, session('s')))).toEqual({ ok: false, reason: 'session_steps_exceeded' })
      expect((await f.session(hash, 's')).steps).toBe('3')
    })

    it('steps hold under a flood: exactly max steps are admitted', async () => {
      const hash = await f.newKey()
      const results = await Promise.all(Array.from({ length: 200 }, () => f.store.reserve(input(hash, 1, session('flood', null, 17)))))
      expect(results.filter((r) => r.ok)).toHaveLength(17)
      expect(results.filter((r) => !r.ok && r.reason === 'session_steps_exceeded')).toHaveLength(200 - 17)
    })

    it('window limits are reported before the session', async () => {
      const hash = await f.newKey({ limits: { daily: 50 } })
      expect(await f.store.reserve(input(hash, 60, session('s', 10, 0)))).toMatchObject({ reason: 'budget_exceeded', window: 'daily' })
    })

    it('can be lowered by a later request, never raised', async () => {
      const hash = await f.newKey()
      await reserved(hash, 10, session('s', 100, 10))
      await reserved(hash, 10, session('s', 50, 5))
      expect(await f.session(hash, 's')).toMatchObject({ budget: '50', max_steps: '5' })
      await reserved(hash, 10, session('s', 1_000, 100))
      expect(await f.session(hash, 's')).toMatchObject({ budget: '50', max_steps: '5', steps: '3', held: '30' })
      expect(await f.store.reserve(input(hash, 21, session('s', 1_000)))).toMatchObject({ reason: 'session_budget_exceeded', limitMicros: 50 })
    })

    it('a lowering sticks even when the request that asks for it is refused (CONTRACT §4)', async () => {
      const hash = await f.newKey({ limits: { daily: 10 } })
      await reserved(hash, 5, session('s', 100, 9))
      expect(await f.store.reserve(input(hash, 50, session('s', 20, 4)))).toMatchObject({ reason: 'budget_exceeded' })
      expect(await f.session(hash, 's')).toMatchObject({ budget: '20', max_steps: '4', steps: '1' })
      // Refused by the session itself: the lower step limit it asked for is kept as well.
      expect(await f.store.reserve(input(hash, 1, session('s', null, 1)))).toEqual({ ok: false, reason: 'session_steps_exceeded' })
      expect(await f.session(hash, 's')).toMatchObject({ budget: '20', max_steps: '1', steps: '1' })
      // A raise is ignored, refused or not.
      expect(await f.store.reserve(input(hash, 1, session('s', 500, 50)))).toEqual({ ok: false, reason: 'session_steps_exceeded' })
      expect(await f.session(hash, 's')).toMatchObject({ budget: '20', max_steps: '1' })
    })

    it('a refused first request of a session still sets the limits it asks for', async () => {
      const hash = await f.newKey({ limits: { daily: 10 } })
      expect(await f.store.reserve(input(hash, 50, session('new', 30, 3)))).toMatchObject({ reason: 'budget_exceeded' })
      expect(await f.session(hash, 'new')).toMatchObject({ budget: '30', max_steps: '3' })
      expect(Number((await f.session(hash, 'new')).steps ?? 0)).toBe(0)
      expect((await f.store.reserve(input(hash, 5, session('new', 100)))).ok).toBe(true)
      expect(await f.session(hash, 'new')).toMatchObject({ budget: '30', max_steps: '3', steps: '1' })
    })

    it('apply the key defaults, the smaller of default and header', async () => {
      const hash = await f.newKey({ sessionBudgetMicros: 30, sessionMaxSteps: 2 })
      await reserved(hash, 10, session('none'))
      expect(await f.session(hash, 'none')).toMatchObject({ budget: '30', max_steps: '2' })
      await reserved(hash, 10, session('bigger', 100, 9))
      expect(await f.session(hash, 'bigger')).toMatchObject({ budget: '30', max_steps: '2' })
      await reserved(hash, 10, session('smaller', 20, 1))
      expect(await f.session(hash, 'smaller')).toMatchObject({ budget: '20', max_steps: '1' })
      expect(await f.store.reserve(input(hash, 1, session('smaller')))).toEqual({ ok: false, reason: 'session_steps_exceeded' })
      expect(await f.store.reserve(input(hash, 25, session('none')))).toMatchObject({ reason: 'session_budget_exceeded', limitMicros: 30 })
    })

    it('a session without any limit only counts', async () => {
      const hash = await f.newKey()
      for (let i = 0; i < 5; i++) await reserved(hash, 1_000, session('free'))
      const s = await f.session(hash, 'free')
      expect(s).toMatchObject({ steps: '5', held: '5000' })
      expect(s.budget).toBeUndefined()
      expect(s.max_steps).toBeUndefined()
    })

    it('start over once their idle lifetime has passed: no earlier steps, spend, hold or lowered limits', async () => {
      const hash = await f.newKey()
      await f.store.settle(await reserved(hash, 20, session('over', 30, 2)), 20)
      await reserved(hash, 5, session('over'))
      expect(await f.session(hash, 'over')).toMatchObject({ budget: '30', max_steps: '2', steps: '2', spent: '20', held: '5' })
      await f.raw.setSessionTtl(hash, 'over', 0)
      // Past the old budget and steps: admitted, as the first request of a new session of that id.
      expect((await f.store.reserve(input(hash, 25, session('over')))).ok).toBe(true)
      const s = await f.session(hash, 'over')
      expect(s).toMatchObject({ steps: '1', held: '25' })
      expect(s.spent ?? '0').toBe('0')
      expect(s.budget).toBeUndefined()
      expect(s.max_steps).toBeUndefined()
    })

    it('set and refresh the session TTL on every request, refused ones included', async () => {
      const hash = await f.newKey()
      await reserved(hash, 10, session('ttl', 10))
      expect(await f.raw.sessionTtl(hash, 'ttl')).toBeGreaterThan(SESSION_TTL - 5)
      await f.raw.setSessionTtl(hash, 'ttl', 100)
      expect(await f.raw.sessionTtl(hash, 'ttl')).toBeLessThanOrEqual(100)
      expect(await f.store.reserve(input(hash, 10, session('ttl')))).toMatchObject({ reason: 'session_budget_exceeded' })
      expect(await f.raw.sessionTtl(hash, 'ttl')).toBeGreaterThan(SESSION_TTL - 5)
    })

    it('give a TTL to a session its first request creates without limits, and refresh it on admitted requests', async () => {
      const hash = await f.newKey()
      await reserved(hash, 10, session('plain'))
      expect(await f.session(hash, 'plain')).toMatchObject({ steps: '1', held: '10' })
      expect(await f.raw.sessionTtl(hash, 'plain')).toBeGreaterThan(SESSION_TTL - 5)
      await f.raw.setSessionTtl(hash, 'plain', 100)
      await reserved(hash, 10, session('plain'))
      expect(await f.raw.sessionTtl(hash, 'plain')).toBeGreaterThan(SESSION_TTL - 5)
    })

    it('rejects a session id outside the contract format before touching Redis', async () => {
      const hash = await f.newKey()
      await expect(f.store.reserve(input(hash, 1, session('a b')))).rejects.toThrow(RangeError)
      await expect(f.store.reserve(input(hash, 1, session('')))).rejects.toThrow(RangeError)
      await expect(f.store.reserve(input(hash, 1, session('x'.repeat(129))))).rejects.toThrow(RangeError)
    })
  })
})
