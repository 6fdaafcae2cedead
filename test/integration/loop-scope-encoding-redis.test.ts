import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loopKeyStart } from '../../src/budget/redis/redis-keys.js'
import { loopScope } from '../../src/loop/rule.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// A loop scope's hash is a hash table from its first write: reserve.lua and reserve-batch.lua write its '#e' 65
// characters long (past hash-max-listpack-value, 64 by default), so reading and writing a step finds it by hash, not
// by a scan of a listpack that grows with each step of the conversation. A scope the previous release wrote (a
// listpack, '#e' short) is read as it is, and becomes a hash table when its expiry is next extended.

const hex = (n: number): string => n.toString(16).padStart(16, '0')
const loop = (conversation: number, step: number) => ({ loop: { scope: loopScope(null, { conversation: hex(conversation), step: hex(step) }), step: hex(step) } })
/** The default loop window and an eighth, ms: the scope's lifetime after its newest first sighting. */
const SCOPE_TTL_MS = 600_000 + 75_000

describe('redis store: a loop scope is a hash table from its first write', () => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server)
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  const scopeKey = (hash: string, conversation: number): string => loopKeyStart(hash) + loopScope(null, { conversation: hex(conversation), step: '' })

  /** EVALSHA and EVAL calls Redis ran so far. */
  async function scriptCalls(): Promise<number> {
    let calls = 0
    for (const m of (await f.redis.info('commandstats')).matchAll(/cmdstat_eval(?:sha)?:calls=(\d+)/g)) calls += Number(m[1])
    return calls
  }

  /** The scope's encoding and its '#e' (as stored). */
  async function scopeState(hash: string, conversation: number): Promise<{ encoding: unknown; expires: string | null }> {
    const key = scopeKey(hash, conversation)
    return { encoding: await f.redis.object('ENCODING', key), expires: await f.redis.hget(key, '#e') }
  }

  it('a new conversation\'s scope, reserved alone (reserve.lua): a hash table, its expiry 65 characters that read as the number', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({})
    await f.store.settle(await f.reserved(on, 1, loop(1, 1)), 1)
    const { encoding, expires } = await scopeState(on, 1)
    expect(encoding).toBe('hashtable')
    expect(expires).toHaveLength(65)
    expect(Number(expires)).toBe(f.clock.now() + SCOPE_TTL_MS)
    expect(await f.redis.pttl(scopeKey(on, 1))).toBeGreaterThan(SCOPE_TTL_MS - 60_000)
  })

  it('new conversations\' scopes reserved in one turn (the first alone, the rest in one reserve-batch.lua call): hash tables', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({})
    await f.store.settle(await f.reserved(on, 1), 0) // the key's current periods exist, and its guard is found in force
    const before = await scriptCalls()
    const results = await Promise.all([2, 3, 4, 5].map((c) => f.store.reserve(input(on, 1, loop(c, 1)))))
    expect((await scriptCalls()) - before).toBe(2)
    for (const r of results) expect(r.ok).toBe(true)
    for (const c of [2, 3, 4, 5]) {
      const { encoding, expires } = await scopeState(on, c)
      expect(encoding).toBe('hashtable')
      expect(expires).toHaveLength(65)
      expect(Number(expires)).toBe(f.clock.now() + SCOPE_TTL_MS)
    }
  })

  it('a scope the previous release wrote (a listpack, \'#e\' short) is read as it is: its count goes on, and it becomes a hash table once its expiry is extended', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const on = await f.newKey({ loopLimit: 2 })
    const key = scopeKey(on, 6)
    const since = f.clock.now() - 100_000
    // Two repeats counted of step 1 (every request in flight in its own field, the previous release's layout); the
    // scope expires 120 s from now, before step 1's window ends, so the next request of it extends the expiry.
    await f.redis.hset(key, hex(1), `2:${since}`, '#e', String(f.clock.now() + 120_000))
    await f.redis.pexpire(key, 120_000)
    expect(await f.redis.object('ENCODING', key)).toBe('listpack')
    f.clock.advance(10)
    await f.store.settle(await f.reserved(on, 1, loop(6, 1)), 1) // repeat 3: admitted (limit 2 lets 2 through, counted as it is)
    expect(await f.redis.hget(key, hex(1))).toBe(`3:${since}`)
    const { encoding, expires } = await scopeState(on, 6)
    expect(encoding).toBe('hashtable')
    expect(Number(expires)).toBe(f.clock.now() + SCOPE_TTL_MS)
    f.clock.advance(10)
    const refused = await f.store.reserve(input(on, 1, loop(6, 1)))
    expect(refused).toMatchObject({ ok: false, reason: 'loop_detected', count: 3, limitCount: 2 })
  })
})
