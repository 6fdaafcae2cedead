import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { reservationKey } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES, type Reservation } from '../../src/budget/types.js'
import { loopScope } from '../../src/loop/rule.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The held reservation record on Redis: it names its five periods by its created_at and lists only its
// session and loop step (after the key's tag, each in its own field), so it stays a listpack; abandon rebuilds
// the keys from it. Records written by the previous release (session and loop step in one field) and by the
// one before (every booked key in full) are still extended, settled and abandoned as they booked.

const step = 'a'.repeat(15) + '1'
const loopOf = (sessionId: string | null) => ({ scope: loopScope(sessionId, { conversation: 'c'.repeat(16), step }), step })

describe('redis store: the held reservation record', () => {
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

  const record = (hash: string, r: Reservation): string => reservationKey(hash, r.requestId)

  /** The loop step's requests in flight in the window the reservation was admitted in. */
  async function inFlight(r: Reservation): Promise<string | null> {
    const [key, sinceMs, loopStep] = (r.bookedKeys.at(-1) as string).split('#') as [string, string, string]
    return f.redis.hget(key, `${loopStep}:${sinceMs}`)
  }

  /** Every period of `at`, session run-1 and the loop steps of `withLoop` hold nothing any more. */
  async function expectReleased(hash: string, at: string, ...withLoop: Reservation[]): Promise<void> {
    for (const w of WINDOW_NAMES) expect(await f.period(hash, w, at), w).toEqual({ spent: 0, held: 0 })
    const s = await f.session(hash, 'run-1')
    expect([Number(s.held), Number(s.spent ?? 0)]).toEqual([0, 0])
    for (const r of withLoop) expect(await inFlight(r)).toBe('0')
  }

  /** Rewrites a held record as the release before the previous one wrote it: every booked key in full in `booked`. */
  async function asEarlierRelease(hash: string, r: Reservation): Promise<void> {
    const key = record(hash, r)
    const [amount, provider, createdAt] = await f.redis.hmget(key, 'amount', 'provider', 'created_at')
    const ttl = await f.redis.ttl(key)
    await f.redis.del(key)
    await f.redis.hset(key, 'state', 'held', 'amount', amount as string, 'provider', provider as string, 'booked', r.bookedKeys.join(' '), 'created_at', createdAt as string)
    await f.redis.expire(key, ttl)
  }

  /** Rewrites a held record as the previous release's reserve wrote it: its session and loop step in one field, `booked`. */
  async function asPreviousRelease(hash: string, r: Reservation): Promise<void> {
    const key = record(hash, r)
    const [booked, loop] = await f.redis.hmget(key, 'booked', 'loop')
    await f.redis.hdel(key, 'loop')
    await f.redis.hset(key, 'booked', [booked, loop === null ? null : `loop:${loop}`].filter((e) => e !== null).join(' '))
  }

  it('holds state, amount, provider and created_at, and booked only for a session, loop only for a loop step: a listpack', async () => {
    f.clock.set('2026-05-31T23:59:30.250Z')
    const hash = await f.newKey({ loopLimit: 5 })
    const createdAt = '2026-05-31T23:59:30.250Z'
    const plain = await f.reserved(hash, 100)
    expect(await f.redis.hgetall(record(hash, plain))).toEqual({ state: 'held', amount: '100', provider: 'openai', created_at: createdAt })
    const session = await f.reserved(hash, 10, { session: { id: 'run-1', budgetMicros: 1_000, maxSteps: null } })
    expect(await f.redis.hget(record(hash, session), 'booked')).toBe('s:run-1')
    expect(await f.redis.hget(record(hash, session), 'loop')).toBeNull()
    const loop = await f.reserved(hash, 10, { loop: loopOf(null) })
    const since = Date.parse(createdAt)
    expect(await f.redis.hmget(record(hash, loop), 'booked', 'loop')).toEqual([null, `c:${'c'.repeat(16)}#${since}#${step}`])
    const both = await f.reserved(hash, 10, { session: { id: 'run-2', budgetMicros: null, maxSteps: null }, loop: loopOf('run-2') })
    expect(await f.redis.hmget(record(hash, both), 'booked', 'loop')).toEqual(['s:run-2', `s:run-2#${since}#${step}`])
    // A session id of 24 characters and a loop step: each value still fits.
    const longId = 'agent-run-0123456789abcd'
    const longBoth = await f.reserved(hash, 10, { session: { id: longId, budgetMicros: null, maxSteps: null }, loop: loopOf(longId) })
    // Redis keeps a hash whose values are all short (64 bytes by default) in its compact encoding.
    for (const r of [plain, session, loop, both, longBoth]) expect(await f.redis.object('ENCODING', record(hash, r))).toMatch(/^(listpack|ziplist)$/)
  })

  it('abandon after the clock moved on releases the periods of created_at, the session and the loop step', async () => {
    f.clock.set('2026-05-31T23:59:59.900Z')
    const at = '2026-05-31T23:59:59.900Z'
    const hash = await f.newKey({ loopLimit: 5 })
    const plain = await f.reserved(hash, 100)
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

  it('a record of the previous release (session and loop step in booked) is abandoned in the keys it lists', async () => {
    f.clock.set('2026-05-31T23:59:59.900Z')
    const at = '2026-05-31T23:59:59.900Z'
    const hash = await f.newKey({ loopLimit: 5 })
    const both = await f.reserved(hash, 30, { session: { id: 'run-1', budgetMicros: 1_000, maxSteps: null }, loop: loopOf('run-1') })
    const loopOnly = await f.reserved(hash, 20, { loop: loopOf(null) })
    for (const r of [both, loopOnly]) await asPreviousRelease(hash, r)
    expect(await f.redis.hmget(record(hash, both), 'booked', 'loop')).toEqual([`s:run-1 loop:s:run-1#${Date.parse(at)}#${step}`, null])
    f.clock.set('2026-06-01T00:00:00.100Z')
    await f.store.abandon(hash, both.requestId)
    await f.store.abandon(hash, loopOnly.requestId)
    await expectReleased(hash, at, both, loopOnly)
  })

  it('a record of the release before is extended, settled and abandoned in the keys it lists', async () => {
    f.clock.set('2026-05-31T23:59:59.900Z')
    const at = '2026-05-31T23:59:59.900Z'
    const hash = await f.newKey({ loopLimit: 5, limits: { daily: 10_000 } })
    const session = { id: 'run-1', budgetMicros: 10_000, maxSteps: null }
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
    expect(await f.redis.hgetall(record(hash, abandoned))).toEqual({ state: 'settled', charged: '0' })
  })
})
