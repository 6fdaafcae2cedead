import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

/** The admin read of live sessions (the dashboard's "current sessions"), on both stores. */
describe.each(STORE_KINDS)('%s store: sessions read', (kind) => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore(kind)
    f = await createBudgetFixture(server, { sessionTtlSeconds: 600 })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  it('shows each live session with spend, hold, steps and limits; one key or every key; expired ones gone', async () => {
    f.clock.set('2026-05-04T12:00:00.000Z')
    const a = await f.newKey({ limits: { daily: 10_000_000 }, sessionMaxSteps: 9 })
    const b = await f.newKey({ limits: { daily: 10_000_000 } })
    const first = await f.reserved(a, 1_000, { session: { id: 'run-1', budgetMicros: 500_000, maxSteps: null } })
    await f.store.settle(first, 700)
    await f.reserved(a, 2_000, { session: { id: 'run-1', budgetMicros: null, maxSteps: null } })
    await f.reserved(a, 10, { session: { id: 'run-2', budgetMicros: null, maxSteps: 3 } })
    await f.reserved(b, 10, { session: { id: 'other', budgetMicros: null, maxSteps: null } })
    await f.reserved(a, 10) // no session: not listed

    expect(await f.admin.sessions(a)).toEqual([
      { hash: a, id: 'run-1', spentMicros: 700, heldMicros: 2_000, steps: 2, budgetMicros: 500_000, maxSteps: 9 },
      { hash: a, id: 'run-2', spentMicros: 0, heldMicros: 10, steps: 1, budgetMicros: null, maxSteps: 3 },
    ])
    const all = await f.admin.sessions(null)
    expect(all.map((s) => `${s.hash === a ? 'a' : 'b'}:${s.id}`).sort()).toEqual(['a:run-1', 'a:run-2', 'b:other'])
    expect(await f.admin.sessions('0'.repeat(64))).toEqual([])

    await f.raw.setSessionTtl(a, 'run-2', 0)
    if (kind === 'sqlite') f.clock.advance(1) // a row at its expiry counts as gone, as an expired Redis key
    expect((await f.admin.sessions(a)).map((s) => s.id)).toEqual(['run-1'])
  })
})
