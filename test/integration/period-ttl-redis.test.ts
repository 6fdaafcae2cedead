import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Reservation, WindowName } from '../../src/budget/types.js'
import { WINDOW_NAMES } from '../../src/budget/types.js'
import { periodOf } from '../../src/budget/windows.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// Every period key on Redis must carry a TTL, though only the first admitted request of a minute sets
// them (every period starts on a minute boundary); a key found missing by settle or extend is recreated
// with one, and a key that lost its TTL gets it back from the next minute's first request.

describe('redis store, hash layout: period key TTLs', () => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server, { redisLayout: 'hash' })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  /** The TTL reserve sets: the period's length plus a day of grace. */
  const fullTtl = (window: WindowName): number => {
    const p = periodOf(window, f.clock.now())
    return (p.resetsAt.getTime() - p.start.getTime()) / 1000 + 86_400
  }

  async function reserved(hash: string, micros = 1): Promise<Reservation> {
    const r = await f.store.reserve(input(hash, micros))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    return r.reservation
  }

  /** Every booked period key has a TTL set by this minute's first request (at most `age` seconds ago). */
  async function expectFullTtls(r: Reservation, age = 5): Promise<void> {
    for (const [i, key] of r.bookedKeys.slice(0, 5).entries()) {
      const ttl = await f.redis.ttl(key)
      const want = fullTtl(WINDOW_NAMES[i] as WindowName)
      expect(ttl, key).toBeLessThanOrEqual(want)
      expect(ttl, key).toBeGreaterThan(want - age)
    }
  }

  async function expireCalls(): Promise<{ expire: number; ttl: number; set: number }> {
    const text = await f.redis.info('commandstats')
    const calls = (name: string): number => Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(text)?.[1] ?? 0)
    return { expire: calls('expire'), ttl: calls('ttl'), set: calls('set') }
  }

  it('the first admitted request of a minute sets all five, though refused requests came before it', async () => {
    f.clock.set('2026-05-04T12:59:30.000Z')
    const hash = await f.newKey({ limits: { minute: 100 }, rpm: 2 })
    expect(await f.store.reserve(input(hash, 200))).toMatchObject({ ok: false, reason: 'budget_exceeded' })
    const first = await reserved(hash, 40)
    await expectFullTtls(first)
    // A new hour: every period but the day's, week's and month's is new, created by its minute's first request.
    f.clock.set('2026-05-04T13:00:00.000Z')
    expect(await f.store.reserve(input(hash, 200))).toMatchObject({ ok: false, reason: 'budget_exceeded' })
    const next = await reserved(hash, 40)
    await expectFullTtls(next)
    await reserved(hash, 40)
    expect(await f.store.reserve(input(hash, 1))).toMatchObject({ ok: false, reason: 'rate_limited' })
    f.clock.set('2026-05-04T13:01:00.000Z')
    await expectFullTtls(await reserved(hash, 40))
  })

  it('the first admitted request of a minute gives the month\'s period its length: 28, 29, 30 or 31 days', async () => {
    const instants = ['2026-02-10T08:00:00.000Z', '2028-02-29T23:59:00.000Z', '2100-02-01T00:00:00.000Z', '2000-02-15T12:00:00.000Z',
      '2026-04-30T23:59:59.999Z', '2026-11-01T00:00:00.000Z', '2026-12-31T23:59:30.000Z', '2027-01-01T00:00:00.000Z', '2026-07-15T10:00:00.000Z']
    for (const at of instants) {
      f.clock.set(at)
      const hash = await f.newKey({ limits: { daily: 1_000 } })
      await expectFullTtls(await reserved(hash, 1))
    }
  })

  it('the minute\'s later requests and their settlements set none and read none', async () => {
    f.clock.set('2026-05-04T14:00:10.000Z')
    const hash = await f.newKey()
    await f.redis.config('RESETSTAT')
    const first = await reserved(hash)
    await f.store.settle(first, 1)
    // The reservation record's TTL is set by both scripts, in the SET that writes it; the five periods' only by the
    // minute's first reserve.
    expect(await expireCalls()).toEqual({ expire: 5, ttl: 0, set: 2 })
    await f.redis.config('RESETSTAT')
    f.clock.advance(20_000)
    const later = await reserved(hash)
    await f.store.settle(later, 1)
    expect(await expireCalls()).toEqual({ expire: 0, ttl: 0, set: 2 })
    await expectFullTtls(later, 25)
  })

  it('a period key that lost its TTL gets it back from the next minute\'s first request', async () => {
    f.clock.set('2026-05-04T15:00:10.000Z')
    const hash = await f.newKey()
    const r = await reserved(hash)
    for (const key of r.bookedKeys.slice(1, 5)) await f.redis.persist(key)
    f.clock.set('2026-05-04T15:01:00.000Z')
    const next = await reserved(hash)
    expect(next.bookedKeys.slice(1, 5)).toEqual(r.bookedKeys.slice(1, 5))
    await expectFullTtls(next)
  })

  it('settle and extend give a TTL to every period key they find gone and recreate', async () => {
    f.clock.set('2026-05-04T16:00:10.000Z')
    const hash = await f.newKey()
    const settled = await reserved(hash)
    const extended = await reserved(hash)
    for (const key of settled.bookedKeys) await f.redis.del(key)
    await f.store.settle(settled, 7)
    for (const key of settled.bookedKeys) {
      expect(await f.redis.hget(key, 'spent'), key).toBe('7')
      expect(await f.redis.ttl(key), key).toBeGreaterThan(86_000)
    }
    for (const key of extended.bookedKeys) await f.redis.del(key)
    expect(await f.store.extend(extended, 3, 3)).toEqual({ ok: true, grantedMicros: 3 })
    for (const key of extended.bookedKeys) {
      expect(await f.redis.hget(key, 'held'), key).toBe('3')
      expect(await f.redis.ttl(key), key).toBeGreaterThan(86_000)
    }
  })

  it('settle clamps a hold that shrank below the reservation at zero, and leaves none where there was none', async () => {
    f.clock.set('2026-05-04T17:00:10.000Z')
    const hash = await f.newKey()
    const r = await reserved(hash, 100)
    const [minute, hourly, daily, weekly, monthly] = r.bookedKeys as [string, string, string, string, string]
    await f.redis.hset(minute, 'held', '40')
    await f.redis.hset(hourly, 'held', '0')
    await f.redis.hdel(daily, 'held')
    await f.redis.del(weekly)
    await f.store.settle(r, 30)
    expect(await f.redis.hmget(minute, 'held', 'spent')).toEqual(['0', '30'])
    expect(await f.period(hash, 'hourly')).toEqual({ spent: 30, held: 0 })
    expect(await f.redis.hmget(daily, 'held', 'spent')).toEqual([null, '30'])
    expect(await f.redis.hmget(weekly, 'held', 'spent')).toEqual([null, '30'])
    expect(await f.redis.ttl(weekly)).toBeGreaterThan(86_000)
    expect(await f.redis.hmget(monthly, 'held', 'spent')).toEqual(['0', '30'])
    // A release finds nothing to charge: a key gone meanwhile is not recreated.
    const released = await reserved(hash, 100)
    await f.redis.del(monthly)
    await f.store.settle(released, 0)
    expect(await f.redis.exists(monthly)).toBe(0)
    expect(await f.redis.hmget(minute, 'held', 'spent')).toEqual(['0', '30'])
  })
})
