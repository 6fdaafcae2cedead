import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

// reserve answers what the tightest limited window or the session has left after its hold (the
// X-Loopers-Budget-Remaining-USD header), in the same call.
describe.each(STORE_KINDS)('%s store: remaining budget', (kind) => {
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

  it('is the tightest limited window after this hold, holds and settled spend counted', async () => {
    const hash = await f.newKey({ limits: { daily: 1_000, monthly: 5_000 } })
    expect((await f.reserved(hash, 300)).remainingMicros).toBe(700)
    const second = await f.reserved(hash, 200)
    expect(second.remainingMicros).toBe(500)
    await f.store.settle(second, 50)
    expect((await f.reserved(hash, 100)).remainingMicros).toBe(550)
    // A tighter minute window becomes the one reported.
    await f.admin.setBudget(hash, { limits: { minute: 600 } })
    expect((await f.reserved(hash, 100)).remainingMicros).toBe(600 - 300 - 200 - 100 - 100 + 150)
  })

  it('is the session when it has less left, and exactly 0 when the grant takes the rest', async () => {
    const hash = await f.newKey({ limits: { daily: 10_000 } })
    const session = { id: 'remaining-1', budgetMicros: 400, maxSteps: null }
    expect((await f.reserved(hash, 150, { session })).remainingMicros).toBe(250)
    const r = await f.store.reserve(input(hash, 0, { session, minMicros: 1, maxMicros: 1_000 }))
    expect(r.ok && r.reservation).toMatchObject({ reservedMicros: 250, remainingMicros: 0 })
  })

  it('is null when nothing is limited (an --unlimited key without a session budget)', async () => {
    const hash = await f.newKey()
    expect((await f.reserved(hash, 100)).remainingMicros).toBeNull()
    void kind
  })
})
