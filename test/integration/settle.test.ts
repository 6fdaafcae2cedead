import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { reservationKey, sessionKey } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES, type Reservation } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

const DAY = 86_400

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

  describe('settle', () => {
    it('charges the actual cost and refunds the rest of the hold', async () => {
      const hash = await f.newKey({ limits: { daily: 1_000 } })
      const r = await f.reserved(hash, 800)
      expect(await f.store.settle(r, 300)).toEqual({ chargedMicros: 300, alreadySettled: false })
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w)).toEqual({ spent: 300, held: 0 })
      expect((await f.store.reserve(input(hash, 700))).ok).toBe(true)
    })

    it('charges once when settled twice, even with a different amount', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 500)
      expect(await f.store.settle(r, 400)).toEqual({ chargedMicros: 400, alreadySettled: false })
      expect(await f.store.settle(r, 400)).toEqual({ chargedMicros: 400, alreadySettled: true })
      expect(await f.store.settle(r, 999)).toEqual({ chargedMicros: 400, alreadySettled: true })
      expect(await f.period(hash, 'daily')).toEqual({ spent: 400, held: 0 })
    })

    it('charges once under concurrent settles of the same request', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 500)
      const results = await Promise.all(Array.from({ length: 20 }, () => f.store.settle(r, 123)))
      expect(results.filter((s) => !s.alreadySettled)).toHaveLength(1)
      expect(await f.period(hash, 'hourly')).toEqual({ spent: 123, held: 0 })
    })

    it('charges the full actual when the provider billed more than was held, and held never goes negative', async () => {
      const hash = await f.newKey({ limits: { daily: 1_000 } })
      const r = await f.reserved(hash, 100)
      expect(await f.store.settle(r, 250)).toEqual({ chargedMicros: 250, alreadySettled: false })
      expect(await f.period(hash, 'daily')).toEqual({ spent: 250, held: 0 })
    })

    it('releases only what its own reservation holds (other holds stay)', async () => {
      const hash = await f.newKey()
      const a = await f.reserved(hash, 100)
      await f.reserved(hash, 40)
      await f.store.settle(a, 0)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 40 })
    })

    it('releases the amount recorded in Redis, including extensions the caller did not see', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      const stale: Reservation = { ...r, bookedKeys: r.bookedKeys }
      expect((await f.store.extend(r, 50, 50)).ok).toBe(true)
      await f.store.settle(stale, 10)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 10, held: 0 })
    })

    it('without a reservation record, charges the actual and tombstones the id', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      await f.raw.deleteReservation(hash, r.requestId)
      expect(await f.store.settle(r, 30)).toEqual({ chargedMicros: 30, alreadySettled: false })
      expect(await f.period(hash, 'daily')).toEqual({ spent: 30, held: 100 })
      await expect(f.store.reserve(input(hash, 1, { requestId: r.requestId }))).rejects.toBeInstanceOf(StoreUnavailableError)
    })

    it('refuses to extend a settled reservation (a fault, not a refusal)', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      await f.store.settle(r, 100)
      await expect(f.store.extend(r, 1, 1)).rejects.toBeInstanceOf(StoreUnavailableError)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 100, held: 0 })
    })
  })

  describe('record lifetimes', () => {
    it('keeps a held record 35 days, also when extended, and a settled one a day', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      expect(await f.raw.reservationTtl(hash, r.requestId)).toBeGreaterThanOrEqual(35 * DAY - 5)
      expect(await f.store.extend(r, 50, 50)).toEqual({ ok: true, grantedMicros: 50 })
      expect(await f.raw.reservationTtl(hash, r.requestId)).toBeGreaterThanOrEqual(35 * DAY - 5)
      await f.store.settle(r, 120)
      expect(await f.raw.reservationTtl(hash, r.requestId)).toBeGreaterThan(DAY - 5)
      expect(await f.raw.reservationTtl(hash, r.requestId)).toBeLessThanOrEqual(DAY)
    })

    // Redis's record layout: defined for the Redis store only.

    if (kind === 'redis') it('rewrites a settled Redis record small: only state and charged, one short string', async () => {
      const hash = await f.newKey()
      // A session id of 96 characters makes the held record long.
      const id = 'compact-'.repeat(12)
      const r = await f.reserved(hash, 100, { session: { id, budgetMicros: null, maxSteps: null } })
      const key = reservationKey(hash, r.requestId)
      expect(await f.redis.get(key)).toMatch(new RegExp(` s:${id}$`))
      await f.store.settle(r, 80)
      expect(await f.redis.get(key)).toBe('settled 80')
      expect(await f.redis.object('ENCODING', key)).toBe('embstr')
      expect(await f.raw.reservationTtl(hash, r.requestId)).toBeGreaterThan(DAY - 5)
      expect(await f.store.settle(r, 90)).toEqual({ chargedMicros: 80, alreadySettled: true })
    })

    // Redis's record layout: defined for the Redis store only.

    if (kind === 'redis') it('does not recreate a Redis session that expired before the settle, and books one that holds nothing', async () => {
      const hash = await f.newKey()
      const at = new Date(f.clock.now()).toISOString()
      const session = (id: string) => ({ session: { id, budgetMicros: null, maxSteps: null } })
      // Expired with a hold to release, and expired with its record gone too (nothing to release).
      const gone = await f.reserved(hash, 100, session('gone'))
      const bare = await f.reserved(hash, 100, session('bare'))
      await f.redis.del(sessionKey(hash, 'gone'), sessionKey(hash, 'bare'))
      await f.raw.deleteReservation(hash, bare.requestId)
      expect(await f.store.settle(gone, 80)).toEqual({ chargedMicros: 80, alreadySettled: false })
      expect(await f.store.settle(bare, 30)).toEqual({ chargedMicros: 30, alreadySettled: false })
      expect(await f.redis.exists(sessionKey(hash, 'gone'), sessionKey(hash, 'bare'))).toBe(0)
      // A live session that holds none of its reservation any more is still charged, and holds nothing.
      const kept = await f.reserved(hash, 100, session('kept'))
      await f.redis.hset(sessionKey(hash, 'kept'), 'held', '0')
      expect(await f.store.settle(kept, 50)).toEqual({ chargedMicros: 50, alreadySettled: false })
      const s = await f.session(hash, 'kept')
      expect([Number(s.held ?? 0), s.spent, s.steps]).toEqual([0, '50', '1'])
      expect(await f.period(hash, 'daily', at)).toEqual({ spent: 160, held: 100 })
    })

    it('a settle repeated within the day answers already and charges once', async () => {
      const hash = await f.newKey()
      const at = new Date(f.clock.now()).toISOString()
      const r = await f.reserved(hash, 500)
      expect(await f.store.settle(r, 400)).toEqual({ chargedMicros: 400, alreadySettled: false })
      f.clock.advance(23 * 3_600_000)
      expect(await f.store.settle(r, 400)).toEqual({ chargedMicros: 400, alreadySettled: true })
      expect(await f.period(hash, 'daily', at)).toEqual({ spent: 400, held: 0 })
    })

    it('refuses a late reserve with a settled id as a duplicate', async () => {
      const hash = await f.newKey()
      const at = new Date(f.clock.now()).toISOString()
      const r = await f.reserved(hash, 100)
      await f.store.settle(r, 100)
      f.clock.advance(3_600_000)
      await expect(f.store.reserve(input(hash, 10, { requestId: r.requestId }))).rejects.toBeInstanceOf(StoreUnavailableError)
      expect(await f.period(hash, 'daily', at)).toEqual({ spent: 100, held: 0 })
    })
  })

  describe('abandon', () => {
    it('releases a held reservation (settles it at 0)', async () => {
      const hash = await f.newKey({ limits: { daily: 100 } })
      const r = await f.reserved(hash, 100)
      await f.store.abandon(hash, r.requestId)
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w)).toEqual({ spent: 0, held: 0 })
      expect(await f.store.settle(r, 80)).toEqual({ chargedMicros: 0, alreadySettled: true })
      expect((await f.store.reserve(input(hash, 100))).ok).toBe(true)
    })

    it('releases a session hold too', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 70, { session: { id: 's1', budgetMicros: 100, maxSteps: null } })
      await f.store.abandon(hash, r.requestId)
      const s = await f.session(hash, 's1')
      expect([Number(s.held), Number(s.spent ?? 0), Number(s.steps)]).toEqual([0, 0, 1])
    })

    it('tombstones an unknown request id so a late reserve with it is refused', async () => {
      const hash = await f.newKey()
      const id = randomUUID()
      await f.store.abandon(hash, id)
      await expect(f.store.reserve(input(hash, 10, { requestId: id }))).rejects.toBeInstanceOf(StoreUnavailableError)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 0 })
      // The tombstone lives a day (it only has to outlast a late reserve, seconds), not a hold's 35 days.
      expect(await f.raw.reservationTtl(hash, id)).toBeGreaterThan(DAY - 5)
      expect(await f.raw.reservationTtl(hash, id)).toBeLessThanOrEqual(DAY)
    })

    it('is harmless after a settle and when repeated', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      await f.store.settle(r, 60)
      await f.store.abandon(hash, r.requestId)
      await f.store.abandon(hash, r.requestId)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 60, held: 0 })
    })

    it('a hold that is never settled stays held (no early expiry of the reservation)', async () => {
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      expect(await f.raw.reservation(hash, r.requestId)).toEqual({ state: 'held' })
      for (const key of r.bookedKeys) expect(await f.raw.bookedTtl(hash, key)).toBeLessThan(await f.raw.reservationTtl(hash, r.requestId))
    })
  })
})
