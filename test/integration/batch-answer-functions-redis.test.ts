import { sep } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { BudgetStore, Reservation, ReserveResult, SettleResult } from '../../src/budget/types.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The Redis store's queued calls and its batches' answers make no function of their own per call or per batch: V8 keeps
// a function's optimized code only while one such function lives, so a quiet period's full collection dropped the
// code of an executor or a `.then` callback made per call, and the next burst compiled it again.
// Where the store's own code lives (in a stack trace, whatever the platform's path separator).
const STORE_DIR = ['src', 'budget', 'redis', ''].join(sep)

describe("redis store: a turn's queued calls and batch answers make no function per call", () => {
  let server: TestStore
  let f: BudgetFixture
  let store: BudgetStore
  let hash: string
  let n = 0

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server, { redisLayout: 'string' })
    // Every call of the key after its first batch waits for its turn's end.
    store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: 60_000 })
    hash = await f.newKey({ limits: { daily: 1_000_000_000 } })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  const reserveOne = (): Promise<ReserveResult> => store.reserve(input(hash, 10, { requestId: `fn-${n++}` }))
  const held = (results: ReserveResult[]): Reservation[] =>
    results.map((r) => {
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      return r.reservation
    })

  /** The executors of the promises made while `calls` runs (the store's own, synchronously: nothing is sent yet). */
  function executorsOf<T>(calls: () => T): { made: T; executors: unknown[] } {
    const executors: unknown[] = []
    const Native = Promise
    class Recording<R> extends Native<R> {
      constructor(executor: (resolve: (value: R) => void, reject: (reason?: unknown) => void) => void) {
        executors.push(executor)
        super(executor)
      }
    }
    vi.stubGlobal('Promise', Recording)
    try {
      return { made: calls(), executors }
    } finally {
      vi.unstubAllGlobals()
    }
  }

  it('a queued reserve and a queued settle each take the one executor made once', async () => {
    // A first batch: the key's reserves and settles wait for the turn's end from here on.
    const first = held(await Promise.all([reserveOne(), reserveOne()]))
    await Promise.all(first.map((r) => store.settle(r, 5)))

    const reserves = executorsOf(() => [reserveOne(), reserveOne()])
    expect(reserves.executors).toHaveLength(2)
    expect(reserves.executors[0]).toBe(reserves.executors[1])
    const reservations = held(await Promise.all(reserves.made))

    const settles = executorsOf(() => reservations.map((r) => store.settle(r, 5)))
    expect(settles.executors).toHaveLength(2)
    expect(settles.executors[0]).toBe(settles.executors[1])
    const settled: SettleResult[] = await Promise.all(settles.made)
    expect(settled.every((s) => s.chargedMicros === 5 && !s.alreadySettled)).toBe(true)
  })

  it("a batch's answer is checked and handed on with no callback made for it", async () => {
    // The test runner has taken this test's promise by now (it did so at the first await).
    await Promise.resolve()
    // Every callback the Redis store's code hands to a promise meanwhile, recorded by a plain wrapper (a spy's own
    // promises would recurse). Only calls with the store's files on the stack count: the test runner hands its own
    // callbacks meanwhile too (its task-update flush, under load).
    const handed: unknown[] = []
    const byStore = (): boolean => (new Error().stack ?? '').includes(STORE_DIR)
    const then = Promise.prototype.then
    Promise.prototype.then = function (this: Promise<unknown>, ...callbacks: unknown[]) {
      if (byStore()) handed.push(...callbacks)
      return Reflect.apply(then, this, callbacks) as Promise<unknown>
    } as typeof then
    // And to an array's every (the replies' checks).
    const every = Array.prototype.every
    Array.prototype.every = function (this: unknown[], ...args: unknown[]) {
      if (byStore()) handed.push(args[0])
      return Reflect.apply(every, this, args) as boolean
    } as typeof every
    const settled: SettleResult[] = []
    try {
      for (let turn = 0; turn < 2; turn++) {
        const reservations = held(await Promise.all([reserveOne(), reserveOne(), reserveOne()]))
        settled.push(...(await Promise.all(reservations.map((r) => store.settle(r, 5)))))
      }
    } finally {
      Promise.prototype.then = then
      Array.prototype.every = every
    }
    // Promise.all's and a promise's own resolve functions are V8's; a JavaScript callback would be one made here.
    const made = handed.filter((fn) => typeof fn === 'function' && !Function.prototype.toString.call(fn).includes('[native code]')).map(String)
    expect(settled.map((s) => s.chargedMicros)).toEqual([5, 5, 5, 5, 5, 5])
    expect(made).toEqual([])
  })
})
