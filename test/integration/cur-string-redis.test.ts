import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { curKey } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES, type Reservation, type WindowName } from '../../src/budget/types.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The string layout's current periods ('<spent> <held>' of each window, the minute's requests, the period ids): the
// scripts read the five held as one text while they are equal (nearly always) and write back each text that did not
// change as they read it. Each window's own spent, and its own held once they differ (holds booked before a window
// turned), must come out exactly as reckoned one by one.

type Counts = Record<WindowName, { spent: number; held: number }>

describe('redis store, string layout: each window\'s spent and held through reserve and settle', () => {
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

  async function counts(hash: string): Promise<Counts> {
    const out = {} as Counts
    for (const w of WINDOW_NAMES) out[w] = await f.period(hash, w)
    return out
  }

  /** `spent` of each window, minute to monthly, and the same `held` in every one. */
  function each(spent: number[], held: number[]): Counts {
    return Object.fromEntries(WINDOW_NAMES.map((w, i) => [w, { spent: spent[i] as number, held: held[i] as number }])) as Counts
  }

  /** A key with a daily limit whose windows have spent 5, 55, 1155, 1155, 1155 (minute to monthly). */
  async function spentApart(daily: number): Promise<string> {
    const hash = await f.newKey({ limits: { daily } })
    f.clock.set('2026-05-04T12:00:30.000Z')
    await f.store.settle(await f.reserved(hash, 1_000), 400)
    f.clock.set('2026-05-04T12:01:10.000Z')
    await f.store.settle(await f.reserved(hash, 2_000), 700)
    f.clock.set('2026-05-04T13:00:05.000Z')
    await f.store.settle(await f.reserved(hash, 100), 50)
    f.clock.set('2026-05-04T13:01:05.000Z')
    await f.store.settle(await f.reserved(hash, 100), 5)
    expect(await counts(hash)).toEqual(each([5, 55, 1_155, 1_155, 1_155], [0, 0, 0, 0, 0]))
    return hash
  }

  it('several in flight, reserved and settled one at a time: each window keeps its own spent, all hold the same', async () => {
    const hash = await spentApart(10_000_000)
    const a = await f.reserved(hash, 300)
    const b = await f.reserved(hash, 500)
    expect(await counts(hash)).toEqual(each([5, 55, 1_155, 1_155, 1_155], [800, 800, 800, 800, 800]))
    const c = await f.reserved(hash, 700)
    expect(await counts(hash)).toEqual(each([5, 55, 1_155, 1_155, 1_155], [1_500, 1_500, 1_500, 1_500, 1_500]))
    await f.store.settle(b, 450)
    expect(await counts(hash)).toEqual(each([455, 505, 1_605, 1_605, 1_605], [1_000, 1_000, 1_000, 1_000, 1_000]))
    await f.store.settle(a, 0)
    expect(await counts(hash)).toEqual(each([455, 505, 1_605, 1_605, 1_605], [700, 700, 700, 700, 700]))
    // More than its hold: the provider's bill is charged as it is.
    await f.store.settle(c, 1_000)
    expect(await counts(hash)).toEqual(each([1_455, 1_505, 2_605, 2_605, 2_605], [0, 0, 0, 0, 0]))
    // The minute's requests: spentApart's last and these three.
    expect((await f.redis.get(curKey(hash)))?.split(' ')[10]).toBe('4')
  })

  it('a limited window is checked against its own spent while others are in flight, to the micro', async () => {
    const hash = await spentApart(10_000)
    const held = await f.reserved(hash, 1_000)
    // The day has 10,000 - 1,155 spent - 1,000 held = 7,845 left; the minute has spent far less.
    expect(await f.store.reserve(input(hash, 7_846))).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily' })
    const last = await f.reserved(hash, 7_845)
    expect(await counts(hash)).toEqual(each([5, 55, 1_155, 1_155, 1_155], [8_845, 8_845, 8_845, 8_845, 8_845]))
    await f.store.settle(held, 1_000)
    await f.store.settle(last, 7_845)
    expect(await counts(hash)).toEqual(each([8_850, 8_900, 10_000, 10_000, 10_000], [0, 0, 0, 0, 0]))
  })

  it('holds in flight across a minute\'s turn: each window keeps its own held, alone and batched', async () => {
    const hash = await f.newKey({ limits: { daily: 10_000_000 } })
    f.clock.set('2026-05-04T14:00:59.500Z')
    const x = await f.reserved(hash, 100)
    f.clock.set('2026-05-04T14:01:00.500Z')
    // The new minute holds only what was reserved in it.
    const y = await f.reserved(hash, 200)
    expect(await counts(hash)).toEqual(each([0, 0, 0, 0, 0], [200, 300, 300, 300, 300]))
    const z = await f.reserved(hash, 400)
    const w = await f.reserved(hash, 800)
    expect(await counts(hash)).toEqual(each([0, 0, 0, 0, 0], [1_400, 1_500, 1_500, 1_500, 1_500]))
    await f.store.settle(y, 150)
    expect(await counts(hash)).toEqual(each([150, 150, 150, 150, 150], [1_200, 1_300, 1_300, 1_300, 1_300]))
    // Two of one turn: one settle-batch.lua call.
    await Promise.all([f.store.settle(z, 10), f.store.settle(w, 900)])
    expect(await counts(hash)).toEqual(each([1_060, 1_060, 1_060, 1_060, 1_060], [0, 100, 100, 100, 100]))
    await f.store.settle(x, 100)
    expect(await counts(hash)).toEqual(each([1_060, 1_160, 1_160, 1_160, 1_160], [0, 0, 0, 0, 0]))
    expect(await f.period(hash, 'minute', '2026-05-04T14:00:59.500Z')).toEqual({ spent: 100, held: 0 })
  })

  it('settles of one turn while all hold the same: each window\'s spent, and the hold left in flight', async () => {
    const hash = await spentApart(10_000_000)
    const rs: Reservation[] = []
    for (const micros of [100, 200, 300, 1_000]) rs.push(await f.reserved(hash, micros))
    await Promise.all(rs.slice(0, 3).map((r, i) => f.store.settle(r, [10, 0, 290][i] as number)))
    expect(await counts(hash)).toEqual(each([305, 355, 1_455, 1_455, 1_455], [1_000, 1_000, 1_000, 1_000, 1_000]))
    await f.store.settle(rs[3] as Reservation, 1)
    expect(await counts(hash)).toEqual(each([306, 356, 1_456, 1_456, 1_456], [0, 0, 0, 0, 0]))
  })

  it('a held below the hold settled (a string rewritten under it) is released to zero, never below', async () => {
    const hash = await f.newKey({ limits: { daily: 10_000_000 } })
    f.clock.set('2026-05-04T15:00:30.000Z')
    const r = await f.reserved(hash, 500)
    const text = await f.redis.get(curKey(hash)) as string
    await f.redis.set(curKey(hash), text.replace(/^0 500 0 500 0 500 0 500 0 500 /, '0 200 0 200 0 200 0 200 0 200 '), 'KEEPTTL')
    await f.store.settle(r, 50)
    expect(await counts(hash)).toEqual(each([50, 50, 50, 50, 50], [0, 0, 0, 0, 0]))
  })
})
