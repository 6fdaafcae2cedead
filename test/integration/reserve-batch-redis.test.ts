import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { script } from '../../src/budget/redis/script-command.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import { curKey, loopKeyStart, recordKey, reservationKey } from '../../src/budget/redis/redis-keys.js'
import type { Reservation, ReserveInput, ReserveResult } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { loopCheckOf } from '../../src/loop/check.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The string layout's reserves of one key without a session: one goes to Redis at once when none of its key's is
// queued or unanswered (nor a settle of the key waiting for the turn's end); the others issued in that event-loop turn
// go as one reserve-batch.lua call, which admits each as reserve.lua would, in order, and leaves any other item to
// reserve.lua.

describe('redis store, string layout: a key\'s reserves of one turn in one call', () => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server, { redisLayout: 'string' })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  /** EVALSHA and EVAL calls Redis ran so far. */
  async function scriptCalls(): Promise<number> {
    const info = await f.redis.info('commandstats')
    let calls = 0
    for (const m of info.matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)) calls += Number(m[1])
    return calls
  }

  /** A new key of `change` whose current periods' string exists (a key's first reserve makes it, alone). */
  async function primedKey(change: Parameters<BudgetFixture['newKey']>[0] = {}): Promise<string> {
    const hash = await f.newKey(change)
    await f.store.settle(await f.reserved(hash, 1), 0)
    return hash
  }

  /**
   * Each result with its request id and key left out (they differ between two keys), a refusal by its reason (a left
   * item is answered after the call's admitted ones, so its figures are of a later state), and what is stored.
   */
  async function outcome(hash: string, inputs: ReserveInput[], results: PromiseSettledResult<ReserveResult>[]): Promise<unknown> {
    const answers = results.map((r) => {
      if (r.status === 'rejected') return (r.reason as Error).constructor.name
      if (!r.value.ok) return { ok: false, reason: r.value.reason }
      const { reservedMicros, remainingMicros, bookedKeys } = r.value.reservation
      return { reservedMicros, remainingMicros, booked: bookedKeys.map((k) => k.replace(hash, '<h>')) }
    })
    const records = []
    for (const i of inputs) records.push([await f.redis.get(reservationKey(hash, i.requestId)), await f.redis.ttl(reservationKey(hash, i.requestId))])
    // Each loop scope's steps (and its steps by age), and whether each lives.
    const loops = []
    for (const scope of new Set(inputs.flatMap((i) => loopCheckOf(i)?.scope ?? []))) {
      const key = loopKeyStart(hash) + scope
      const aged = key.replace(':loop:', ':loopt:')
      loops.push([await f.redis.hgetall(key), (await f.redis.pttl(key)) > 0, await f.redis.zrange(aged, 0, -1, 'WITHSCORES')])
    }
    return { answers, records, loops, cur: await f.redis.get(curKey(hash)), curTtl: await f.redis.ttl(curKey(hash)) }
  }

  /**
   * The same requests on a fresh key of `change`: reserved together (the first at once, the rest in the turn's call),
   * and one at a time (request ids made alike).
   */
  async function togetherAndAlone(change: Parameters<BudgetFixture['newKey']>[0], make: (hash: string, i: number) => ReserveInput, n: number, seed?: (hash: string) => Promise<void>) {
    const together = await primedKey(change)
    const alone = await primedKey(change)
    await seed?.(together)
    await seed?.(alone)
    const inputsTogether = Array.from({ length: n }, (_, i) => make(together, i))
    const inputsAlone = inputsTogether.map((x) => ({ ...x, keyHash: alone }))
    const before = await scriptCalls()
    const resultsTogether = await Promise.allSettled(inputsTogether.map((x) => f.store.reserve(x)))
    const calls = (await scriptCalls()) - before
    const resultsAlone: PromiseSettledResult<ReserveResult>[] = []
    for (const x of inputsAlone) resultsAlone.push((await Promise.allSettled([f.store.reserve(x)]))[0] as PromiseSettledResult<ReserveResult>)
    return { calls, together: await outcome(together, inputsTogether, resultsTogether), alone: await outcome(alone, inputsAlone, resultsAlone) }
  }

  it('a lone reserve is sent at once, before the turn ends, as one reserve.lua call; so is the next once it is answered', async () => {
    const hash = await primedKey({ limits: { daily: 1_000 } })
    const reserveScript = script('reserve')
    for (const micros of [100, 200]) {
      const before = await scriptCalls()
      const send = vi.spyOn(f.redis, 'sendCommand')
      let sent: unknown[]
      let pending: Promise<ReserveResult>
      try {
        pending = f.store.reserve(input(hash, micros))
        sent = send.mock.calls.map(([command]) => command.args[0])
      } finally {
        send.mockRestore()
      }
      expect(sent).toHaveLength(1)
      expect([reserveScript.sha, reserveScript.lua]).toContain(sent[0])
      expect((await pending).ok).toBe(true)
      expect(await scriptCalls()).toBe(before + 1)
    }
    expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 300 })
  })

  it('within the hold after a turn that batched a key\'s reserves, a lone reserve of the key waits for its turn\'s end', async () => {
    for (const [holdMs, sentAtOnce] of [[60_000, 0], [0, 1]] as const) {
      const store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: holdMs })
      const hash = await primedKey({ limits: { daily: 1_000 } })
      // The first at once, the other two in the turn's call.
      expect((await Promise.all([10, 20, 30].map((micros) => store.reserve(input(hash, micros))))).map((r) => r.ok)).toEqual([true, true, true])
      const before = await scriptCalls()
      const send = vi.spyOn(f.redis, 'sendCommand')
      let sent: number
      let pending: Promise<ReserveResult>
      try {
        pending = store.reserve(input(hash, 40))
        sent = send.mock.calls.length
      } finally {
        send.mockRestore()
      }
      expect(sent, `hold ${holdMs}`).toBe(sentAtOnce)
      expect((await pending).ok).toBe(true)
      expect(await scriptCalls()).toBe(before + 1)
      expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 100 })
    }
  })

  it('a lone reserve that waited out the hold alone renews nothing: past the batch\'s hold, the next is sent at once', async () => {
    const holdMs = 400
    const store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: holdMs })
    const hash = await primedKey({ limits: { daily: 1_000 } })
    // The first at once, the other two in the turn's call: the hold runs from that batch's answer, at the latest now.
    expect((await Promise.all([10, 20, 30].map((micros) => store.reserve(input(hash, micros))))).map((r) => r.ok)).toEqual([true, true, true])
    const batched = performance.now()
    /** Sends one reserve of the key; the commands sent before it returned. */
    async function lone(micros: number): Promise<number> {
      const send = vi.spyOn(f.redis, 'sendCommand')
      let sent: number
      let pending: Promise<ReserveResult>
      try {
        pending = store.reserve(input(hash, micros))
        sent = send.mock.calls.length
      } finally {
        send.mockRestore()
      }
      expect((await pending).ok).toBe(true)
      return sent
    }
    // Within the batch's hold: it waits for its turn's end, and goes alone.
    await new Promise((resolve) => setTimeout(resolve, holdMs / 2))
    expect(performance.now() - batched).toBeLessThan(holdMs)
    expect(await lone(40)).toBe(0)
    // Past the batch's hold, within what the lone one's turn would have renewed: the key is not loaded, sent at once.
    while (performance.now() - batched < holdMs + 20) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(await lone(50)).toBe(1)
    expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 150 })
  })

  it('the hold runs from the answer of a key\'s batched reserves or settles too, for either: the next settle or reserve of the key waits for its turn\'s end', async () => {
    const store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: 60_000 })
    /** How many commands `call` sent before its turn ended, and its answer. */
    const sentAtOnce = async <T>(call: () => Promise<T>): Promise<[number, T]> => {
      const send = vi.spyOn(f.redis, 'sendCommand')
      let sent: number
      let pending: Promise<T>
      try {
        pending = call()
        sent = send.mock.calls.length
      } finally {
        send.mockRestore()
      }
      return [sent, await pending]
    }
    const held = (results: ReserveResult[]) => results.map((r) => {
      if (!r.ok) throw new Error(r.reason)
      return r.reservation
    })
    // Reserves of one turn (the first at once, the other two in the turn's call), none of the key's settles batched:
    // once they are answered, a settle of the key waits.
    const hash = await primedKey({ limits: { daily: 1_000 } })
    const reserved = held(await Promise.all([10, 20, 30].map((micros) => store.reserve(input(hash, micros)))))
    expect(await sentAtOnce(() => store.settle(reserved[0] as Reservation, 10))).toEqual([0, { chargedMicros: 10, alreadySettled: false }])
    // Reserves one at a time (each at once), then their settles in one turn (the first at once, the others in the
    // turn's call): once they are answered, a reserve of the key waits.
    const other = await primedKey({ limits: { daily: 1_000 } })
    const alone: Reservation[] = []
    for (const micros of [10, 20, 30]) alone.push(...held([await store.reserve(input(other, micros))]))
    await Promise.all(alone.map((r) => store.settle(r, 0)))
    const [sent, result] = await sentAtOnce(() => store.reserve(input(other, 40)))
    expect([sent, result.ok]).toEqual([0, true])
    expect(await f.period(other, 'daily')).toEqual({ spent: 0, held: 40 })
  })

  it('a reserve issued after a settle of its key waiting for the turn\'s end waits too: the release is sent first', async () => {
    const hash = await primedKey({ limits: { daily: 1_000 } })
    const full = await f.reserved(hash, 1_000)
    const settled = f.store.settle(full, 0)
    const reserved = f.store.reserve(input(hash, 600))
    expect(await settled).toEqual({ chargedMicros: 0, alreadySettled: false })
    expect(await reserved).toMatchObject({ ok: true, reservation: { reservedMicros: 600, remainingMicros: 400 } })
  })

  it('a reserve issued before a settle of its key in one turn is answered in the order issued: refused while the hold is on', async () => {
    const hash = await primedKey({ limits: { daily: 1_000 } })
    const full = await f.reserved(hash, 1_000)
    const reserved = f.store.reserve(input(hash, 600))
    const settled = f.store.settle(full, 0)
    expect(await reserved).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily', limitMicros: 1_000, heldMicros: 1_000 })
    expect(await settled).toEqual({ chargedMicros: 0, alreadySettled: false })
    expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: 0 })
  })

  it('admits each as its own reserve would, in order, in one call: grants shrunk by a limit, the string held as alone', async () => {
    const run = await togetherAndAlone({ limits: { daily: 1_000, monthly: 5_000 } }, (hash) => input(hash, 400, { minMicros: 100 }), 3)
    expect(run.calls).toBe(2)
    expect(run.together).toEqual(run.alone)
    expect((run.together as { answers: unknown[] }).answers).toEqual([
      expect.objectContaining({ reservedMicros: 400, remainingMicros: 600 }),
      expect.objectContaining({ reservedMicros: 400, remainingMicros: 200 }),
      expect.objectContaining({ reservedMicros: 200, remainingMicros: 0 }),
    ])
  })

  it('a turn\'s line past a call\'s 64 goes in several: 64, 64, then the last alone, each admitted as alone, in order', async () => {
    // 131 reserves: the first at once, then a line of 130: two calls of 64 and one reserve.lua call for the last.
    const run = await togetherAndAlone({ limits: { daily: 10_000_000 } }, (hash, i) => input(hash, 100 + i), 131)
    expect(run.calls).toBe(4)
    // Read 131 records apart (seconds under load): the same but for TTLs a second apart at most.
    type Outcome = { records: Array<[unknown, number]>; curTtl: number }
    const untimed = (x: Outcome): unknown => ({ ...x, records: x.records.map(([record]) => record), curTtl: null })
    const ttls = (x: Outcome): number[] => [...x.records.map(([, ttl]) => ttl), x.curTtl]
    const [a, b] = [run.together as Outcome, run.alone as Outcome]
    expect(untimed(a)).toEqual(untimed(b))
    expect(ttls(a).every((ttl, i) => ttl > 0 && Math.abs(ttl - (ttls(b)[i] as number)) <= 1)).toBe(true)
    const answers = (run.together as { answers: Array<{ reservedMicros: number; remainingMicros: number }> }).answers
    // Admitted in the order issued: each remaining figure the one before's less its grant.
    expect(answers.map((a) => a.reservedMicros)).toEqual(Array.from({ length: 131 }, (_, i) => 100 + i))
    expect(answers.at(-1)?.remainingMicros).toBe(10_000_000 - 131 * 100 - (130 * 131) / 2)
  })

  it('an unlimited key, several providers, a loop check with the key\'s guard off: admitted in the call, as alone', async () => {
    const hash = await primedKey({ loopLimit: 0 })
    await f.redis.hset(recordKey(hash), 'providers', 'anthropic,openai')
    const loop = { scope: 'c:0123456789abcdef', step: 'fedcba9876543210' }
    const before = await scriptCalls()
    // The first goes at once; the other two, in the turn's call.
    const results = await Promise.all([f.store.reserve(input(hash, 5)), f.store.reserve(input(hash, 10)), f.store.reserve(input(hash, 20, { provider: 'anthropic', loop }))])
    expect(await scriptCalls()).toBe(before + 2)
    expect(results.map((r) => r.ok && [r.reservation.reservedMicros, r.reservation.remainingMicros])).toEqual([[5, null], [10, null], [20, null]])
    expect(await f.redis.exists(loopKeyStart(hash) + loop.scope)).toBe(0)
    expect((await f.redis.get(curKey(hash)))?.split(' ').slice(0, 11)).toEqual(['0', '35', '0', '35', '0', '35', '0', '35', '0', '35', '4'])
  })

  it('leaves to reserve.lua every item it cannot admit, each answered as a reserve alone answers it', async () => {
    const run = await togetherAndAlone({ limits: { daily: 1_000 } }, (hash, i) => {
      if (i === 1) return input(hash, 5_000) // over the daily limit
      if (i === 2) return input(hash, 10, { provider: 'anthropic' }) // not allowed
      if (i === 3 || i === 4) return input(hash, 10, { requestId: 'used-twice' })
      return input(hash, 10)
    }, 6)
    // The first at once, the call, then reserve.lua for the three it left.
    expect(run.calls).toBe(5)
    expect(run.together).toEqual(run.alone)
    expect((run.together as { answers: unknown[] }).answers).toEqual([
      expect.objectContaining({ reservedMicros: 10 }),
      { ok: false, reason: 'budget_exceeded' },
      { ok: false, reason: 'provider_not_allowed' },
      expect.objectContaining({ reservedMicros: 10 }),
      'StoreUnavailableError',
      expect.objectContaining({ reservedMicros: 10 }),
    ])
  })

  it('admits no more than the minute\'s rpm: the rest are reserve.lua\'s, refused as alone', async () => {
    // The minute's first request was the key's priming one: the fourth here is over the rpm.
    const run = await togetherAndAlone({ limits: { daily: 1_000 }, rpm: 4 }, (hash) => input(hash, 10), 5)
    expect(run.calls).toBe(4)
    expect(run.together).toEqual(run.alone)
    expect((run.together as { answers: unknown[] }).answers.slice(2)).toEqual([
      expect.objectContaining({ reservedMicros: 10 }),
      { ok: false, reason: 'rate_limited' },
      { ok: false, reason: 'rate_limited' },
    ])
  })

  it('loop checks with the key\'s guard in force: read, recorded and refused in the call as alone', async () => {
    const scope = 'c:0123456789abcdef'
    const seen = { scope, step: 'fedcba9876543210' }
    const repeated = { scope, step: '0123456789abcdef' }
    const other = { scope: 'c:fedcba9876543210', step: '1111111111111111' }
    // A new step whose hash ends in 0: its scope's size is counted.
    const sized = { scope, step: 'aaaaaaaaaaaaaaa0' }
    // Last seen a window and more ago, with one in flight then.
    const stale = { scope, step: 'bbbbbbbbbbbbbbbb' }
    // Two new steps whose hash ends in 0 in a scope past its 256 steps: indexed by age and trimmed, then trimmed again.
    const big = 'c:aaaaaaaaaaaaaaaa'
    const sizedBig = [{ scope: big, step: 'ccccccccccccccc0' }, { scope: big, step: 'ddddddddddddddd0' }]
    // `seen` repeated three times already (each settled): over the limit of 2.
    const seed = async (hash: string): Promise<void> => {
      for (let i = 0; i < 3; i++) await f.store.settle(await f.reserved(hash, 10, { loop: seen, requestId: `seed-${i}` }), 10)
      const old = f.clock.now() - 700_000
      await f.redis.hset(loopKeyStart(hash) + scope, stale.step, `1:${old}#gone`, `${stale.step}:${old}`, '1')
      const steps: string[] = []
      for (let i = 0; i < 300; i++) steps.push(i.toString(16).padStart(16, '0'), `1:${f.clock.now() - 3_000 * i}`)
      await f.redis.hset(loopKeyStart(hash) + big, ...steps, '#e', String(f.clock.now() + 675_000))
    }
    const loops = [null, seen, repeated, repeated, repeated, other, null, sized, stale, sizedBig[0], sizedBig[1]]
    const run = await togetherAndAlone({ limits: { daily: 1_000 }, loopLimit: 2 }, (hash, i) => {
      const loop = loops[i]
      return input(hash, 10, loop == null ? {} : { loop })
    }, loops.length, seed)
    // The first at once, the call, then reserve.lua for the loop it refused.
    expect(run.calls).toBe(3)
    expect(run.together).toEqual(run.alone)
    const { answers } = run.together as { answers: unknown[] }
    expect(answers[1]).toEqual({ ok: false, reason: 'loop_detected' })
    // The step's later requests are booked in its scope; its first, and a new step's, are not.
    const booked = (i: number): unknown => (answers[i] as { booked: string[] }).booked.length
    expect([2, 3, 4, 5, 7, 8, 9, 10].map(booked)).toEqual([5, 6, 6, 5, 5, 5, 5, 5])
    const [steps] = (run.together as { loops: [Record<string, string>][] }).loops[0] as [Record<string, string>]
    // Counted twice (its third came with two of it in flight); its two later requests in flight.
    expect(steps[repeated.step]).toMatch(/^2:\d+#/)
    expect(Object.entries(steps).filter(([field]) => field.startsWith(`${repeated.step}:`)).map(([, n]) => n)).toEqual(['2'])
    // The stale window's in flight gone; the big scope trimmed to 192 steps and indexed by age.
    expect(Object.keys(steps).filter((field) => field.startsWith(`${stale.step}:`))).toEqual([])
    const [bigSteps, , aged] = (run.together as { loops: [Record<string, string>, boolean, string[]][] }).loops[2] as [Record<string, string>, boolean, string[]]
    expect(Object.keys(bigSteps).filter((field) => !field.startsWith('#'))).toHaveLength(193)
    expect(aged).toHaveLength(2 * 193)
  })

  it('a key whose guard a batch found off sends its checks without their arguments; turned on since, each is still checked and refused', async () => {
    const seen = { scope: 'c:0123456789abcdef', step: 'fedcba9876543210' }
    const batchScript = script('reserve-batch')
    /** The arguments of each reserve-batch.lua call sent while `run`'s reserves are answered. */
    const batchesOf = async (run: () => Promise<unknown>): Promise<(string | number)[][]> => {
      const send = vi.spyOn(f.redis, 'sendCommand')
      try {
        await run()
        return send.mock.calls.map(([command]) => command.args as (string | number)[]).filter((args) => args[0] === batchScript.sha || args[0] === batchScript.lua)
      } finally {
        send.mockRestore()
      }
    }
    const seed = async (hash: string): Promise<void> => {
      // With the guard off: the first at once, the other two in the turn's call, whose reply tells the guard is off.
      expect((await Promise.all([1, 2, 3].map((i) => f.store.reserve(input(hash, 10, { loop: seen, requestId: `off-${i}` }))))).map((r) => r.ok)).toEqual([true, true, true])
      await f.admin.setBudget(hash, { loopLimit: 2 })
      // `seen` three times more, each settled: over the limit of 2.
      for (let i = 0; i < 3; i++) await f.store.settle(await f.reserved(hash, 10, { loop: seen, requestId: `on-${i}` }), 10)
    }
    const run = await togetherAndAlone({ limits: { daily: 1_000 }, loopLimit: 0 }, (hash, i) => input(hash, 10, { loop: seen, requestId: `again-${i}` }), 3, seed)
    // The first at once, the call, then reserve.lua for the two it left.
    expect(run.calls).toBe(4)
    expect(run.together).toEqual(run.alone)
    expect((run.together as { answers: unknown[] }).answers).toEqual([1, 2, 3].map(() => ({ ok: false, reason: 'loop_detected' })))
    // The guard off: a batch's checks flagged '2', without their scope, step and time; in force, with them again.
    const store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: 0 })
    const hash = await primedKey({ limits: { daily: 1_000 }, loopLimit: 0 })
    const scopeKey = loopKeyStart(hash) + seen.scope
    // Three new steps: the first at once, the other two in the turn's call; what that call was sent, and the answers.
    const three = async (tag: string): Promise<unknown[]> => {
      let results: ReserveResult[] = []
      const batches = await batchesOf(async () => {
        results = await Promise.all([1, 2, 3].map((i) => store.reserve(input(hash, 10, { loop: { scope: seen.scope, step: `${tag}${i}`.padStart(16, '0') }, requestId: `${tag}-${i}` }))))
      })
      return [batches.map((args) => [args[1], args.includes(scopeKey), args.filter((a) => a === '11' || a === '22')]), results.map((r) => r.ok && r.reservation.bookedKeys.length)]
    }
    expect(await three('a')).toEqual([[[6, true, ['11']]], [5, 5, 5]])
    expect(await three('b')).toEqual([[[4, false, ['22']]], [5, 5, 5]])
    expect(await f.redis.hlen(scopeKey)).toBe(0)
    await f.admin.setBudget(hash, { loopLimit: 5 })
    // Left to reserve.lua, which records each step; the call's reply tells the guard is in force.
    expect(await three('c')).toEqual([[[4, false, ['22']]], [5, 5, 5]])
    expect(await f.redis.hlen(scopeKey)).toBe(4)
    expect(await three('d')).toEqual([[[6, true, ['11']]], [5, 5, 5]])
    expect(await f.redis.hlen(scopeKey)).toBe(7)
  })

  it('requests with a session are reserve.lua\'s, each: the session counts its steps and holds, its limits hold', async () => {
    const hash = await primedKey({ limits: { daily: 1_000 } })
    const session = { id: 'agent-1', budgetMicros: null, maxSteps: 2, loopLimit: null }
    const before = await scriptCalls()
    const results = await Promise.all([10, 20, 30].map((micros) => f.store.reserve(input(hash, micros, { session }))))
    expect(await scriptCalls()).toBe(before + 3)
    expect(results.map((r) => r.ok || r.reason)).toEqual([true, true, 'session_steps_exceeded'])
    expect(await f.session(hash, session.id)).toMatchObject({ steps: '2', held: '30' })
  })

  it('a revoked key and a key on the hash layout: every item is reserve.lua\'s', async () => {
    const revoked = await primedKey({ limits: { daily: 1_000 } })
    await f.redis.hset(recordKey(revoked), 'active', '0')
    const before = await scriptCalls()
    expect(await Promise.all([f.store.reserve(input(revoked, 5)), f.store.reserve(input(revoked, 10)), f.store.reserve(input(revoked, 20))])).toEqual([
      { ok: false, reason: 'key_revoked' },
      { ok: false, reason: 'key_revoked' },
      { ok: false, reason: 'key_revoked' },
    ])
    // The first at once, the call, then reserve.lua for each it left.
    expect(await scriptCalls()).toBe(before + 4)

    const hashLayout = await f.newKey({ limits: { daily: 1_000 } })
    await f.redis.hdel(recordKey(hashLayout), 'layout')
    const beforeHash = await scriptCalls()
    const results = await Promise.all([f.store.reserve(input(hashLayout, 5)), f.store.reserve(input(hashLayout, 10)), f.store.reserve(input(hashLayout, 20))])
    expect(results.map((r) => r.ok)).toEqual([true, true, true])
    expect(await scriptCalls()).toBe(beforeHash + 4)
    expect(await f.redis.exists(curKey(hashLayout))).toBe(0)
    expect(await f.period(hashLayout, 'daily')).toEqual({ spent: 0, held: 35 })
  })

  it('a batch that failed rejects each item; an item it admitted is held under its id, which a retry finds used', async () => {
    const slow = await createBudgetFixture(server, { redisLayout: 'string', commandTimeoutMs: 300 })
    try {
      slow.clock.set(new Date(f.clock.now()).toISOString())
      const hash = await slow.newKey({ limits: { daily: 10_000 } })
      await slow.store.settle(await slow.reserved(hash, 1), 0)
      const first = input(hash, 50)
      const a = input(hash, 100)
      const b = input(hash, 200)
      const before = await scriptCalls()
      await f.redis.call('CLIENT', 'PAUSE', '1000', 'WRITE')
      // The first at once, a and b in the turn's call.
      const failed = await Promise.allSettled([slow.store.reserve(first), slow.store.reserve(a), slow.store.reserve(b)])
      expect(failed.map((r) => r.status === 'rejected' && r.reason instanceof StoreUnavailableError)).toEqual([true, true, true])
      for (let waited = 0; waited < 5_000 && (await scriptCalls()) < before + 2; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50))
      expect(await scriptCalls()).toBe(before + 2)
      expect(await slow.period(hash, 'daily')).toEqual({ spent: 0, held: 350 })
      await expect(slow.store.reserve(a)).rejects.toBeInstanceOf(StoreUnavailableError)
    } finally {
      await slow.close()
    }
  })
})
