import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { BudgetStore, Reservation } from '../../src/budget/types.js'
import { reserveInput } from '../support/budget-fixture.js'
import { openSqliteStack, type SqliteStack } from '../support/sqlite-stack.js'

// A transaction reads each period row once (period-reads.ts): a write to periods within the same group commit
// must reach the reserves queued after it, or they would be admitted past the limit.
describe('embedded store: period rows read once a transaction', () => {
  let stack: SqliteStack
  let store: BudgetStore
  let hash: string
  let nowMs = Date.UTC(2026, 4, 4, 12, 0, 30)

  beforeEach(async () => {
    nowMs = Date.UTC(2026, 4, 4, 12, 0, 30)
    stack = await openSqliteStack('period-reads', { limits: { daily: 1_000 } }, () => nowMs)
    ;({ store, hash } = stack)
  })
  afterEach(() => stack.close())

  const held = async (micros: number, extra = {}): Promise<Reservation> => {
    const r = await store.reserve(reserveInput(hash, micros, extra))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    return r.reservation
  }

  it('sees an extend of the same commit', async () => {
    const r = await held(400)
    const [a, extended, b] = await Promise.all([store.reserve(reserveInput(hash, 100)), store.extend(r, 300, 300), store.reserve(reserveInput(hash, 300))])
    expect(a.ok).toBe(true)
    expect(extended).toEqual({ ok: true, grantedMicros: 300 })
    expect(b).toMatchObject({ ok: false, reason: 'budget_exceeded', spentMicros: 800 })
  })

  it('sees a settle of the same commit booked outside its minute statement (a session)', async () => {
    const r = await held(100, { session: { id: 's1', budgetMicros: null, maxSteps: null } })
    const [a, settled, b] = await Promise.all([store.reserve(reserveInput(hash, 100)), store.settle(r, 600), store.reserve(reserveInput(hash, 350))])
    expect(a.ok).toBe(true)
    expect(settled).toEqual({ chargedMicros: 600, alreadySettled: false })
    expect(b).toMatchObject({ ok: false, reason: 'budget_exceeded', spentMicros: 700 })
  })

  it('sees the holds written early when the minute turns within the commit', async () => {
    nowMs = Date.UTC(2026, 4, 4, 12, 0, 59, 999)
    const a = store.reserve(reserveInput(hash, 400))
    nowMs += 1
    const b = store.reserve(reserveInput(hash, 400))
    const c = store.reserve(reserveInput(hash, 300))
    expect((await a).ok).toBe(true)
    expect((await b).ok).toBe(true)
    expect(await c).toMatchObject({ ok: false, reason: 'budget_exceeded', spentMicros: 800 })
  })
})
