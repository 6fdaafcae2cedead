import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { reservationKey } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES, type Reservation } from '../../src/budget/types.js'
import { loopScope } from '../../src/loop/rule.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The held reservation record on Redis: one string, 'held <amount> <provider> <created_at>' then its session and
// loop step (after the key's tag), written with its TTL in one SET; it names its five periods by its created_at, and
// abandon rebuilds the keys from it. Records the previous releases wrote as hashes (session and loop step in two
// fields; before that in one field, booked; before that every booked key in full) are still extended, settled and
// abandoned as they booked.

const step = 'a'.repeat(15) + '1'
const loopOf = (sessionId: string | null) => ({ scope: loopScope(sessionId, { conversation: 'c'.repeat(16), step }), step })

describe('redis store, hash layout: the held reservation record', () => {
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

  const record = (hash: string, r: Reservation): string => reservationKey(hash, r.requestId)

  /** The loop step's requests in flight in the window the reservation was admitted in. */
  async function inFlight(r: Reservation): Promise<string | null> {
    const [key, sinceMs, loopStep] = (r.bookedKeys.at(-1) as string).split('#') as [string, string, string]
    return f.redis.hget(key, `${loopStep}:${sinceMs}`)
  }

  /**
   * Opens the loop step's window now in the scope of `sessionId`, as a first request that has ended leaves it: a step's
   * first request in its window is not booked (its record alone tells whether it is in flight); the later ones are,
   * in the step's in flight field.
   */
  async function opened(hash: string, sessionId: string | null): Promise<void> {
    const scopeKey = `lp:{${hash}}:loop:${loopOf(sessionId).scope}`
    await f.redis.hset(scopeKey, step, `1:${f.clock.now()}#opener`)
    await f.redis.pexpire(scopeKey, 600_000)
  }

  /** Every period of `at`, session run-1 and the loop steps of `withLoop` hold nothing any more. */
  async function expectReleased(hash: string, at: string, ...withLoop: Reservation[]): Promise<void> {
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, at), w).toEqual({ spent: 0, held: 0 })
    const s = await f.session(hash, 'run-1')
    expect([Number(s.held), Number(s.spent ?? 0)]).toEqual([0, 0])
    for (const r of withLoop) expect(await inFlight(r)).toBe('0')
  }

  /** Rewrites a held record as the previous release's reserve wrote it: a hash, its session and loop step in two fields. */
  async function asPreviousRelease(hash: string, r: Reservation): Promise<void> {
    const key = record(hash, r)
    const [state, amount, provider, createdAt, ...booked] = ((await f.redis.get(key)) as string).split(' ')
    const ttl = await f.redis.ttl(key)
    const fields = ['state', state, 'amount', amount, 'provider', provider, 'created_at', createdAt] as string[]
    for (const entry of booked) fields.push(...(entry.startsWith('loop:') ? ['loop', entry.slice('loop:'.length)] : ['booked', entry]))
    await f.redis.del(key)
    await f.redis.hset(key, ...fields)
    await f.redis.expire(key, ttl)
  }

  /** Rewrites a held record as the release before the previous one wrote it: its session and loop step in one field, `booked`. */
  async function asReleaseBefore(hash: string, r: Reservation): Promise<void> {
    await asPreviousRelease(hash, r)
    const key = record(hash, r)
    const [booked, loop] = await f.redis.hmget(key, 'booked', 'loop')
    await f.redis.hdel(key, 'loop')
    await f.redis.hset(key, 'booked', [booked, loop === null ? null : `loop:${loop}`].filter((e) => e !== null).join(' '))
  }

  /** Rewrites a held record as an earlier release wrote it: every booked key in full in `booked`. */
  async function asEarlierRelease(hash: string, r: Reservation): Promise<void> {
    await asPreviousRelease(hash, r)
    const key = record(hash, r)
    const [amount, provider, createdAt] = await f.redis.hmget(key, 'amount', 'provider', 'created_at')
    const ttl = await f.redis.ttl(key)
    await f.redis.del(key)
    await f.redis.hset(key, 'state', 'held', 'amount', amount as string, 'provider', provider as string, 'booked', r.bookedKeys.join(' '), 'created_at', createdAt as string)
    await f.redis.expire(key, ttl)
  }

  it('holds state, amount, provider and created_at, then the session and the loop step it booked: one short string', async () => {
    f.clock.set('2026-05-31T23:59:30.250Z')
    const hash = await f.newKey({ loopLimit: 5 })
    const createdAt = '2026-05-31T23:59:30.250Z'
    const since = Date.parse(createdAt)
    const plain = await f.reserved(hash, 100)
    expect(await f.redis.get(record(hash, plain))).toBe(`held 100 openai ${createdAt}`)
    // Up to 44 bytes, Redis keeps a string in one allocation with its key object.
    expect(await f.redis.object('ENCODING', record(hash, plain))).toBe('embstr')
    const session = await f.reserved(hash, 10, { session: { id: 'run-1', budgetMicros: 1_000, maxSteps: null } })
    expect(await f.redis.get(record(hash, session))).toBe(`held 10 openai ${createdAt} s:run-1`)
    const first = await f.reserved(hash, 10, { loop: loopOf(null) })
    expect(await f.redis.get(record(hash, first))).toBe(`held 10 openai ${createdAt}`)
    const loop = await f.reserved(hash, 10, { loop: loopOf(null) })
    expect(await f.redis.get(record(hash, loop))).toBe(`held 10 openai ${createdAt} loop:c:${'c'.repeat(16)}#${since}#${step}`)
    await opened(hash, 'run-2')
    const both = await f.reserved(hash, 10, { session: { id: 'run-2', budgetMicros: null, maxSteps: null }, loop: loopOf('run-2') })
    expect(await f.redis.get(record(hash, both))).toBe(`held 10 openai ${createdAt} s:run-2 loop:s:run-2#${since}#${step}`)
    for (const r of [plain, session, loop, both]) {
      expect(await f.redis.ttl(record(hash, r))).toBeGreaterThan(35 * 86_400 - 5)
      expect(await f.redis.ttl(record(hash, r))).toBeLessThanOrEqual(35 * 86_400)
    }
  })

  it('abandon after the clock moved on releases the periods of created_at, the session and the loop step', async () => {
    f.clock.set('2026-05-31T23:59:59.900Z')
    const at = '2026-05-31T23:59:59.900Z'
    const hash = await f.newKey({ loopLimit: 5 })
    const plain = await f.reserved(hash, 100)
    await opened(hash, 'run-1')
    await opened(hash, null)
    const both = await f.reserved(hash, 30, { session: { id: 'run-1', budgetMicros: 1_000, maxSteps: null }, loop: loopOf('run-1') })
    const loopOnly = await f.reserved(hash, 20, { loop: loopOf(null) })
    expect(await inFlight(both)).toBe('1')
    expect(await inFlight(loopOnly)).toBe('1')
    // A new minute, hour, day and month (and the same week): the holds stay in the periods they were booked in.
    f.clock.set('2026-06-01T00:00:00.100Z')
    await f.store.abandon(hash, plain.requestId)
    await f.store.abandon(hash, both.requestId)
    await f.store.abandon(hash, loopOnly.requestId)
    await expectReleased(hash, at, both, loopOnly)
    expect(await f.store.settle(both, 30)).toEqual({ chargedMicros: 0, alreadySettled: true })
  })

  it('a record of the release before the previous one (session and loop step in booked) is abandoned in the keys it lists', async () => {
    f.clock.set('2026-05-31T23:59:59.900Z')
    const at = '2026-05-31T23:59:59.900Z'
    const hash = await f.newKey({ loopLimit: 5 })
    await opened(hash, 'run-1')
    await opened(hash, null)
    const both = await f.reserved(hash, 30, { session: { id: 'run-1', budgetMicros: 1_000, maxSteps: null }, loop: loopOf('run-1') })
    const loopOnly = await f.reserved(hash, 20, { loop: loopOf(null) })
    for (const r of [both, loopOnly]) await asReleaseBefore(hash, r)
    expect(await f.redis.hmget(record(hash, both), 'booked', 'loop')).toEqual([`s:run-1 loop:s:run-1#${Date.parse(at)}#${step}`, null])
    f.clock.set('2026-06-01T00:00:00.100Z')
    await f.store.abandon(hash, both.requestId)
    await f.store.abandon(hash, loopOnly.requestId)
    await expectReleased(hash, at, both, loopOnly)
  })

  it('a record of an earlier release is extended, settled and abandoned in the keys it lists', async () => {
    f.clock.set('2026-05-31T23:59:59.900Z')
    const at = '2026-05-31T23:59:59.900Z'
    const hash = await f.newKey({ loopLimit: 5, limits: { daily: 10_000 } })
    const session = { id: 'run-1', budgetMicros: 10_000, maxSteps: null }
    await opened(hash, 'run-1')
    const settled = await f.reserved(hash, 100, { session, loop: loopOf('run-1') })
    const abandoned = await f.reserved(hash, 40, { session, loop: loopOf('run-1') })
    for (const r of [settled, abandoned]) await asEarlierRelease(hash, r)
    f.clock.set('2026-06-01T00:00:00.100Z')
    expect(await f.store.extend(settled, 50, 50)).toEqual({ ok: true, grantedMicros: 50 })
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, at), w).toEqual({ spent: 0, held: 190 })
    expect(await f.store.settle(settled, 120)).toEqual({ chargedMicros: 120, alreadySettled: false })
    await f.store.abandon(hash, abandoned.requestId)
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, at), w).toEqual({ spent: 120, held: 0 })
    const s = await f.session(hash, 'run-1')
    expect([Number(s.held), Number(s.spent), Number(s.steps)]).toEqual([0, 120, 2])
    expect(await inFlight(abandoned)).toBe('0')
    expect(await f.redis.get(record(hash, abandoned))).toBe('settled 0')
  })

  it('a hash record of the previous release is extended, settled and abandoned in the keys it names, and settles as a string', async () => {
    f.clock.set('2026-05-31T23:59:59.900Z')
    const at = '2026-05-31T23:59:59.900Z'
    const hash = await f.newKey({ loopLimit: 5, limits: { daily: 10_000 } })
    const session = { id: 'run-1', budgetMicros: 10_000, maxSteps: null }
    const plain = await f.reserved(hash, 10)
    await opened(hash, 'run-1')
    const settled = await f.reserved(hash, 100, { session, loop: loopOf('run-1') })
    const abandoned = await f.reserved(hash, 40, { session, loop: loopOf('run-1') })
    for (const r of [plain, settled, abandoned]) await asPreviousRelease(hash, r)
    expect(await f.redis.hgetall(record(hash, plain))).toEqual({ state: 'held', amount: '10', provider: 'openai', created_at: at })
    expect(await f.redis.hmget(record(hash, settled), 'booked', 'loop')).toEqual(['s:run-1', `s:run-1#${Date.parse(at)}#${step}`])
    f.clock.set('2026-06-01T00:00:00.100Z')
    expect(await f.store.extend(settled, 50, 50)).toEqual({ ok: true, grantedMicros: 50 })
    expect(await f.redis.hget(record(hash, settled), 'amount')).toBe('150')
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, at), w).toEqual({ spent: 0, held: 200 })
    expect(await f.store.settle(settled, 120)).toEqual({ chargedMicros: 120, alreadySettled: false })
    expect(await f.store.settle(plain, 7)).toEqual({ chargedMicros: 7, alreadySettled: false })
    await f.store.abandon(hash, abandoned.requestId)
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, at), w).toEqual({ spent: 127, held: 0 })
    const s = await f.session(hash, 'run-1')
    expect([Number(s.held), Number(s.spent), Number(s.steps)]).toEqual([0, 120, 2])
    expect(await inFlight(abandoned)).toBe('0')
    expect(await inFlight(settled)).toBe('0')
    expect(await f.redis.get(record(hash, settled))).toBe('settled 120')
    expect(await f.redis.get(record(hash, plain))).toBe('settled 7')
    expect(await f.redis.get(record(hash, abandoned))).toBe('settled 0')
    expect(await f.store.settle(settled, 120)).toEqual({ chargedMicros: 120, alreadySettled: true })
  })

  it('settle marks the record settled with a settled record\'s TTL; a retry reports the first charge and keeps it', async () => {
    f.clock.set('2026-05-31T23:59:30.250Z')
    const hash = await f.newKey({ loopLimit: 5 })
    const r = await f.reserved(hash, 100, { session: { id: 'run-1', budgetMicros: null, maxSteps: null }, loop: loopOf('run-1') })
    expect(await f.store.settle(r, 40)).toEqual({ chargedMicros: 40, alreadySettled: false })
    expect(await f.redis.get(record(hash, r))).toBe('settled 40')
    expect(await f.redis.ttl(record(hash, r))).toBeGreaterThan(86_400 - 5)
    expect(await f.redis.ttl(record(hash, r))).toBeLessThanOrEqual(86_400)
    // A retry with another charge, as a settle of a record with no reservation (a tombstone): nothing changes.
    expect(await f.store.settle(r, 55)).toEqual({ chargedMicros: 40, alreadySettled: true })
    expect(await f.redis.get(record(hash, r))).toBe('settled 40')
    expect(await f.redis.ttl(record(hash, r))).toBeLessThanOrEqual(86_400)
    const missing = { ...r, requestId: 'never-reserved', bookedKeys: r.bookedKeys.slice(0, 5), reservedMicros: 0 }
    expect(await f.store.settle(missing, 9)).toEqual({ chargedMicros: 9, alreadySettled: false })
    expect(await f.redis.get(record(hash, missing))).toBe('settled 9')
    expect(await f.store.settle(missing, 11)).toEqual({ chargedMicros: 9, alreadySettled: true })
    expect(await f.redis.get(record(hash, missing))).toBe('settled 9')
    expect(await f.redis.ttl(record(hash, missing))).toBeGreaterThan(86_400 - 5)
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, '2026-05-31T23:59:30.250Z'), w).toEqual({ spent: 49, held: 0 })
  })

  it('a settle Redis refuses to write (out of memory) fails as it is and changes nothing', async () => {
    f.clock.set('2026-05-31T23:59:30.250Z')
    const hash = await f.newKey({ loopLimit: 5 })
    const r = await f.reserved(hash, 100)
    const before = await f.redis.get(record(hash, r))
    await f.redis.config('SET', 'maxmemory', '1')
    try {
      await expect(f.store.settle(r, 40)).rejects.toThrow(/OOM/)
    } finally {
      await f.redis.config('SET', 'maxmemory', '0')
    }
    expect(await f.redis.get(record(hash, r))).toBe(before)
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, '2026-05-31T23:59:30.250Z'), w).toEqual({ spent: 0, held: 100 })
    expect(await f.store.settle(r, 40)).toEqual({ chargedMicros: 40, alreadySettled: false })
  })

  it('extend adds to the string record and keeps its TTL', async () => {
    f.clock.set('2026-05-31T23:59:30.250Z')
    const hash = await f.newKey({ loopLimit: 5 })
    const r = await f.reserved(hash, 100, { session: { id: 'run-1', budgetMicros: null, maxSteps: null }, loop: loopOf('run-1') })
    const before = (await f.redis.get(record(hash, r))) as string
    await f.redis.expire(record(hash, r), 1_000)
    expect(await f.store.extend(r, 25, 25)).toEqual({ ok: true, grantedMicros: 25 })
    expect(await f.redis.get(record(hash, r))).toBe(before.replace('held 100 ', 'held 125 '))
    expect(await f.redis.ttl(record(hash, r))).toBeGreaterThan(990)
    expect(await f.redis.ttl(record(hash, r))).toBeLessThanOrEqual(1_000)
  })
})
