import { describe, expect, it } from 'vitest'
import { dayExpiresAt } from '../../src/budget/history.js'
import { dayKey } from '../../src/budget/redis/redis-keys.js'
import { type BudgetFixture } from '../support/budget-fixture.js'
import { STORE_KINDS, type TestStore } from '../support/stores.js'
import { useBudgetFixture } from '../support/budget-stack.js'

/** Spend history (issue 11): booked by settle itself, per UTC day, kept 400 days, read zero-filled and oldest first. */
describe.each(STORE_KINDS)('%s store: spend history', (kind) => {
  let server: TestStore
  let f: BudgetFixture

  useBudgetFixture(kind, (started) => ({ server, f } = started))

  it('books what settle charges on the UTC day of the settlement, once per request id', async () => {
    f.clock.set('2026-05-02T23:59:59.000Z')
    const hash = await f.newKey({ limits: { daily: 50_000_000 } })
    const a = await f.reserved(hash, 1_000_000)
    await f.store.settle(a, 400_000)
    await f.store.settle(a, 400_000) // idempotent: not booked twice
    // Reserved on the 2nd, settled on the 3rd: booked on the day it was charged.
    const b = await f.reserved(hash, 1_000_000)
    f.clock.set('2026-05-03T00:00:01.000Z')
    await f.store.settle(b, 250_000)
    // A release (settle at 0) and an abandon book nothing.
    await f.store.settle(await f.reserved(hash, 1_000_000), 0)
    f.clock.set('2026-05-04T12:00:00.000Z')
    const c = await f.reserved(hash, 1_000_000, { requestId: 'abandoned-1' })
    await f.store.abandon(hash, c.requestId)
    await f.store.settle(await f.reserved(hash, 1_000_000), 125)

    expect(await f.admin.history(hash, 4)).toEqual([
      { date: '2026-05-01', spentMicros: 0 },
      { date: '2026-05-02', spentMicros: 400_000 },
      { date: '2026-05-03', spentMicros: 250_000 },
      { date: '2026-05-04', spentMicros: 125 },
    ])
    expect(await f.admin.history(hash, 1)).toEqual([{ date: '2026-05-04', spentMicros: 125 }])
    expect((await f.admin.history(hash, 400))?.length).toBe(400)
  })

  it('keeps a day for 400 days after it ends, then lets it go', async () => {
    f.clock.set('2026-01-10T08:00:00.000Z')
    const hash = await f.newKey({ limits: { daily: 50_000_000 } })
    await f.store.settle(await f.reserved(hash, 1_000), 1_000)
    if (kind === 'redis') {
      // EXPIREAT is absolute: the counter lives until 400 days after its day ends.
      const expireAt = Number(await f.redis.call('EXPIRETIME', dayKey(hash, '2026-01-10')))
      expect(expireAt * 1000).toBe(Date.parse('2027-02-15T00:00:00.000Z'))
      return
    }
    f.clock.set('2027-02-14T23:59:00.000Z') // day 400 after 2026-01-10 ends
    expect((await f.admin.history(hash, 400))?.[0]).toEqual({ date: '2026-01-11', spentMicros: 0 })
    f.clock.set('2027-02-13T12:00:00.000Z')
    expect((await f.admin.history(hash, 400))?.[0]).toEqual({ date: '2026-01-10', spentMicros: 1_000 })
    f.clock.set('2027-02-15T00:00:00.000Z')
    const db = new (await import('node:sqlite')).DatabaseSync(server.dbPath as string)
    try {
      const row = db.prepare("SELECT expires_at FROM periods WHERE hash = ? AND win = '#day'").get(hash) as { expires_at: number }
      expect(row.expires_at).toBe(Date.parse('2027-02-15T00:00:00.000Z'))
    } finally {
      db.close()
    }
  })

  it('answers null for an unknown key and refuses a day count outside 1..400', async () => {
    expect(await f.admin.history('0'.repeat(64), 7)).toBeNull()
    const hash = await f.newKey({ limits: { daily: 1 } })
    await expect(f.admin.history(hash, 0)).rejects.toThrow(RangeError)
    await expect(f.admin.history(hash, 401)).rejects.toThrow(RangeError)
  })
})

/** The Redis store's day counters: settle.lua tells each counter's expiry from its date. */
describe('redis store: spend history counters', () => {
  let f: BudgetFixture

  useBudgetFixture('redis', (started) => ({ f } = started))

  it('the settle that creates a day\'s counter gives it the day\'s expiry, whatever settled before', async () => {
    f.clock.set('2026-03-01T23:59:00.000Z')
    const hash = await f.newKey({ limits: { daily: 50_000_000 } })
    await f.store.settle(await f.reserved(hash, 1_000), 0)
    await f.store.settle(await f.reserved(hash, 1_000), 10)
    await f.store.settle(await f.reserved(hash, 1_000), 20)
    f.clock.set('2026-03-02T00:00:30.000Z')
    await f.store.settle(await f.reserved(hash, 1_000), 5)
    for (const [date, expiry] of [['2026-03-01', '2027-04-06'], ['2026-03-02', '2027-04-07']] as const) {
      expect(Number(await f.redis.call('EXPIRETIME', dayKey(hash, date))) * 1000, date).toBe(Date.parse(`${expiry}T00:00:00.000Z`))
    }
    expect(await f.admin.history(hash, 2)).toEqual([{ date: '2026-03-01', spentMicros: 30 }, { date: '2026-03-02', spentMicros: 5 }])
  })

  it('gives every day\'s counter the expiry of its date: month ends, leap days, the turn of a year', async () => {
    const dates = ['2026-01-01', '2026-02-28', '2026-03-01', '2026-12-31', '2027-01-31', '2028-02-29', '2028-03-01', '2100-02-28', '2100-03-01']
    for (const date of dates) {
      f.clock.set(`${date}T12:00:00.000Z`)
      const hash = await f.newKey({ limits: { daily: 50_000_000 } })
      await f.store.settle(await f.reserved(hash, 1_000), 7)
      expect(Number(await f.redis.call('EXPIRETIME', dayKey(hash, date))) * 1000, date).toBe(dayExpiresAt(Date.parse(`${date}T12:00:00.000Z`)))
    }
  })
})
