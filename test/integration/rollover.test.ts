import { afterAll, beforeAll, describe, expect, it } from 'vitest'
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

  describe('window rollover (injected clock)', () => {
    it('spend in one minute does not count in the next; settling after rollover books into the original minute', async () => {
      f.clock.set('2026-05-04T12:00:30.000Z')
      const hash = await f.newKey({ limits: { minute: 100 } })
      const first = await f.reserved(hash, 100)
      expect(await f.store.reserve(input(hash, 1))).toMatchObject({ ok: false, window: 'minute' })

      f.clock.set('2026-05-04T12:01:05.000Z')
      const second = await f.reserved(hash, 100)
      expect(await f.store.settle(first, 60)).toEqual({ chargedMicros: 60, alreadySettled: false })
      expect(await f.period(hash, 'minute', '2026-05-04T12:00:00.000Z')).toEqual({ spent: 60, held: 0 })
      expect(await f.period(hash, 'minute')).toEqual({ spent: 0, held: 100 })
      // The hour holds both requests.
      expect(await f.period(hash, 'hourly')).toEqual({ spent: 60, held: 100 })

      f.clock.set('2026-05-04T12:02:00.000Z')
      await f.store.settle(second, 100)
      expect(await f.period(hash, 'minute', '2026-05-04T12:01:59.999Z')).toEqual({ spent: 100, held: 0 })
      expect(await f.period(hash, 'minute')).toEqual({ spent: 0, held: 0 })
    })

    it('an extension after rollover grows the hold in the periods the reservation was booked in', async () => {
      f.clock.set('2026-05-04T12:00:59.000Z')
      const hash = await f.newKey({ limits: { minute: 150 } })
      const r = await f.reserved(hash, 100)
      f.clock.set('2026-05-04T12:01:01.000Z')
      expect(await f.store.extend(r, 1, 100)).toEqual({ ok: true, grantedMicros: 50 })
      expect(await f.period(hash, 'minute', '2026-05-04T12:00:00.000Z')).toEqual({ spent: 0, held: 150 })
      expect(await f.period(hash, 'minute')).toEqual({ spent: 0, held: 0 })
      const refused = await f.store.extend(r, 1, 1)
      expect(refused).toMatchObject({ ok: false, window: 'minute' })
      expect(refused.ok === false && refused.resetsAt?.toISOString()).toBe('2026-05-04T12:02:00.000Z')
    })

    it.each([
      ['hourly', '2026-05-04T12:59:59.000Z', '2026-05-04T13:00:00.000Z'],
      ['daily', '2026-05-04T23:59:59.000Z', '2026-05-05T00:00:00.000Z'],
      ['weekly', '2027-01-03T23:59:59.000Z', '2027-01-04T00:00:00.000Z'],
      ['monthly', '2026-05-31T23:59:59.999Z', '2026-06-01T00:00:00.000Z'],
    ] as const)('%s: a full period refuses until it resets, then admits again', async (window, before, after) => {
      f.clock.set(before)
      const hash = await f.newKey({ limits: { [window]: 500 } })
      const r = await f.reserved(hash, 500)
      const refused = await f.store.reserve(input(hash, 1))
      expect(refused).toMatchObject({ ok: false, window })
      expect(refused.ok === false && refused.resetsAt?.toISOString()).toBe(after)
      f.clock.set(after)
      expect((await f.store.reserve(input(hash, 500))).ok).toBe(true)
      await f.store.settle(r, 500)
      expect(await f.period(hash, window, before)).toEqual({ spent: 500, held: 0 })
      expect(await f.period(hash, window)).toEqual({ spent: 0, held: 500 })
    })

    it('a settlement that finds its period key expired recreates it with a TTL', async () => {
      f.clock.set('2026-05-04T12:00:00.000Z')
      const hash = await f.newKey()
      const r = await f.reserved(hash, 100)
      const minuteKey = r.bookedKeys[0] as string
      await f.raw.deleteBooked(hash, minuteKey)
      await f.store.settle(r, 70)
      expect(await f.raw.booked(hash, minuteKey)).toEqual({ spent: 70, held: 0 })
      expect(await f.raw.bookedTtl(hash, minuteKey)).toBeGreaterThan(0)
    })
  })
})
