import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { script } from '../../src/budget/redis/script-command.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { LoopCheckSource, ReserveInput, ReserveResult } from '../../src/budget/types.js'
import { createLoopCheck } from '../../src/loop/check.js'
import type { LoopFingerprint } from '../../src/loop/types.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

// A request's loop check given as a source (what the pipeline gives): each store computes its fingerprint only when a
// limit may be in force, and a memory of "guard off" never admits a request unchecked once a limit is in force.

const hex = (n: number): string => n.toString(16).padStart(16, '0')
const fp = (conversation: number, step: number): LoopFingerprint => ({ conversation: hex(conversation), step: hex(step) })

describe.each(STORE_KINDS)('%s store: a loop check\'s fingerprint is computed only when a limit may be in force', (kind) => {
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

  /** Fingerprints computed by the sources `source` made. */
  let computed = 0
  /** A new source of `fingerprint`'s check (scoped by `sessionId`), counting its computation in `computed`. */
  const source = (fingerprint: LoopFingerprint, sessionId: string | null = null): LoopCheckSource =>
    createLoopCheck(() => {
      computed++
      return fingerprint
    }, sessionId)

  /** Reserves each input at once (on Redis the first is sent alone, the rest in the turn's call), then settles the admitted. */
  async function together(inputs: ReserveInput[]): Promise<(string | true)[]> {
    const results = await Promise.all(inputs.map((x) => f.store.reserve(x)))
    for (const r of results) if (r.ok) await f.store.settle(r.reservation, r.reservation.reservedMicros)
    return results.map((r) => (r.ok ? true : r.reason))
  }
  const sequential = async (x: ReserveInput): Promise<string | true> => (await together([x]))[0] as string | true

  it('the key\'s guard off: no fingerprint computed, alone or together, and each admitted', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 0 })
    computed = 0
    for (let i = 0; i < 4; i++) expect(await sequential(input(hash, 10, { loop: source(fp(1, 1)) }))).toBe(true)
    for (let round = 0; round < 3; round++) {
      expect(await together([0, 1, 2, 3].map(() => input(hash, 10, { loop: source(fp(1, 1)) })))).toEqual([true, true, true, true])
    }
    expect(computed).toBe(0)
    expect(await f.period(hash, 'daily')).toEqual({ spent: 16 * 10, held: 0 })
  })

  it('the guard in force: each fingerprint computed once and counted, alone or together', async () => {
    f.clock.set('2026-05-04T12:01:30.000Z')
    const hash = await f.newKey({ loopLimit: 1 })
    computed = 0
    // Limit 1: one repeat passes, the next is refused.
    expect(await sequential(input(hash, 10, { loop: source(fp(2, 1)) }))).toBe(true)
    expect(await sequential(input(hash, 10, { loop: source(fp(2, 1)) }))).toBe(true)
    expect(await sequential(input(hash, 10, { loop: source(fp(2, 1)) }))).toBe('loop_detected')
    expect(computed).toBe(3)
    expect(await together([1, 2, 3].map(() => input(hash, 10, { loop: source(fp(2, 1)) })))).toEqual(['loop_detected', 'loop_detected', 'loop_detected'])
    expect(computed).toBe(6)
  })

  it('the guard switched on after requests found it off: the first request after the switch is checked and refused', async () => {
    f.clock.set('2026-05-04T12:02:30.000Z')
    const lone = await f.newKey({ loopLimit: 1 })
    const batched = await f.newKey({ loopLimit: 1 })
    for (const hash of [lone, batched]) {
      // The step repeated twice: over the limit of 1.
      for (let i = 0; i < 2; i++) expect(await sequential(input(hash, 10, { loop: source(fp(3, 1)) }))).toBe(true)
      await f.admin.setBudget(hash, { loopLimit: 0 })
    }
    // A memory of the guard in force lasts its minute on Redis (or until a batch's reply finds it off): the next one.
    f.clock.advance(60_000)
    for (const hash of [lone, batched]) {
      // Off: admitted unchecked, alone and together.
      computed = 0
      expect(await sequential(input(hash, 10, { loop: source(fp(3, 1)) }))).toBe(true)
      expect(await together([1, 2, 3].map(() => input(hash, 10, { loop: source(fp(3, 1)) })))).toEqual([true, true, true])
      expect(computed).toBe(0)
      await f.admin.setBudget(hash, { loopLimit: 1 })
    }
    // On again, within the minute whose requests found it off: checked at once.
    expect(await sequential(input(lone, 10, { loop: source(fp(3, 1)) }))).toBe('loop_detected')
    expect(await together([1, 2, 3].map(() => input(batched, 10, { loop: source(fp(3, 1)) })))).toEqual(['loop_detected', 'loop_detected', 'loop_detected'])
    // A new step on the key is recorded again: one repeat passes, the next is refused.
    expect(await sequential(input(lone, 10, { loop: source(fp(3, 2)) }))).toBe(true)
    expect(await sequential(input(lone, 10, { loop: source(fp(3, 2)) }))).toBe(true)
    expect(await sequential(input(lone, 10, { loop: source(fp(3, 2)) }))).toBe('loop_detected')
    expect(computed).toBe(7)
  })

  it('a session\'s loop limit on a key whose guard is off: checked, whether this request asks it or the session has it', async () => {
    f.clock.set('2026-05-04T12:03:30.000Z')
    const hash = await f.newKey({ loopLimit: 0 })
    // The key's memory: the guard off (on Redis a batch's reply says so).
    expect(await together([1, 2, 3].map(() => input(hash, 10, { loop: source(fp(4, 9)) })))).toEqual([true, true, true])
    computed = 0
    const asks = { id: 'sess-a', budgetMicros: null, maxSteps: null, loopLimit: 1 }
    const has = { id: 'sess-a', budgetMicros: null, maxSteps: null }
    expect(await sequential(input(hash, 10, { session: asks, loop: source(fp(4, 1), 'sess-a') }))).toBe(true)
    // Without the header the session keeps its limit of 1.
    expect(await sequential(input(hash, 10, { session: has, loop: source(fp(4, 1), 'sess-a') }))).toBe(true)
    expect(await sequential(input(hash, 10, { session: has, loop: source(fp(4, 1), 'sess-a') }))).toBe('loop_detected')
    expect(await sequential(input(hash, 10, { session: asks, loop: source(fp(4, 1), 'sess-a') }))).toBe('loop_detected')
    expect(computed).toBe(4)
    // The key's other requests stay unchecked: a session's limit is the session's alone.
    expect(await together([1, 2, 3].map(() => input(hash, 10, { loop: source(fp(4, 1)) })))).toEqual([true, true, true])
    expect(computed).toBe(4)
  })

  it('a source that finds no conversation: no check, whatever the guard', async () => {
    f.clock.set('2026-05-04T12:04:30.000Z')
    const hash = await f.newKey({ loopLimit: 1 })
    const none = () => createLoopCheck(() => null, null)
    for (let i = 0; i < 4; i++) expect(await sequential(input(hash, 10, { loop: none() }))).toBe(true)
    expect(await together([1, 2, 3].map(() => input(hash, 10, { loop: none() })))).toEqual([true, true, true])
  })

  it('a fingerprint that throws with a limit in force fails its request alone (nothing held), alone or together', async () => {
    f.clock.set('2026-05-04T12:06:30.000Z')
    const hash = await f.newKey({ loopLimit: 1 })
    const broken = () => createLoopCheck(() => {
      throw new Error('unreadable body')
    }, null)
    // The key's guard found in force.
    expect(await sequential(input(hash, 10, { loop: source(fp(6, 1)) }))).toBe(true)
    await expect(f.store.reserve(input(hash, 10, { loop: broken() }))).rejects.toThrow('unreadable body')
    const results = await Promise.allSettled([source(fp(6, 2)), broken(), source(fp(6, 3))].map((loop) => f.store.reserve(input(hash, 10, { loop }))))
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    for (const r of results) if (r.status === 'fulfilled' && r.value.ok) await f.store.settle(r.value.reservation, 10)
    expect(await f.period(hash, 'daily')).toEqual({ spent: 30, held: 0 })
  })

  // Redis only: reserve.lua's asked check (the embedded store decides by the key's row, with no second call).
  if (kind === 'redis') {
    it('redis: a check asked without its scope and step is answered loop_needed, sent again with them and booked as one sent so', async () => {
      f.clock.set('2026-05-04T12:05:30.000Z')
      const reserveScript = script('reserve')
      const hash = await f.newKey({ loopLimit: 3 })
      /** The reserve.lua calls `run` sent: each one's last argument. */
      const lastArgs = async (run: () => Promise<unknown>): Promise<unknown[]> => {
        const send = vi.spyOn(f.redis, 'sendCommand')
        try {
          await run()
          return send.mock.calls.map(([command]) => command.args as unknown[]).filter((args) => args[0] === reserveScript.sha || args[0] === reserveScript.lua).map((args) => String(args[args.length - 1]))
        } finally {
          send.mockRestore()
        }
      }
      computed = 0
      const results: ReserveResult[] = []
      const reserveOne = async () => {
        results.push(await f.store.reserve(input(hash, 10, { loop: source(fp(5, 1)) })))
      }
      // The key's guard not yet found in force in this minute: asked ('?'), answered loop_needed, sent with the step and time.
      const first = await lastArgs(reserveOne)
      expect(first).toHaveLength(2)
      expect(first[0]).toBe('?')
      expect(Number(first[1])).toBe(f.clock.now())
      // Found in force since: sent with its check at once.
      expect(await lastArgs(reserveOne)).toEqual([String(f.clock.now())])
      expect(computed).toBe(2)
      const [a, b] = results as [Extract<ReserveResult, { ok: true }>, Extract<ReserveResult, { ok: true }>]
      expect(a.ok && b.ok).toBe(true)
      // The step's first request is not booked; its second (one other in flight) is, and its settle ends it.
      expect(a.reservation.bookedKeys).toHaveLength(5)
      expect(b.reservation.bookedKeys).toHaveLength(6)
      expect(b.reservation.bookedKeys[5]).toMatch(new RegExp(`:loop:c:${hex(5)}#\\d+#${hex(1)}$`))
      await f.store.settle(a.reservation, 10)
      await f.store.settle(b.reservation, 10)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 20, held: 0 })
      // One reserve observed once, sent again or not (metrics count reserves, not script calls).
      const store = createBudgetStore(f.redis, { now: () => f.clock.now() })
      const observed: [string, boolean][] = []
      store.observeCalls((op, _started, failed) => observed.push([op, failed]))
      const fresh = await f.newKey({ loopLimit: 3 })
      const sent = await lastArgs(async () => {
        for (let i = 0; i < 2; i++) expect((await store.reserve(input(fresh, 10, { loop: source(fp(5, 2)) }))).ok).toBe(true)
      })
      expect(sent).toHaveLength(3)
      expect(observed).toEqual([['reserve', false], ['reserve', false]])
    })
  }
})
