import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KEY_INDEX, LAYOUT_FIELD, recordKey, TABLE_FIELD, TABLE_VALUE } from '../../src/budget/redis/redis-keys.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The key record is kept a hash table (TABLE_FIELD): reserve reads 10 to 14 of its fields on every request, each
// found by a scan in a listpack. A record an earlier release wrote is one until a minute's first admitted reserve.

describe.each(['string', 'hash'] as const)('redis store, %s layout: the key record as a hash table', (layout) => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server, { redisLayout: layout })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  const encoding = async (hash: string): Promise<unknown> => f.redis.object('ENCODING', recordKey(hash))

  /** A record as the previous release's admin wrote it (no TABLE_FIELD): a listpack. */
  async function earlierKey(name: string, dailyMicros: number): Promise<string> {
    const hash = createHash('sha256').update(`key-record ${layout} ${name}`).digest('hex')
    const fields: Record<string, string> = { name, providers: 'openai', active: '1', created_at: new Date(f.clock.now()).toISOString(), 'lim:daily': String(dailyMicros) }
    if (layout === 'string') fields[LAYOUT_FIELD] = '1'
    await f.redis.hset(recordKey(hash), fields)
    await f.redis.sadd(KEY_INDEX, hash)
    expect(await encoding(hash)).toBe('listpack')
    return hash
  }

  it('a key created by this release is a hash table, and reads as it was written', async () => {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const hash = await f.newKey({ limits: { daily: 1_000_000 } })
    expect(await encoding(hash)).toBe('hashtable')
    expect(await f.redis.hget(recordKey(hash), TABLE_FIELD)).toBe(TABLE_VALUE)
    expect(await f.admin.getKey(hash)).toMatchObject({ hash, name: 'test', providers: ['openai'], active: true, limits: { daily: 1_000_000 } })
    const r = await f.store.reserve(input(hash, 400_000))
    expect(r.ok).toBe(true)
  })

  it('a record an earlier release wrote becomes one at its minute\'s first reserve that writes the periods, its fields kept', async () => {
    f.clock.set('2026-05-04T12:01:10.000Z')
    const hash = await earlierKey('earlier', 1_000)
    const before = await f.redis.hgetall(recordKey(hash))
    const read = await f.admin.getKey(hash)
    // Refused (over the daily limit): on the hash layout nothing is written; on the string layout the minute's first
    // reserve writes its turned string whatever the verdict, and the record's table with it.
    const refused = await f.store.reserve(input(hash, 5_000))
    expect(refused.ok).toBe(false)
    expect(await encoding(hash)).toBe(layout === 'hash' ? 'listpack' : 'hashtable')
    expect(await f.redis.hgetall(recordKey(hash))).toEqual(layout === 'hash' ? before : { ...before, [TABLE_FIELD]: TABLE_VALUE })
    const admitted = await f.store.reserve(input(hash, 400))
    expect(admitted.ok).toBe(true)
    expect(await encoding(hash)).toBe('hashtable')
    expect(await f.redis.hgetall(recordKey(hash))).toEqual({ ...before, [TABLE_FIELD]: TABLE_VALUE })
    expect(await f.admin.getKey(hash)).toEqual(read)
    if (admitted.ok) await f.store.settle(admitted.reservation, 300)
    // The next minute's first reserve writes nothing more (HSETNX on a record that has it).
    f.clock.set('2026-05-04T12:02:10.000Z')
    const again = await f.store.reserve(input(hash, 100))
    expect(again.ok).toBe(true)
    expect(await f.redis.hgetall(recordKey(hash))).toEqual({ ...before, [TABLE_FIELD]: TABLE_VALUE })
  })
})
