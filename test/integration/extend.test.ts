import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WINDOW_NAMES, type Reservation } from '../../src/budget/types.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
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

  /** Extends `r` by (min, want) until refused; returns how many extensions were granted. */
  async function extendUntilRefused(r: Reservation, min: number, want: number): Promise<number> {
    for (let n = 0; ; n++) {
      const result = await f.store.extend(r, min, want)
      if (!result.ok) {
        expect(result).toMatchObject({ reason: 'budget_exceeded', window: 'daily' })
        return n
      }
      expect(result.grantedMicros).toBeGreaterThanOrEqual(min)
      expect(result.grantedMicros).toBeLessThanOrEqual(want)
    }
  }

  describe('extend', () => {
    it('adds to the hold everywhere and to the reservation', async () => {
      const hash = await f.newKey({ limits: { daily: 1_000 } })
      const r = await f.reserved(hash, 100, { session: { id: 'x', budgetMicros: null, maxSteps: null } })
      expect(await f.store.extend(r, 50, 200)).toEqual({ ok: true, grantedMicros: 200 })
      expect(r.reservedMicros).toBe(300)
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w)).toEqual({ spent: 0, held: 300 })
      expect(Number((await f.session(hash, 'x')).held)).toBe(300)
      expect(await f.store.extend(r, 50, 900)).toEqual({ ok: true, grantedMicros: 700 })
      expect(await f.store.extend(r, 1, 1)).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily', limitMicros: 1_000, spentMicros: 1_000 })
      await f.store.settle(r, 1_000)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 1_000, held: 0 })
      expect(Number((await f.session(hash, 'x')).spent)).toBe(1_000)
    })

    it.each([
      ['fixed increments', 37, 37],
      ['as-much-as-fits increments', 1, 53],
    ])('never overshoots under contention: 50 live reservations, %s', async (_, min, want) => {
      const limit = 10_000
      const hash = await f.newKey({ limits: { daily: limit } })
      const live = await Promise.all(Array.from({ length: 50 }, () => f.reserved(hash, 100)))
      await Promise.all(live.map((r) => extendUntilRefused(r, min, want)))
      const { spent, held } = await f.period(hash, 'daily')
      expect(spent + held).toBeLessThanOrEqual(limit)
      expect(spent + held).toBeGreaterThan(limit - min) // every stream stopped only when nothing fit
      expect(held).toBe(live.reduce((sum, r) => sum + r.reservedMicros, 0))
      // Settling everything at half its hold releases every hold and charges exactly that.
      await Promise.all(live.map((r) => f.store.settle(r, Math.floor(r.reservedMicros / 2))))
      const charged = live.reduce((sum, r) => sum + Math.floor(r.reservedMicros / 2), 0)
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w)).toEqual({ spent: charged, held: 0 })
    })

    it('never overshoots while new reserves race the extensions', async () => {
      const limit = 20_000
      const hash = await f.newKey({ limits: { daily: limit, hourly: limit - 1_000 } })
      const live = await Promise.all(Array.from({ length: 20 }, () => f.reserved(hash, 50)))
      const extending = live.map(async (r) => {
        for (let i = 0; i < 60; i++) await f.store.extend(r, 10, 40)
      })
      const reserving = Array.from({ length: 300 }, () => f.store.reserve(input(hash, 0, { minMicros: 20, maxMicros: 90 })))
      await Promise.all([...extending, ...reserving])
      const hourly = await f.period(hash, 'hourly')
      expect(hourly.spent + hourly.held).toBeLessThanOrEqual(limit - 1_000)
      expect(await f.period(hash, 'daily')).toEqual(hourly)
    })
  })

  describe('revocation and budget changes apply at once', () => {
    it('a revoked key is refused on the next reserve and on extend', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      expect(await f.admin.revokeKey(hash)).toBe(true)
      expect(await f.store.extend(r, 1, 10)).toEqual({ ok: false, reason: 'key_revoked' })
      expect(await f.store.reserve(input(hash, 1))).toEqual({ ok: false, reason: 'key_revoked' })
      // The live reservation still settles normally.
      expect(await f.store.settle(r, 40)).toEqual({ chargedMicros: 40, alreadySettled: false })
      expect(await f.period(hash, 'daily')).toEqual({ spent: 40, held: 0 })
    })

    it('a lowered limit refuses the next reserve and extend; raising or removing it admits again', async () => {
      const hash = await f.newKey({ limits: { daily: 1_000 } })
      const r = await f.reserved(hash, 500)
      await f.admin.setBudget(hash, { limits: { daily: 400 } })
      expect(await f.store.extend(r, 1, 10)).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily', limitMicros: 400, spentMicros: 500, heldMicros: 500 })
      expect(await f.store.reserve(input(hash, 0, { minMicros: 0, maxMicros: 10 }))).toMatchObject({ ok: false, window: 'daily' })
      await f.admin.setBudget(hash, { limits: { daily: 600 } })
      expect(await f.store.extend(r, 1, 500)).toEqual({ ok: true, grantedMicros: 100 })
      await f.admin.setBudget(hash, { limits: { daily: 0 } })
      expect(await f.store.extend(r, 1, 5_000)).toEqual({ ok: true, grantedMicros: 5_000 })
      await f.admin.setBudget(hash, { limits: { minute: 10 } })
      expect(await f.store.reserve(input(hash, 11))).toMatchObject({ ok: false, window: 'minute' })
    })

    it('a provider removed from the key refuses extend', async () => {
      const hash = await f.newKey({}, ['openai', 'mistral'])
      const r = await f.reserved(hash, 100, { provider: 'mistral' })
      await f.raw.setProviders(hash, 'openai')
      expect(await f.store.extend(r, 1, 1)).toEqual({ ok: false, reason: 'provider_not_allowed' })
    })

    it('a lowered session default refuses extend', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100, { session: { id: 'agent', budgetMicros: 1_000, maxSteps: null } })
      expect((await f.store.extend(r, 100, 100)).ok).toBe(true)
      await f.admin.setBudget(hash, { sessionBudgetMicros: 250 })
      expect(await f.store.extend(r, 100, 100)).toEqual({ ok: false, reason: 'session_budget_exceeded', limitMicros: 250, spentMicros: 200, heldMicros: 200 })
      expect(await f.store.extend(r, 10, 100)).toEqual({ ok: true, grantedMicros: 50 })
    })

    it('a deleted key refuses extend', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      await f.raw.deleteKey(hash)
      expect(await f.store.extend(r, 1, 1)).toEqual({ ok: false, reason: 'invalid_key' })
    })
  })
})
