import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { script } from '../../src/budget/redis/script-command.js'
import type { Reservation, ReserveInput, SettleResult } from '../../src/budget/types.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// settle.lua and settle-batch.lua write exactly what they wrote at 43d2eb9 (the scripts then, kept as fixtures): twin
// keys get the same reserves, one key's settles go through the store as they are and each script command it sends is
// sent again, with the other key's names, as the earlier script, which both processes of a rolling upgrade run on one
// Redis. Every key of each twin (current periods' string, period hashes, records, history, session, loop scope) and
// its TTL, and every answer, must agree.

const BEFORE = {
  settle: readFileSync(new URL('../fixtures/lua/settle-43d2eb9.lua', import.meta.url), 'utf8'),
  'settle-batch': readFileSync(new URL('../fixtures/lua/settle-batch-43d2eb9.lua', import.meta.url), 'utf8'),
}

describe('settle.lua and settle-batch.lua against the scripts before them, on twin keys', () => {
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

  /** Two keys of `change`, alike. */
  async function twins(change: Parameters<BudgetFixture['newKey']>[0]): Promise<[string, string]> {
    return [await f.newKey(change), await f.newKey(change)]
  }

  /** The same reserve on both keys (the same request id); returns the first key's reservation and the second's. */
  async function reserveBoth(a: string, b: string, micros: number, extra: Partial<ReserveInput> = {}): Promise<[Reservation, Reservation]> {
    const x = input(a, micros, extra)
    const ra = await f.store.reserve(x)
    const rb = await f.store.reserve({ ...x, keyHash: b })
    if (!ra.ok || !rb.ok) throw new Error('refused')
    return [ra.reservation, rb.reservation]
  }

  /**
   * Runs `settle` (the store's settles on key `a`), then sends each settle or settle-batch command it sent again, in
   * order, as the earlier script on key `b`; returns the store's answers and the earlier script's replies, and how
   * many of each script were sent.
   */
  async function settleBoth<T>(a: string, b: string, settle: () => Promise<T>): Promise<{ now: T; before: unknown[]; sent: Record<string, number> }> {
    const names = new Map([[script('settle').sha, 'settle'], [script('settle').lua, 'settle'], [script('settle-batch').sha, 'settle-batch'], [script('settle-batch').lua, 'settle-batch']] as const)
    const sent: { name: 'settle' | 'settle-batch'; args: (string | number)[] }[] = []
    const spy = vi.spyOn(f.redis, 'sendCommand')
    let now: T
    try {
      now = await settle()
      for (const [command] of spy.mock.calls) {
        const args = (command as unknown as { args: (string | number)[] }).args
        const name = names.get(String(args[0]))
        if (name !== undefined) sent.push({ name, args: [...args] })
      }
    } finally {
      spy.mockRestore()
    }
    const before: unknown[] = []
    for (const { name, args } of sent) {
      const rest = args.slice(1).map((x) => (typeof x === 'string' ? x.replaceAll(a, b) : x))
      before.push(await f.redis.eval(BEFORE[name], ...(rest as [number, ...(string | number)[]])))
    }
    const count: Record<string, number> = {}
    for (const { name } of sent) count[name] = (count[name] ?? 0) + 1
    return { now, before, sent: count }
  }

  /** Every key of `hash`, named without it, with its value and whether and how long it lives (seconds). */
  async function stored(hash: string): Promise<{ values: Record<string, unknown>; ttls: Record<string, number> }> {
    const values: Record<string, unknown> = {}
    const ttls: Record<string, number> = {}
    for (const key of (await f.redis.keys(`lp:{${hash}}:*`)).sort()) {
      const name = key.replace(hash, '<h>')
      const type = await f.redis.type(key)
      if (type === 'string') values[name] = await f.redis.get(key)
      else if (type === 'hash') values[name] = await f.redis.hgetall(key)
      else if (type === 'zset') values[name] = await f.redis.zrange(key, 0, -1, 'WITHSCORES')
      else values[name] = type
      ttls[name] = await f.redis.ttl(key)
    }
    return { values, ttls }
  }

  /** Both keys hold the same, and their TTLs agree within two seconds (the two calls are not sent at once). */
  async function expectTwins(a: string, b: string): Promise<void> {
    const [sa, sb] = [await stored(a), await stored(b)]
    expect(sa.values).toEqual(sb.values)
    expect(Object.keys(sa.ttls)).toEqual(Object.keys(sb.ttls))
    for (const [name, ttl] of Object.entries(sa.ttls)) {
      const other = sb.ttls[name] as number
      if (ttl < 0 || other < 0) expect([name, ttl]).toEqual([name, other])
      else expect(Math.abs(ttl - other), name).toBeLessThanOrEqual(2)
    }
  }

  /** A settle's answer as the earlier script's reply reads. */
  const asReply = (r: SettleResult): unknown => (r.alreadySettled ? [Buffer.from('already'), r.chargedMicros] : r.chargedMicros)
  const readBefore = (x: unknown): unknown => (Array.isArray(x) ? [Buffer.from(String(x[0])), x[1]] : x)

  it('a hold alone in flight, settled below, at, above its amount and at zero; then retried', async () => {
    const [a, b] = await twins({ limits: { daily: 1e9, minute: 1e8 } })
    for (const actual of [1_500, 2_000, 2_500, 0]) {
      const [ra] = await reserveBoth(a, b, 2_000)
      const { now, before, sent } = await settleBoth(a, b, () => f.store.settle(ra, actual))
      expect(sent).toEqual({ settle: 1 })
      expect([asReply(now)]).toEqual(before.map(readBefore))
      await expectTwins(a, b)
      const again = await settleBoth(a, b, () => f.store.settle(ra, actual))
      expect([asReply(again.now)]).toEqual(again.before.map(readBefore))
      expect(again.now.alreadySettled).toBe(true)
      await expectTwins(a, b)
    }
  })

  it('a hold settled with others in flight, then the others, the last leaving none held', async () => {
    const [a, b] = await twins({ limits: { daily: 1e9 } })
    const holds = []
    for (const micros of [1_000, 2_000, 3_000]) holds.push((await reserveBoth(a, b, micros))[0])
    for (const [i, r] of [holds[1], holds[0], holds[2]].entries()) {
      const { now, before } = await settleBoth(a, b, () => f.store.settle(r as Reservation, 700 * (i + 1)))
      expect([asReply(now)]).toEqual(before.map(readBefore))
      await expectTwins(a, b)
    }
  })

  it('a hold in a session, alone and with another of the session in flight', async () => {
    const [a, b] = await twins({ limits: { daily: 1e9 } })
    const session = { id: 'twin-session', budgetMicros: 1e7, maxSteps: 10 }
    const [first] = await reserveBoth(a, b, 4_000, { session })
    let out = await settleBoth(a, b, () => f.store.settle(first, 3_000))
    expect([asReply(out.now)]).toEqual(out.before.map(readBefore))
    await expectTwins(a, b)
    const [second] = await reserveBoth(a, b, 4_000, { session })
    const [third] = await reserveBoth(a, b, 5_000, { session })
    out = await settleBoth(a, b, () => f.store.settle(third, 6_000))
    expect([asReply(out.now)]).toEqual(out.before.map(readBefore))
    await expectTwins(a, b)
    out = await settleBoth(a, b, () => f.store.settle(second, 4_000))
    expect([asReply(out.now)]).toEqual(out.before.map(readBefore))
    await expectTwins(a, b)
  })

  it('a hold with a loop step in flight (the key\'s guard on)', async () => {
    const [a, b] = await twins({ limits: { daily: 1e9 }, loopLimit: 5 })
    const loop = { scope: 'c:0123456789abcdef', step: 'fedcba9876543210' }
    const [r1] = await reserveBoth(a, b, 2_000, { loop })
    const [r2] = await reserveBoth(a, b, 2_000, { loop })
    for (const r of [r2, r1]) {
      const { now, before } = await settleBoth(a, b, () => f.store.settle(r, 1_000))
      expect([asReply(now)]).toEqual(before.map(readBefore))
      await expectTwins(a, b)
    }
  })

  it('holds settled after a minute boundary and after a day boundary (periods turned since)', async () => {
    f.clock.set('2026-05-04T23:58:50.000Z')
    try {
      const [a, b] = await twins({ limits: { daily: 1e9, minute: 1e8, hourly: 1e8 } })
      const [early] = await reserveBoth(a, b, 3_000)
      f.clock.advance(20_000) // the next minute
      const [later] = await reserveBoth(a, b, 2_000)
      let out = await settleBoth(a, b, () => f.store.settle(early, 2_500))
      expect([asReply(out.now)]).toEqual(out.before.map(readBefore))
      await expectTwins(a, b)
      f.clock.advance(60_000) // the next day
      out = await settleBoth(a, b, () => f.store.settle(later, 2_200))
      expect([asReply(out.now)]).toEqual(out.before.map(readBefore))
      await expectTwins(a, b)
      // A hold of the new day, alone, settled in it.
      const [fresh] = await reserveBoth(a, b, 1_000)
      out = await settleBoth(a, b, () => f.store.settle(fresh, 900))
      expect([asReply(out.now)]).toEqual(out.before.map(readBefore))
      await expectTwins(a, b)
    } finally {
      f.clock.set('2026-05-04T12:00:30.000Z')
    }
  })

  it('settles of one turn in one settle-batch.lua call: some left held, then none, then nothing charged', async () => {
    const [a, b] = await twins({ limits: { daily: 1e9 } })
    const hold = async (amounts: number[]) => {
      const out: Reservation[] = []
      for (const micros of amounts) out.push((await reserveBoth(a, b, micros))[0])
      return out
    }
    const cases: [Reservation[], number[]][] = []
    const rest = await hold([500])
    cases.push([await hold([1_000, 2_000, 3_000, 4_000]), [900, 2_100, 0, 4_000]])
    cases.push([[...rest, ...(await hold([1_500, 2_500]))], [400, 1_500, 2_600]])
    cases.push([await hold([700, 800, 900]), [0, 0, 0]])
    for (const [rs, actuals] of cases) {
      const { now, before, sent } = await settleBoth(a, b, () => Promise.all(rs.map((r, i) => f.store.settle(r, actuals[i] as number))))
      expect(sent['settle-batch']).toBe(1)
      // The first went alone (settle.lua: its answer first); the batch answers each item's charge.
      const [lone, batch] = before as [unknown, unknown[]]
      expect(asReply(now[0] as SettleResult)).toEqual(readBefore(lone))
      expect(now.slice(1).map((r) => r.chargedMicros)).toEqual(batch)
      await expectTwins(a, b)
    }
  })
})
