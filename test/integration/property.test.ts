import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WINDOW_NAMES, type Reservation, type WindowName } from '../../src/budget/types.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
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

  type Op =
    | { kind: 'reserve'; min: number; extra: number; session: boolean }
    | { kind: 'extend'; pick: number; min: number; extra: number }
    | { kind: 'settle'; pick: number; percent: number }
    | { kind: 'advance'; seconds: number }

  const amount = fc.integer({ min: 0, max: 400 })
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('reserve' as const), min: amount, extra: amount, session: fc.boolean() }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('extend' as const), pick: fc.nat(), min: fc.integer({ min: 0, max: 100 }), extra: amount }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('settle' as const), pick: fc.nat(), percent: fc.integer({ min: 0, max: 100 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('advance' as const), seconds: fc.integer({ min: 1, max: 90 }) }) },
  )
  // 0 would remove the limit (CONTRACT §3), so limits start at 1.
  const limit = fc.option(fc.integer({ min: 1, max: 3_000 }), { nil: undefined })
  const scenario = fc.record({
    limits: fc.record({ minute: limit, hourly: limit, daily: limit, weekly: limit, monthly: limit }),
    sessionBudget: fc.option(fc.integer({ min: 0, max: 2_000 }), { nil: null }),
    // Batches run concurrently inside, one after another outside: random interleavings.
    batches: fc.array(fc.array(op, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 12 }),
  })

  /** What must be in Redis: per booked key, the sum of live holds and of charges. */
  class Model {
    readonly live: Reservation[] = []
    readonly held = new Map<string, number>()
    readonly spent = new Map<string, number>()
    readonly windowOf = new Map<string, WindowName | 'session'>()

    add(r: Reservation): void {
      this.live.push(r)
      r.bookedKeys.forEach((k, i) => this.windowOf.set(k, WINDOW_NAMES[i] ?? 'session'))
      this.bump(this.held, r, r.reservedMicros)
    }
    grow(r: Reservation, by: number): void {
      this.bump(this.held, r, by)
    }
    settle(r: Reservation, heldBefore: number, charged: number): void {
      this.live.splice(this.live.indexOf(r), 1)
      this.bump(this.held, r, -heldBefore)
      this.bump(this.spent, r, charged)
    }
    private bump(map: Map<string, number>, r: Reservation, by: number): void {
      for (const k of r.bookedKeys) map.set(k, (map.get(k) ?? 0) + by)
    }
  }

  async function checkStore(hash: string, model: Model, limits: Partial<Record<WindowName, number>>, sessionBudget: number | null): Promise<void> {
    for (const [key, window] of model.windowOf) {
      const { spent, held } = (await f.raw.booked(hash, key)) ?? { spent: 0, held: 0 }
      expect(held).toBeGreaterThanOrEqual(0)
      expect(held).toBe(model.held.get(key) ?? 0)
      expect(spent).toBe(model.spent.get(key) ?? 0)
      const cap = window === 'session' ? sessionBudget : limits[window]
      if (cap != null) expect(spent + held).toBeLessThanOrEqual(cap)
    }
  }

  describe('random interleavings of reserve, extend and settle', () => {
    it('never exceed a limit, never hold a negative amount, and release every hold once all is settled', async () => {
      await fc.assert(
        fc.asyncProperty(scenario, async ({ limits, sessionBudget, batches }) => {
          f.clock.set('2026-05-04T12:00:30.000Z')
          const hash = await f.newKey({ limits: Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)) })
          const model = new Model()
          const sessionId = randomUUID()

          for (const batch of batches) {
            const busy = new Set<Reservation>()
            const pick = (n: number): Reservation | null => {
              const free = model.live.filter((r) => !busy.has(r))
              const r = free.length === 0 ? null : (free[n % free.length] as Reservation)
              if (r !== null) busy.add(r)
              return r
            }
            const running: Promise<void>[] = []
            for (const o of batch) {
              if (o.kind === 'advance') {
                f.clock.advance(o.seconds * 1_000)
              } else if (o.kind === 'reserve') {
                running.push(
                  f.store
                    .reserve({
                      keyHash: hash,
                      provider: 'openai',
                      requestId: randomUUID(),
                      minMicros: o.min,
                      maxMicros: o.min + o.extra,
                      session: o.session ? { id: sessionId, budgetMicros: sessionBudget, maxSteps: null } : null,
                    })
                    .then((r) => {
                      if (!r.ok) return
                      expect(r.reservation.reservedMicros).toBeGreaterThanOrEqual(o.min)
                      expect(r.reservation.reservedMicros).toBeLessThanOrEqual(o.min + o.extra)
                      model.add(r.reservation)
                    }),
                )
              } else if (o.kind === 'extend') {
                const r = pick(o.pick)
                if (r !== null) {
                  running.push(
                    f.store.extend(r, o.min, o.min + o.extra).then((result) => {
                      if (result.ok) model.grow(r, result.grantedMicros)
                    }),
                  )
                }
              } else {
                const r = pick(o.pick)
                if (r !== null) {
                  const held = r.reservedMicros
                  const actual = Math.floor((held * o.percent) / 100)
                  running.push(f.store.settle(r, actual).then(() => model.settle(r, held, actual)))
                }
              }
            }
            await Promise.all(running)
            await checkStore(hash, model, limits, sessionBudget)
          }

          for (const r of [...model.live]) {
            const held = r.reservedMicros
            expect(await f.store.settle(r, held)).toEqual({ chargedMicros: held, alreadySettled: false })
            model.settle(r, held, held)
          }
          await checkStore(hash, model, limits, sessionBudget)
          for (const key of model.windowOf.keys()) expect((await f.raw.booked(hash, key))?.held ?? 0).toBe(0)
        }),
        { numRuns: 30, interruptAfterTimeLimit: 20_000 },
      )
    })
  })
})
