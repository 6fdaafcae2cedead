import { describe, expect, it } from 'vitest'
import { reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { STORE_KINDS } from '../support/stores.js'
import { useBudgetFixture } from '../support/budget-stack.js'

// `--rpm N`: at most N admitted requests per UTC minute per key, checked in the reserve call.
describe.each(STORE_KINDS)('%s store: request rate', (kind) => {
  let f: BudgetFixture

  useBudgetFixture(kind, (started) => ({ f } = started))

  it('--rpm 100 under 1,000 concurrent reserves admits exactly 100; the refused hold nothing', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ rpm: 100 })
    const results = await Promise.all(Array.from({ length: 1_000 }, () => f.store.reserve(input(hash, 10))))
    expect(results.filter((r) => r.ok)).toHaveLength(100)
    for (const r of results) {
      if (!r.ok) expect(r).toEqual({ ok: false, reason: 'rate_limited', limitCount: 100, count: 100, resetsAt: new Date('2026-05-04T12:01:00.000Z') })
    }
    expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 1_000 })
    expect((await f.admin.status(hash))?.minute.requests).toBe(100)
  })

  it('a new UTC minute starts over; 0 removes the limit; the limit bites on the next reserve', async () => {
    f.clock.set('2026-05-04T12:00:59.000Z')
    const hash = await f.newKey({ rpm: 2 })
    expect((await f.store.reserve(input(hash, 1))).ok).toBe(true)
    expect((await f.store.reserve(input(hash, 1))).ok).toBe(true)
    expect(await f.store.reserve(input(hash, 1))).toMatchObject({ ok: false, reason: 'rate_limited' })
    f.clock.set('2026-05-04T12:01:00.000Z')
    expect((await f.store.reserve(input(hash, 1))).ok).toBe(true)
    expect((await f.admin.status(hash))?.minute.requests).toBe(1)
    expect((await f.admin.setBudget(hash, { rpm: 0 }))?.rpm).toBeNull()
    for (let i = 0; i < 5; i++) expect((await f.store.reserve(input(hash, 1))).ok).toBe(true)
    expect((await f.admin.setBudget(hash, { rpm: 6 }))?.rpm).toBe(6)
    expect(await f.store.reserve(input(hash, 1))).toMatchObject({ ok: false, reason: 'rate_limited', count: 6 })
  })

  it('requests refused for budget do not use up the rate', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ rpm: 2, limits: { daily: 100 } })
    for (let i = 0; i < 5; i++) expect(await f.store.reserve(input(hash, 101))).toMatchObject({ reason: 'budget_exceeded' })
    expect((await f.store.reserve(input(hash, 50))).ok).toBe(true)
    expect((await f.store.reserve(input(hash, 50))).ok).toBe(true)
    expect(await f.store.reserve(input(hash, 0))).toMatchObject({ reason: 'rate_limited', count: 2 })
    void kind
  })
})
