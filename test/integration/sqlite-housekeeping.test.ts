import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startHousekeeping } from '../../src/budget/sqlite/housekeeping.js'
import { createDb, type Db } from '../../src/budget/sqlite/database.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The embedded store's clean-up: expired periods, sessions and reservation records go, live ones stay,
// and no request does the work (a sweep runs on its own connection, in bounded batches).
let server: TestStore
let f: BudgetFixture
let db: Db

beforeAll(async () => {
  server = await startTestStore('sqlite')
  f = await createBudgetFixture(server, { sessionTtlSeconds: 60 })
  db = createDb(server.dbPath!)
})
afterAll(async () => {
  db?.close()
  await f?.close()
  await server?.stop()
})

describe('embedded store housekeeping', () => {
  it('deletes what has expired and keeps what is live, a batch at a time', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey()
    const settledOld = await f.reserved(hash, 10, { session: { id: 'old', budgetMicros: null, maxSteps: null } })
    await f.store.settle(settledOld, 10)
    // Many more rows than one batch, all in the same periods and one session.
    for (let i = 0; i < 600; i++) await f.store.settle(await f.reserved(hash, 1), 1)
    const held = await f.reserved(hash, 5)

    // 40 days on: the periods (ends + a day), the session (60 s idle) and the settled records (a day) expired.
    f.clock.advance(40 * 86_400_000)
    const live = await f.reserved(hash, 7, { session: { id: 'new', budgetMicros: null, maxSteps: null } })
    const sweeper = startHousekeeping(db, f.clock.now, 3_600_000)
    try {
      // One sweep looks at one batch per table: not all 602 records go at once.
      const first = sweeper.sweep()
      expect(first).toBeGreaterThan(0)
      expect(first).toBeLessThan(600)
      let removed = first
      for (let i = 0; i < 10; i++) removed += sweeper.sweep()
      // 5 old periods, 1 old session, 601 settled records and the old hold's record (its periods expired).
      expect(removed).toBe(5 + 1 + 601 + 1)
      expect(await f.raw.reservation(hash, held.requestId)).toBeNull()
      expect(await f.session(hash, 'old')).toEqual({})
      // What is live stays: the new reservation, its periods and its session.
      expect(await f.raw.reservation(hash, live.requestId)).toEqual({ state: 'held' })
      expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 7 })
      expect(await f.session(hash, 'new')).toMatchObject({ steps: '1', held: '7' })
    } finally {
      sweeper.stop()
    }
  })
})
