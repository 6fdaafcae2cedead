import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { script } from '../../src/budget/redis/script-command.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import { curKey, dayKey, reservationKey } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES, type Reservation } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The string layout's settles of one key: one goes to Redis at once when none of its key's is queued or unanswered;
// the others issued in that event-loop turn go as one settle-batch.lua call, which settles each as settle.lua would,
// exactly once per request id, and leaves any other item to settle.lua.

const DAY = '2026-05-04'

describe('redis store, string layout: a key\'s settles of one turn in one call', () => {
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

  async function reservedAll(hash: string, amounts: number[]): Promise<Reservation[]> {
    const out: Reservation[] = []
    for (const micros of amounts) out.push(await f.reserved(hash, micros))
    return out
  }

  /** What settling leaves stored: the key's current periods, each record and its TTL, today's history. */
  async function stored(hash: string, rs: Reservation[]): Promise<unknown> {
    const records = []
    for (const r of rs) records.push([await f.redis.get(reservationKey(hash, r.requestId)), await f.redis.ttl(reservationKey(hash, r.requestId))])
    return { cur: await f.redis.get(curKey(hash)), records, history: await f.redis.get(dayKey(hash, DAY)), historyTtl: await f.redis.ttl(dayKey(hash, DAY)) }
  }

  it('a lone settle is sent at once, before the turn ends, as one settle.lua call; so is the next once it is answered', async () => {
    const hash = await f.newKey({ limits: { daily: 10_000 } })
    const rs = await reservedAll(hash, [100, 200])
    const settleScript = script('settle')
    for (const [i, r] of rs.entries()) {
      const before = await scriptCalls()
      const send = vi.spyOn(f.redis, 'sendCommand')
      let sent: unknown[]
      let pending: Promise<unknown>
      try {
        pending = f.store.settle(r, 10 * (i + 1))
        sent = send.mock.calls.map(([command]) => command.args[0])
      } finally {
        send.mockRestore()
      }
      expect(sent).toHaveLength(1)
      expect([settleScript.sha, settleScript.lua]).toContain(sent[0])
      expect(await pending).toEqual({ chargedMicros: 10 * (i + 1), alreadySettled: false })
      expect(await scriptCalls()).toBe(before + 1)
    }
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w), w).toEqual({ spent: 30, held: 0 })
  })

  it('within the hold after a turn that batched a key\'s settles, a lone settle of the key waits for its turn\'s end', async () => {
    for (const [holdMs, sentAtOnce] of [[60_000, 0], [0, 1]] as const) {
      const store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: holdMs })
      const hash = await f.newKey({ limits: { daily: 10_000 } })
      const rs = await reservedAll(hash, [100, 200, 300, 400])
      // The first at once, the other two in the turn's call.
      await Promise.all(rs.slice(0, 3).map((r) => store.settle(r, 10)))
      const before = await scriptCalls()
      const send = vi.spyOn(f.redis, 'sendCommand')
      let sent: number
      let pending: Promise<unknown>
      try {
        pending = store.settle(rs[3] as Reservation, 10)
        sent = send.mock.calls.length
      } finally {
        send.mockRestore()
      }
      expect(sent, `hold ${holdMs}`).toBe(sentAtOnce)
      expect(await pending).toEqual({ chargedMicros: 10, alreadySettled: false })
      expect(await scriptCalls()).toBe(before + 1)
      for (const w of WINDOW_NAMES) expect(await f.period(hash, w), w).toEqual({ spent: 40, held: 0 })
    }
  })

  it('a lone settle that waited out the hold alone renews nothing: past the batch\'s hold, the next is sent at once', async () => {
    const holdMs = 400
    const store = createBudgetStore(f.redis, { now: () => f.clock.now(), batchedHoldMs: holdMs })
    const hash = await f.newKey({ limits: { daily: 10_000 } })
    const rs = await reservedAll(hash, [100, 200, 300, 400, 500])
    // The first at once, the other two in the turn's call: the hold runs from that batch's answer, at the latest now.
    await Promise.all(rs.slice(0, 3).map((r) => store.settle(r, 10)))
    const batched = performance.now()
    /** Settles one; the commands sent before it returned. */
    async function lone(r: Reservation): Promise<number> {
      const send = vi.spyOn(f.redis, 'sendCommand')
      let sent: number
      let pending: Promise<unknown>
      try {
        pending = store.settle(r, 10)
        sent = send.mock.calls.length
      } finally {
        send.mockRestore()
      }
      expect(await pending).toEqual({ chargedMicros: 10, alreadySettled: false })
      return sent
    }
    // Within the batch's hold: it waits for its turn's end, and goes alone.
    await new Promise((resolve) => setTimeout(resolve, holdMs / 2))
    expect(performance.now() - batched).toBeLessThan(holdMs)
    expect(await lone(rs[3] as Reservation)).toBe(0)
    // Past the batch's hold, within what the lone one's turn would have renewed: the key is not loaded, sent at once.
    while (performance.now() - batched < holdMs + 20) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(await lone(rs[4] as Reservation)).toBe(1)
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w), w).toEqual({ spent: 50, held: 0 })
  })

  it('settles each as its own settle would, those after the first in one call, and once: settled again, each reports its first charge', async () => {
    const hash = await f.newKey({ limits: { daily: 10_000 } })
    const rs = await reservedAll(hash, [100, 200, 300, 400, 500])
    const actual = [50, 250, 0, 400, 10]
    const before = await scriptCalls()
    const results = await Promise.all(rs.map((r, i) => f.store.settle(r, actual[i] as number)))
    // The first at once, the other four in the turn's call.
    expect(await scriptCalls()).toBe(before + 2)
    expect(results).toEqual(actual.map((chargedMicros) => ({ chargedMicros, alreadySettled: false })))
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w), w).toEqual({ spent: 710, held: 0 })
    expect(await f.redis.get(dayKey(hash, DAY))).toBe('710')

    const again = await Promise.all(rs.map((r) => f.store.settle(r, 999)))
    expect(again).toEqual(actual.map((chargedMicros) => ({ chargedMicros, alreadySettled: true })))
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w), w).toEqual({ spent: 710, held: 0 })
    expect(await f.redis.get(dayKey(hash, DAY))).toBe('710')
  })

  it('stores exactly what settling each alone stores', async () => {
    const amounts = [100, 7, 300, 1_000_000]
    const actual = [100, 9, 0, 123_456]
    const together = await f.newKey({ limits: { daily: 10_000_000 } })
    const alone = await f.newKey({ limits: { daily: 10_000_000 } })
    const rsTogether = await reservedAll(together, amounts)
    const rsAlone = await reservedAll(alone, amounts)
    // A hold left booked in both: settling releases only its own.
    await f.reserved(together, 33)
    await f.reserved(alone, 33)
    const before = await scriptCalls()
    await Promise.all(rsTogether.map((r, i) => f.store.settle(r, actual[i] as number)))
    // The first at once, the other three in the turn's call.
    expect(await scriptCalls()).toBe(before + 2)
    for (const [i, r] of rsAlone.entries()) await f.store.settle(r, actual[i] as number)
    expect(await stored(together, rsTogether)).toEqual(await stored(alone, rsAlone))
    expect(await f.period(together, 'monthly')).toEqual({ spent: 123_565, held: 33 })
  })

  it('a turn\'s line past a call\'s 64 goes in several: 64, 64, then the last alone, storing what settling each alone stores', async () => {
    const amounts = Array.from({ length: 131 }, (_, i) => 100 + i)
    const actual = amounts.map((a, i) => a - (i % 7))
    const together = await f.newKey({ limits: { daily: 10_000_000 } })
    const alone = await f.newKey({ limits: { daily: 10_000_000 } })
    const rsTogether = await reservedAll(together, amounts)
    const rsAlone = await reservedAll(alone, amounts)
    const before = await scriptCalls()
    const results = await Promise.all(rsTogether.map((r, i) => f.store.settle(r, actual[i] as number)))
    // The first at once, then a line of 130: two calls of 64 and one settle.lua call for the last.
    expect(await scriptCalls()).toBe(before + 4)
    expect(results).toEqual(actual.map((chargedMicros) => ({ chargedMicros, alreadySettled: false })))
    for (const [i, r] of rsAlone.entries()) await f.store.settle(r, actual[i] as number)
    type Stored = { cur: unknown; records: Array<[unknown, number]>; history: unknown; historyTtl: number }
    const [a, b] = [(await stored(together, rsTogether)) as Stored, (await stored(alone, rsAlone)) as Stored]
    // Read 131 records apart (seconds under load): the same but for TTLs a second apart at most.
    const untimed = (x: Stored): unknown => ({ ...x, records: x.records.map(([record]) => record), historyTtl: null })
    expect(untimed(a)).toEqual(untimed(b))
    const ttls = (x: Stored): number[] => [...x.records.map(([, ttl]) => ttl), x.historyTtl]
    expect(ttls(a).every((ttl, i) => ttl > 0 && Math.abs(ttl - (ttls(b)[i] as number)) <= 1)).toBe(true)
    const spent = actual.reduce((sum, a) => sum + a, 0)
    expect(await f.period(together, 'monthly')).toEqual({ spent, held: 0 })
  })

  it('leaves to settle.lua the items it cannot settle in the string, each answered as a settle alone answers it', async () => {
    const hash = await f.newKey({ limits: { daily: 10_000 } })
    const [first, settledBefore, noRecord, twice, overspent] = await reservedAll(hash, [100, 100, 100, 100, 100]) as [Reservation, Reservation, Reservation, Reservation, Reservation]
    await f.store.settle(settledBefore, 40)
    await f.raw.deleteReservation(hash, noRecord.requestId)
    const before = await scriptCalls()
    const results = await Promise.all([
      f.store.settle(first, 5),
      f.store.settle(settledBefore, 60),
      f.store.settle(noRecord, 30),
      f.store.settle(twice, 20),
      f.store.settle(twice, 20),
      f.store.settle(overspent, 250),
    ])
    expect(results).toEqual([
      { chargedMicros: 5, alreadySettled: false },
      { chargedMicros: 40, alreadySettled: true },
      { chargedMicros: 30, alreadySettled: false },
      { chargedMicros: 20, alreadySettled: false },
      { chargedMicros: 20, alreadySettled: true },
      { chargedMicros: 250, alreadySettled: false },
    ])
    // The first at once, the batch, then settle.lua for the three it left.
    expect(await scriptCalls()).toBe(before + 5)
    // The record-less one charged its actual and left its hold (nothing says what it held), as settle.lua does.
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w), w).toEqual({ spent: 345, held: 100 })
    expect(await f.redis.get(reservationKey(hash, noRecord.requestId))).toBe('settled 30')
    await expect(f.store.reserve(input(hash, 1, { requestId: noRecord.requestId }))).rejects.toBeInstanceOf(StoreUnavailableError)
  })

  it('a batch that failed rejects each item; retried, each finds itself settled by the call that ran late', async () => {
    const slow = await createBudgetFixture(server, { redisLayout: 'string', commandTimeoutMs: 300 })
    try {
      slow.clock.set(new Date(f.clock.now()).toISOString())
      const hash = await slow.newKey({ limits: { daily: 10_000 } })
      const first = await slow.reserved(hash, 50)
      const a = await slow.reserved(hash, 100)
      const b = await slow.reserved(hash, 200)
      const before = await scriptCalls()
      await f.redis.call('CLIENT', 'PAUSE', '1000', 'WRITE')
      const failed = await Promise.allSettled([slow.store.settle(first, 5), slow.store.settle(a, 10), slow.store.settle(b, 20)])
      expect(failed.map((r) => r.status === 'rejected' && r.reason instanceof StoreUnavailableError)).toEqual([true, true, true])
      // Once the pause ends, the first's call and the batch run: two calls.
      for (let waited = 0; waited < 5_000 && (await scriptCalls()) < before + 2; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50))
      expect(await scriptCalls()).toBe(before + 2)
      expect(await Promise.all([slow.store.settle(first, 5), slow.store.settle(a, 10), slow.store.settle(b, 20)])).toEqual([
        { chargedMicros: 5, alreadySettled: true },
        { chargedMicros: 10, alreadySettled: true },
        { chargedMicros: 20, alreadySettled: true },
      ])
      for (const w of WINDOW_NAMES) expect(await slow.period(hash, w), w).toEqual({ spent: 35, held: 0 })
    } finally {
      await slow.close()
    }
  })
})
