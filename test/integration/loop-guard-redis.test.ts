import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loopScope, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE } from '../../src/loop/rule.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// What the loop guard costs inside the Redis scripts, counted by Redis itself (INFO commandstats counts
// the commands a script runs): the guard's verdicts are the loop-guard tests'; this holds its price.

const hex = (n: number): string => n.toString(16).padStart(16, '0')
const loop = (conversation: number, step: number) => ({ loop: { scope: loopScope(null, { conversation: hex(conversation), step: hex(step) }), step: hex(step) } })

describe('redis store, hash layout: the loop guard\'s commands', () => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server, { redisLayout: 'hash' })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  /** A sequential client's request: reserved, then settled. */
  async function request(hash: string, extra: ReturnType<typeof loop> | object): Promise<void> {
    f.clock.advance(10)
    const r = await f.store.reserve(input(hash, 1, extra))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    await f.store.settle(r.reservation, 1)
  }

  /** Calls of each command since the last reset, scripts' commands included (the scripts themselves left out). */
  async function commands(): Promise<Record<string, number>> {
    const out: Record<string, number> = {}
    for (const m of (await f.redis.info('commandstats')).matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
      if (!['evalsha', 'eval', 'info', 'config|resetstat', 'script|load'].includes(m[1] as string)) out[m[1] as string] = Number(m[2])
    }
    return out
  }
  const total = (c: Record<string, number>): number => Object.values(c).reduce((a, b) => a + b, 0)

  /** Commands per request of `n` requests, each made by `make(i)`, after a reset of the counters. */
  async function perRequest(n: number, make: (i: number) => Promise<void>): Promise<{ all: number; by: Record<string, number> }> {
    await f.redis.config('RESETSTAT')
    for (let i = 0; i < n; i++) await make(i)
    const by = await commands()
    return { all: total(by) / n, by }
  }

  it('a new step of a conversation costs two commands in all: read and write it at reserve, nothing at settle', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({})
    const off = await f.newKey({ loopLimit: 0 })
    for (let i = 0; i < 4; i++) await request(on, loop(1, i)) // the conversation exists
    await request(off, {}) // both keys' minute has begun (its first request sets the period TTLs)
    const without = await perRequest(32, () => request(off, {}))
    const withGuard = await perRequest(32, (i) => request(on, loop(1, 100 + i)))
    // 2 a request, and one HLEN each for the 2 of 32 new steps that count their scope (checksScopeSize).
    expect(withGuard.all - without.all).toBeCloseTo(2 + 2 / 32, 5)
    // No in flight field written at either end (the step's first request is in flight while its record is held), no
    // read at settle, and no TTL set again while the scope's recorded expiry is far enough.
    expect(withGuard.by.hincrby).toBe(without.by.hincrby)
    expect(withGuard.by.hget ?? 0).toBe(without.by.hget ?? 0)
    expect(withGuard.by.get ?? 0).toBe(without.by.get ?? 0)
    expect(withGuard.by.pexpire ?? 0).toBe(0)
  })

  it('a request of a step not counted (more than one other in flight) writes only its in flight: read, HINCRBY, no HSET', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({})
    const held = async (): Promise<void> => {
      f.clock.advance(10)
      const r = await f.store.reserve(input(on, 1, loop(7, 1)))
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
    }
    await held()
    await held() // two in flight: the next ones are not repeats
    const burst = await perRequest(8, held)
    expect(burst.by.hset ?? 0).toBe(0)
    expect(burst.by.hmget).toBe(8 * 2) // the key record and the step (an unlimited key reads no period)
    expect(burst.by.hincrby).toBe(8 * 7) // the minute's requests, the five periods' held, the step's in flight
    // The first request's record is read only while it decides: by the burst's first (one other in the field), not by
    // the rest (two others there already).
    expect(burst.by.get).toBe(1)
    // The entry is as the two counted requests left it, naming the first; the in flight field has every other request.
    const scope = `lp:{${on}}:loop:${loopScope(null, { conversation: hex(7), step: '' })}`
    const entry = (await f.redis.hget(scope, hex(1))) as string
    expect(entry).toMatch(/^2:\d+#.+$/)
    expect(await f.redis.hget(scope, `${hex(1)}:${entry.slice(2, entry.indexOf('#'))}`)).toBe('9')
  })

  it('the first request of a step is in flight while its record is held: settle or abandon ends it, writing nothing to the scope', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({})
    const scope = `lp:{${on}}:loop:${loopScope(null, { conversation: hex(8), step: '' })}`
    const count = async (step: number): Promise<number> => Number(((await f.redis.hget(scope, hex(step))) as string).split(':')[0])
    for (const end of ['settle', 'abandon'] as const) {
      const step = end === 'settle' ? 1 : 2
      const held = async () => {
        f.clock.advance(10)
        const r = await f.store.reserve(input(on, 1, loop(8, step)))
        if (!r.ok) throw new Error(`refused: ${r.reason}`)
        return r.reservation
      }
      const first = await held()
      expect(first.bookedKeys).toHaveLength(5) // not booked: nothing for settle to end in the scope
      await held() // counted: one other in flight
      expect(await count(step)).toBe(2)
      const before = await f.redis.hgetall(scope)
      if (end === 'settle') await f.store.settle(first, 1)
      else await f.store.abandon(on, first.requestId)
      expect(await f.redis.hgetall(scope), end).toEqual(before)
      await held() // one other in flight (the second): a repeat
      expect(await count(step), end).toBe(3)
      await held() // two others in flight: not a repeat
      expect(await count(step), end).toBe(3)
    }
  })

  it('counts the steps of a scope whose in flight fields outnumber them exactly before trimming it', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({})
    const scope = loopScope(null, { conversation: hex(9), step: '' })
    const [scopeKey, ageKey] = [`lp:{${on}}:loop:${scope}`, `lp:{${on}}:loopt:${scope}`]
    // As the previous release left a scope of 200 steps: each with its in flight field, so over 256 fields.
    const since = f.clock.now() - 10_000
    const fields: string[] = ['#e', String(f.clock.now() + 675_000)]
    for (let i = 0; i < 200; i++) fields.push(hex(i), `1:${since}`, `${hex(i)}:${since}`, '0')
    await f.redis.hset(scopeKey, ...fields)
    await f.redis.pexpire(scopeKey, 675_000)
    await request(on, loop(9, 0x1000)) // a new step that counts its scope: 201 steps, none dropped, no index
    expect(await f.redis.hlen(scopeKey)).toBe(2 * 200 + 1 + 1)
    expect(await f.redis.exists(ageKey)).toBe(0)
    expect(Number(await f.redis.hget(scopeKey, '#e'))).toBeGreaterThan(0)
  })

  it(`a scope past ${LOOP_STEPS_PER_SCOPE} steps is trimmed without reading it whole: only the steps it drops are read`, async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({})
    for (let i = 0; i < LOOP_STEPS_PER_SCOPE + 32; i++) await request(on, loop(2, i)) // past 256: indexed
    const grown = await perRequest(192, (i) => request(on, loop(2, 1_000 + i)))
    expect(grown.by.zremrangebyrank ?? 0).toBeGreaterThanOrEqual(2) // trims happened
    expect(grown.by.hgetall ?? 0).toBe(0)
    // Per new step: read, write, index (ZADD), end in flight; the size checks and trims spread thin.
    expect(grown.all).toBeLessThan(
      (await perRequest(32, () => request(on, {}))).all + 4.25,
    )
    const scopeKey = `lp:{${on}}:loop:${loopScope(null, { conversation: hex(2), step: '' })}`
    expect(await f.redis.hlen(scopeKey)).toBeLessThanOrEqual(2 * LOOP_STEPS_PER_SCOPE + 2 * 16 + 2)
    // Indexed, it is kept as a hash table (a listpack would scan its 256 steps on every read and write).
    expect(await f.redis.object('ENCODING', scopeKey)).toBe('hashtable')
  })

  it('reads the entries an older release wrote (count:sinceMs:inFlight in one field) and rewrites them in the new layout', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({ loopLimit: 2 })
    const scope = `lp:{${on}}:loop:${loopScope(null, { conversation: hex(4), step: '' })}`
    const since = f.clock.now() - 1_000
    await f.redis.hset(scope, hex(1), `3:${since}:0`, hex(2), `1:${since}:2`)
    expect(await f.store.reserve(input(on, 1, loop(4, 1)))).toMatchObject({ ok: false, reason: 'loop_detected', count: 3 })
    // Two in flight: not a repeat; the entry moves to the new layout, its in flight in its own field.
    const r = await f.store.reserve(input(on, 1, loop(4, 2)))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    expect(await f.redis.hmget(scope, hex(2), `${hex(2)}:${since}`)).toEqual([`1:${since}`, '3'])
    await f.store.settle(r.reservation, 1)
    expect(await f.redis.hget(scope, `${hex(2)}:${since}`)).toBe('2')
  })

  it('keeps counting a scope the previous release indexed (marked by #z), and indexes it again once in this layout', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({ loopLimit: 1 })
    const scope = loopScope(null, { conversation: hex(6), step: '' })
    const [scopeKey, ageKey] = [`lp:{${on}}:loop:${scope}`, `lp:{${on}}:loopt:${scope}`]
    // As the previous release left a scope past 256 steps: each step counted once, none in flight but step 2's two,
    // its expiry in '#e' and its index in the sorted set, marked by '#z'.
    const start = f.clock.now() - 10_000
    const since = (i: number): number => start + i
    const steps = LOOP_STEPS_PER_SCOPE + 8
    const fields: string[] = ['#e', String(f.clock.now() + 675_000), '#z', '1']
    const index: (string | number)[] = []
    for (let i = 0; i < steps; i++) {
      fields.push(hex(i), `1:${since(i)}`, `${hex(i)}:${since(i)}`, i === 2 ? '2' : '0')
      index.push(since(i), hex(i))
    }
    await f.redis.hset(scopeKey, ...fields)
    await f.redis.zadd(ageKey, ...index)
    await f.redis.pexpire(scopeKey, 675_000)
    await f.redis.pexpire(ageKey, 675_000)

    // A step it counted still counts: one repeat passes (limit 1), the next is refused.
    await request(on, loop(6, 1))
    expect(await f.redis.hmget(scopeKey, hex(1), `${hex(1)}:${since(1)}`)).toEqual([`2:${since(1)}`, '0'])
    expect(await f.store.reserve(input(on, 1, loop(6, 1)))).toMatchObject({ ok: false, reason: 'loop_detected', count: 2 })
    // Its in flight count goes on: two in flight, so not a repeat; settle ends this one.
    const r = await f.store.reserve(input(on, 1, loop(6, 2)))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    expect(await f.redis.hmget(scopeKey, hex(2), `${hex(2)}:${since(2)}`)).toEqual([`1:${since(2)}`, '3'])
    await f.store.settle(r.reservation, 1)
    expect(await f.redis.hget(scopeKey, `${hex(2)}:${since(2)}`)).toBe('2')

    // The first new step that counts the scope finds it past 256 unindexed here: one full read indexes it again
    // ('#e' negated, '#z' gone) and trims the oldest to LOOP_STEPS_AFTER_TRIM.
    await request(on, loop(6, 0x1000))
    expect(await f.redis.hget(scopeKey, '#z')).toBeNull()
    expect(Number(await f.redis.hget(scopeKey, '#e'))).toBeLessThan(0)
    expect(await f.redis.zcard(ageKey)).toBe(LOOP_STEPS_AFTER_TRIM)
    // The older steps with their in flight fields, the new step's entry alone (its first request is in its record), '#e'.
    expect(await f.redis.hlen(scopeKey)).toBe(2 * (LOOP_STEPS_AFTER_TRIM - 1) + 1 + 1)
    expect(await f.redis.zrange(ageKey, 0, 0)).toEqual([hex(steps + 1 - LOOP_STEPS_AFTER_TRIM)])
    // From then on new steps go to the index without a full read.
    const later = await perRequest(16, (i) => request(on, loop(6, 0x2000 + i)))
    expect(later.by.hgetall ?? 0).toBe(0)
    expect(later.by.zadd).toBe(16)
    expect(await f.redis.zcard(ageKey)).toBe(LOOP_STEPS_AFTER_TRIM + 16)
  })

  it('the scope expires a window (and at most an eighth more) after its newest step, on both of its keys', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({ loopWindowSeconds: 80 })
    for (let i = 0; i < LOOP_STEPS_PER_SCOPE + 32; i++) await request(on, loop(3, i))
    const scope = loopScope(null, { conversation: hex(3), step: '' })
    for (const key of [`lp:{${on}}:loop:${scope}`, `lp:{${on}}:loopt:${scope}`]) {
      const ttl = await f.redis.pttl(key)
      expect(ttl, key).toBeGreaterThan(70_000)
      expect(ttl, key).toBeLessThanOrEqual(90_000)
    }
  })

  it('a window raised on the key keeps a looping scope (repeats only) for the new window', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({ loopWindowSeconds: 80 })
    await request(on, loop(5, 1))
    await f.admin.setBudget(on, { loopWindowSeconds: 3_600 })
    await request(on, loop(5, 1)) // a repeat: no new step, but its window now ends an hour after it began
    expect(await f.redis.pttl(`lp:{${on}}:loop:${loopScope(null, { conversation: hex(5), step: '' })}`)).toBeGreaterThan(3_500_000)
  })
})
