import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checksScopeSize, DEFAULT_LOOP_LIMIT, loopScope, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE } from '../../src/loop/rule.js'
import type { LoopFingerprint } from '../../src/loop/types.js'
import type { Reservation, ReserveInput, ReserveResult } from '../../src/budget/types.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { createLoopReference } from '../support/loop-reference.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

// The loop rule of src/loop/README.md inside each store's reserve call, compared with the reference.

const hex = (n: number): string => n.toString(16).padStart(16, '0')
const fp = (conversation: number, step: number): LoopFingerprint => ({ conversation: hex(conversation), step: hex(step) })

/** A small deterministic PRNG, so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let x = seed
  return () => {
    x = (x * 1_103_515_245 + 12_345) % 2_147_483_648
    return x / 2_147_483_648
  }
}

describe.each(STORE_KINDS)('%s store: loop guard', (kind) => {
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

  const loopOf = (fingerprint: LoopFingerprint, sessionId: string | null) => ({ scope: loopScope(sessionId, fingerprint), step: fingerprint.step })

  /** One request of a sequential client: reserved, then (when admitted) settled at its reservation before the next. */
  async function sequential(reserve: ReserveInput): Promise<ReserveResult> {
    const result = await f.store.reserve(reserve)
    if (result.ok) await f.store.settle(result.reservation, result.reservation.reservedMicros)
    return result
  }

  it('lets the default limit of repeats through and refuses the next one, naming the step; nothing is held for it', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey()
    const request = fp(1, 7)
    for (let i = 0; i <= DEFAULT_LOOP_LIMIT; i++) expect((await sequential(input(hash, 10, { loop: loopOf(request, null) }))).ok).toBe(true)
    const refused = await sequential(input(hash, 10, { loop: loopOf(request, null) }))
    expect(refused).toEqual({ ok: false, reason: 'loop_detected', step: request.step, count: DEFAULT_LOOP_LIMIT + 1, limitCount: DEFAULT_LOOP_LIMIT })
    expect(await f.period(hash, 'daily')).toEqual({ spent: 10 * (DEFAULT_LOOP_LIMIT + 1), held: 0 })
    // Another conversation, another step, or no loop check: not counted together.
    expect((await sequential(input(hash, 10, { loop: loopOf(fp(2, 7), null) }))).ok).toBe(true)
    expect((await sequential(input(hash, 10, { loop: loopOf(fp(1, 8), null) }))).ok).toBe(true)
    expect((await sequential(input(hash, 10))).ok).toBe(true)
    // The window counts from the step's first sighting: after it the loop may run again.
    f.clock.advance(600_000)
    expect((await sequential(input(hash, 10, { loop: loopOf(request, null) }))).ok).toBe(true)
  })

  it('--loop-limit and --loop-window bite on the next reserve; 0 turns the guard off', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 1, loopWindowSeconds: 5 })
    const loop = loopOf(fp(3, 3), null)
    expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true)
    expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true)
    expect(await sequential(input(hash, 1, { loop }))).toMatchObject({ reason: 'loop_detected', count: 2, limitCount: 1 })
    f.clock.advance(5_000)
    expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true)
    expect((await f.admin.setBudget(hash, { loopLimit: 0 }))?.loopLimit).toBe(0)
    for (let i = 0; i < 30; i++) expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true)
    // Off records nothing: turned back on, the step goes on from its count while the guard was on (1).
    await f.admin.setBudget(hash, { loopLimit: 1 })
    expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true)
    expect(await sequential(input(hash, 1, { loop }))).toMatchObject({ reason: 'loop_detected', count: 2 })
  })

  it('a session header lowers the limit for the session, sticks even when refused, and never raises it', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 3 })
    const request = fp(4, 4)
    const session = (loopLimit: number | null) => ({ id: 'agent-1', budgetMicros: null, maxSteps: null, loopLimit })
    const loop = loopOf(request, 'agent-1')
    expect((await sequential(input(hash, 1, { session: session(1), loop }))).ok).toBe(true)
    expect((await sequential(input(hash, 1, { session: session(null), loop }))).ok).toBe(true)
    // Asking for 9 does not raise the session's 1.
    expect(await sequential(input(hash, 1, { session: session(9), loop }))).toMatchObject({ reason: 'loop_detected', limitCount: 1 })
    // A lowering to 0 sticks though this request is refused for budget: a fresh step may not repeat at all.
    await f.admin.setBudget(hash, { limits: { daily: 2 } })
    const other = loopOf(fp(4, 5), 'agent-1')
    expect(await sequential(input(hash, 5, { session: session(0), loop: other }))).toMatchObject({ reason: 'budget_exceeded' })
    await f.admin.setBudget(hash, { limits: { daily: 0 } })
    expect((await sequential(input(hash, 1, { session: session(null), loop: other }))).ok).toBe(true)
    expect(await sequential(input(hash, 1, { session: session(null), loop: other }))).toMatchObject({ reason: 'loop_detected', count: 1, limitCount: 0 })
    // The same step in another session is its own scope, under the key's limit.
    const elsewhere = { id: 'agent-2', budgetMicros: null, maxSteps: null }
    for (let i = 0; i < 4; i++) expect((await sequential(input(hash, 1, { session: elsewhere, loop: loopOf(request, 'agent-2') }))).ok).toBe(true)
    expect(await sequential(input(hash, 1, { session: elsewhere, loop: loopOf(request, 'agent-2') }))).toMatchObject({ reason: 'loop_detected' })
  })

  it('1,000 concurrent requests of one step are all admitted and count as two; then sequential repeats count', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 24 })
    const loop = loopOf(fp(5, 5), null)
    const results = await Promise.all(Array.from({ length: 1_000 }, () => f.store.reserve(input(hash, 1, { loop }))))
    expect(results.filter((r) => r.ok)).toHaveLength(1_000)
    await Promise.all(results.map((r) => (r.ok ? f.store.settle(r.reservation, 1) : null)))
    // The first two counted (the second may have been a client's next request while the first settled), the
    // rest were in flight together. None in flight now: each sequential request counts; 23 reach the limit.
    for (let i = 0; i < 23; i++) expect((await sequential(input(hash, 1, { loop }))).ok, `repeat ${i + 3}`).toBe(true)
    expect(await sequential(input(hash, 1, { loop }))).toMatchObject({ reason: 'loop_detected', count: 25, limitCount: 24 })
    expect(await f.period(hash, 'daily')).toEqual({ spent: 1_023, held: 0 })
  })

  it('a request in flight ends exactly once; held by a dead process, it stops counting only until the window ends', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 3 })
    const loop = loopOf(fp(6, 6), null)
    const held = async (): Promise<Reservation> => {
      const r = await f.store.reserve(input(hash, 1, { loop }))
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      return r.reservation
    }
    const a = await held() // counted: 1
    const b = await held() // one in flight: counted, 2
    const c = await held() // two in flight: not a repeat
    const d = await held()
    await f.store.settle(a, 0)
    await f.store.settle(a, 0) // a repeated settle ends nothing more
    await f.store.abandon(hash, b.requestId)
    const e = await held() // c and d in flight: not a repeat (had a counted twice, it would be: 3)
    for (const r of [c, d, e]) await f.store.settle(r, 0)
    expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true) // 3
    expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true) // 4
    expect(await sequential(input(hash, 1, { loop }))).toMatchObject({ reason: 'loop_detected', count: 4, limitCount: 3 })
    // A new window: two requests a dead process holds for ever keep the step from counting, until the window ends.
    f.clock.advance(600_000)
    await held()
    await held()
    for (let i = 0; i < 6; i++) expect((await sequential(input(hash, 1, { loop }))).ok, `request ${i}`).toBe(true)
    f.clock.advance(600_000)
    for (let i = 0; i < 4; i++) expect((await sequential(input(hash, 1, { loop }))).ok).toBe(true)
    expect(await sequential(input(hash, 1, { loop }))).toMatchObject({ reason: 'loop_detected', count: 4 })
  })

  it('every way a request ends takes it out of flight, so the next request counts as a repeat', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 2 })
    const ends: Array<[string, (r: Reservation) => Promise<unknown>]> = [
      ['abandon (a reserve call that timed out)', (r) => f.store.abandon(hash, r.requestId)],
      ['settle at 0 (an upstream error, a client gone before the answer)', (r) => f.store.settle(r, 0)],
      ['settle at the cost (completed, or cut at the budget)', (r) => f.store.settle(r, r.reservedMicros)],
    ]
    for (const [i, [how, end]] of ends.entries()) {
      const loop = loopOf(fp(7, i), null)
      const held = await Promise.all([f.store.reserve(input(hash, 1, { loop })), f.store.reserve(input(hash, 1, { loop }))])
      for (const r of held) {
        if (!r.ok) throw new Error(`${how}: refused ${r.reason}`)
        await end(r.reservation)
      }
      // Both ended: none in flight, so this one counts (3rd); had they stayed in flight, it would not.
      expect((await sequential(input(hash, 1, { loop }))).ok, how).toBe(true)
      expect(await sequential(input(hash, 1, { loop })), how).toMatchObject({ reason: 'loop_detected', count: 3, limitCount: 2 })
    }
  })

  it('agrees with the reference rule over a random mix of steps, sessions, lowerings, refusals, requests in flight and time', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 4, loopWindowSeconds: 30, limits: { daily: 1_000_000_000 } })
    const reference = createLoopReference(4, 30)
    const random = prng(kind === 'redis' ? 7 : 11)
    let refusedByLoop = 0
    let overlapped = 0
    const inFlight: Array<{ reservation: Reservation; end: () => void }> = []
    for (let i = 0; i < 600; i++) {
      f.clock.advance(Math.floor(random() * 400))
      // Requests in flight end now and then, in any order, by settle or abandon.
      while (inFlight.length > 0 && random() < 0.4) {
        const [done] = inFlight.splice(Math.floor(random() * inFlight.length), 1)
        if (done === undefined) break
        if (random() < 0.3) await f.store.abandon(hash, done.reservation.requestId)
        else await f.store.settle(done.reservation, 1)
        done.end()
      }
      const sessionId = random() < 0.5 ? `s${Math.floor(random() * 3)}` : null
      const sessionLimit = sessionId !== null && random() < 0.05 ? Math.floor(random() * 5) : null
      const fingerprint = fp(Math.floor(random() * 2), Math.floor(random() * 6))
      // Now and then another check refuses (an amount above the daily limit): nothing may be recorded then.
      const tooBig = random() < 0.1
      const stays = random() < 0.25
      const session = sessionId === null ? null : { id: sessionId, budgetMicros: null, maxSteps: null, loopLimit: sessionLimit }
      const got = await f.store.reserve(input(hash, tooBig ? 2_000_000_000 : 1, { session, loop: loopOf(fingerprint, sessionId) }))
      const want = reference.check({ fingerprint, sessionId, sessionLimit, nowMs: f.clock.now(), admitted: !tooBig, endsAtOnce: false })
      if (!want.ok) {
        refusedByLoop++
        expect(got, `request ${i}`).toMatchObject({ ok: false, reason: 'loop_detected', count: want.repeats, limitCount: want.limit })
      } else if (tooBig) expect(got, `request ${i}`).toMatchObject({ ok: false, reason: 'budget_exceeded' })
      else {
        if (!got.ok) throw new Error(`request ${i} refused: ${got.reason}`)
        if (inFlight.length > 0) overlapped++
        if (stays) inFlight.push({ reservation: got.reservation, end: want.end })
        else {
          await f.store.settle(got.reservation, 1)
          want.end()
        }
      }
    }
    expect(refusedByLoop).toBeGreaterThan(20)
    expect(overlapped).toBeGreaterThan(50)
  })

  it(`a scope keeps at most ${LOOP_STEPS_PER_SCOPE} steps, forgetting the oldest first`, async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 1 })
    const reference = createLoopReference(1, 600)
    for (let round = 0; round < 2; round++) {
      for (let step = 0; step < LOOP_STEPS_PER_SCOPE + 20; step++) {
        f.clock.advance(10)
        const fingerprint = fp(9, step)
        const want = reference.check({ fingerprint, sessionId: null, sessionLimit: null, nowMs: f.clock.now() })
        const got = await sequential(input(hash, 1, { loop: loopOf(fingerprint, null) }))
        expect(got.ok, `round ${round} step ${step}`).toBe(want.ok)
      }
    }
    // The newest step is remembered (its second repeat is refused); the oldest was forgotten (two more pass).
    const loop = (step: number) => ({ loop: loopOf(fp(9, step), null) })
    const newest = LOOP_STEPS_PER_SCOPE + 19
    expect((await sequential(input(hash, 1, loop(newest)))).ok).toBe(true)
    expect(await sequential(input(hash, 1, loop(newest)))).toMatchObject({ reason: 'loop_detected', count: 2 })
    expect((await sequential(input(hash, 1, loop(0)))).ok).toBe(true)
    expect((await sequential(input(hash, 1, loop(0)))).ok).toBe(true)
    expect(await sequential(input(hash, 1, loop(0)))).toMatchObject({ reason: 'loop_detected', count: 2 })
  })
  it(`a scope found past ${LOOP_STEPS_PER_SCOPE} steps is trimmed to its newest ${LOOP_STEPS_AFTER_TRIM} at once, not one step per request`, async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ loopLimit: 1 })
    const loop = (step: number) => ({ loop: loopOf(fp(10, step), null) })
    // Steps 0..271, each new: only step 256 (hex ...100) checks the size and finds 257 steps.
    for (let step = 0; step < LOOP_STEPS_PER_SCOPE + 16; step++) {
      f.clock.advance(10)
      expect((await sequential(input(hash, 1, loop(step)))).ok).toBe(true)
    }
    expect(checksScopeSize(fp(10, LOOP_STEPS_PER_SCOPE).step)).toBe(true)
    // The oldest 257 - 192 went: the last of them repeats as a new step (twice admitted), the first kept is remembered.
    const firstKept = LOOP_STEPS_PER_SCOPE + 1 - LOOP_STEPS_AFTER_TRIM
    expect((await sequential(input(hash, 1, loop(firstKept - 1)))).ok).toBe(true)
    expect((await sequential(input(hash, 1, loop(firstKept - 1)))).ok).toBe(true)
    expect((await sequential(input(hash, 1, loop(firstKept)))).ok).toBe(true)
    expect(await sequential(input(hash, 1, loop(firstKept)))).toMatchObject({ reason: 'loop_detected', count: 2 })
  })
})
