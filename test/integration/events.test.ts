import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EVENTS_KEPT, type BudgetEvent } from '../../src/budget/events.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

/** Recent refusals and cut-offs (issue 11): in the store, newest first, bounded to the last 1,000. */
describe.each(STORE_KINDS)('%s store: recent events', (kind) => {
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

  const event = (i: number, extra: Partial<BudgetEvent> = {}): BudgetEvent => ({
    time: new Date(Date.UTC(2026, 4, 4, 12, 0, 0, i)),
    kind: 'refusal',
    keyHashPrefix: 'abcdef01',
    provider: 'openai',
    reason: 'budget_exceeded',
    window: 'daily',
    ...extra,
  })

  it('returns what was recorded, newest first, up to the limit asked', async () => {
    await f.admin.recordEvent(event(1))
    await f.admin.recordEvent(event(2, { kind: 'cutoff', provider: 'anthropic', window: null, reason: 'session_budget_exceeded' }))
    expect(await f.admin.recentEvents(10)).toEqual([
      event(2, { kind: 'cutoff', provider: 'anthropic', window: null, reason: 'session_budget_exceeded' }),
      event(1),
    ])
    expect(await f.admin.recentEvents(1)).toHaveLength(1)
  })

  it(`keeps only the newest ${EVENTS_KEPT}`, async () => {
    for (let i = 0; i < EVENTS_KEPT + 5; i++) await f.admin.recordEvent(event(100 + i))
    const all = await f.admin.recentEvents(EVENTS_KEPT + 50)
    expect(all).toHaveLength(EVENTS_KEPT)
    expect(all[0]).toEqual(event(100 + EVENTS_KEPT + 4))
    expect(all.at(-1)).toEqual(event(105))
  })
})
