import { setFlagsFromString } from 'node:v8'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { BudgetStore, Reservation } from '../../src/budget/types.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The Redis store's turn flush, optimized on the lines a warm-up gives (one item, a few), keeps its optimized code on a
// line longer than one call takes (64): a turn's pile-up under load met a path with no feedback, a deoptimization.
setFlagsFromString('--allow-natives-syntax')
/* eslint-disable @typescript-eslint/no-implied-eval -- V8's intrinsics */
const prepare = new Function('f', '%PrepareFunctionForOptimization(f)') as (f: () => void) => void
const optimizeOnNextCall = new Function('f', '%OptimizeFunctionOnNextCall(f)') as (f: () => void) => void
const optimizationStatus = new Function('f', 'return %GetOptimizationStatus(f)') as (f: () => void) => number
/* eslint-enable @typescript-eslint/no-implied-eval */
/** V8's status bits (src/runtime/runtime.h, OptimizationStatus): optimized, by TurboFan. */
const OPTIMIZED = 1 << 4
const TURBOFANNED = 1 << 6

describe("redis store: a turn's flush and a line past one call", () => {
  let server: TestStore
  let f: BudgetFixture
  let store: BudgetStore
  let hash: string

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server, { redisLayout: 'string' })
    // Every call of the key after its first batch waits for its turn's end: each turn's line is flushed.
    store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: 60_000 })
    hash = await f.newKey({ limits: { daily: 1_000_000_000 } })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  let n = 0
  /** `count` reserves of the key issued in one turn, then their settles in one turn. */
  async function turn(count: number): Promise<void> {
    const results = await Promise.all(Array.from({ length: count }, () => store.reserve(input(hash, 10, { requestId: `flush-${n++}` }))))
    const reservations = results.map((r) => {
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      return r.reservation
    }) as Reservation[]
    const settled = await Promise.all(reservations.map((r) => store.settle(r, 5)))
    expect(settled.every((s) => s.chargedMicros === 5 && !s.alreadySettled)).toBe(true)
  }

  it('keeps its optimized code', async () => {
    await turn(3)
    // The flush, as the store queues it for the turn's end.
    const queued = vi.spyOn(globalThis, 'setImmediate')
    let flushTurn: (() => void) | undefined
    try {
      await turn(1)
      flushTurn = queued.mock.calls.map(([callback]) => callback).find((callback) => callback.name === 'flushTurn') as (() => void) | undefined
    } finally {
      queued.mockRestore()
    }
    expect(flushTurn).toBeDefined()
    const flush = flushTurn as () => void
    prepare(flush)
    // What a warm-up gives: lone lines and short ones.
    for (let i = 0; i < 20; i++) await turn(i % 2 === 0 ? 1 : 8)
    optimizeOnNextCall(flush)
    await turn(2)
    const warm = optimizationStatus(flush)
    expect(warm & OPTIMIZED && warm & TURBOFANNED).toBeTruthy()
    // A pile-up: 130 reserves and settles in one turn (64, 64, then one alone).
    await turn(130)
    const after = optimizationStatus(flush)
    expect(after & OPTIMIZED && after & TURBOFANNED).toBeTruthy()
  })
})
