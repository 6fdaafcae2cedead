import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { useStringPeriods } from '../../src/budget/redis/admin.js'
import { curKey, LAYOUT_KEY, periodKey, recordKey } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES, type Reservation, type WindowName } from '../../src/budget/types.js'
import { periodOf } from '../../src/budget/windows.js'
import { useStringPeriodsCommand } from '../../src/cli/store-layout.js'
import { loopScope } from '../../src/loop/rule.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The two Redis layouts of a key's current periods (lua/reserve.lua): one hash each (a key without `layout`, as every
// key of a store a previous release wrote), or one string (`layout` = '1'). A key is switched by
// `loopers store use-string-periods` (useStringPeriods) while holds booked in its hashes are in flight: its next
// reserve folds the hashes into the string and leaves a tombstone in each hash's name, and every hold is released
// exactly once where it now lives.

const step = 'b'.repeat(15) + '2'
const loop = { scope: loopScope('run-1', { conversation: 'd'.repeat(16), step }), step }
const session = { id: 'run-1', budgetMicros: 100_000, maxSteps: null }

describe('redis store: the string layout of the current periods, and the switch to it', () => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    // A store with keys from before this release: new keys keep the hash layout until the operator's step.
    f = await createBudgetFixture(server, { redisLayout: 'hash' })
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  /** A key on the hash layout, then (`toString`) moved to the string layout as the operator's step does. */
  async function hashKey(change: Parameters<BudgetFixture['newKey']>[0] = {}): Promise<string> {
    // (A store the step marked before gives every new key the string layout.)
    await f.redis.set(LAYOUT_KEY, '0')
    const hash = await f.newKey(change)
    expect(await f.redis.hget(recordKey(hash), 'layout')).toBeNull()
    return hash
  }

  /** The five periods of `hash` at the clock's time (or `atIso`): spent and held. */
  async function periods(hash: string, atIso?: string): Promise<Record<WindowName, { spent: number; held: number }>> {
    const out = {} as Record<WindowName, { spent: number; held: number }>
    for (const w of WINDOW_NAMES) out[w] = await f.period(hash, w, atIso)
    return out
  }

  const every = (spent: number, held: number): Record<WindowName, { spent: number; held: number }> =>
    Object.fromEntries(WINDOW_NAMES.map((w) => [w, { spent, held }])) as Record<WindowName, { spent: number; held: number }>

  /** Whether each current period of `hash` is a tombstone: the previous release's hash commands fail on it. */
  async function tombstones(hash: string): Promise<boolean[]> {
    const at = f.clock.now()
    return Promise.all(WINDOW_NAMES.map(async (w) => (await f.redis.get(periodKey(hash, w, periodOf(w, at).id))) === 'cur'))
  }

  it('holds booked in the hashes before the switch are settled, extended and abandoned after it exactly once', async () => {
    f.clock.set('2026-05-04T12:00:10.000Z')
    const hash = await hashKey({ loopLimit: 5, limits: { daily: 10_000 } })
    const settled = await f.reserved(hash, 1_000, { session, loop })
    const extended = await f.reserved(hash, 500)
    const abandoned = await f.reserved(hash, 300, { session })
    const early = await f.reserved(hash, 200)
    await f.store.settle(early, 150)
    expect(await periods(hash)).toEqual(every(150, 1_800))

    expect(await useStringPeriods(f.redis)).toBeGreaterThanOrEqual(1)
    expect(await f.redis.hget(recordKey(hash), 'layout')).toBe('1')
    // The next reserve folds: what the hashes held is in the string, the hashes' names hold tombstones.
    f.clock.advance(1_000)
    const after = await f.reserved(hash, 400)
    expect(await tombstones(hash)).toEqual([true, true, true, true, true])
    expect(await periods(hash)).toEqual(every(150, 2_200))
    // What a previous release's scripts do on a period (read it, add a hold) fails there: they fail closed.
    const daily = periodKey(hash, 'daily', periodOf('daily', f.clock.now()).id)
    await expect(f.redis.hmget(daily, 'spent', 'held')).rejects.toThrow(/WRONGTYPE/)
    await expect(f.redis.hincrby(daily, 'held', 1)).rejects.toThrow(/WRONGTYPE/)

    expect(await f.store.settle(settled, 700)).toEqual({ chargedMicros: 700, alreadySettled: false })
    expect(await periods(hash)).toEqual(every(850, 1_200))
    expect(await f.store.extend(extended, 100, 100)).toEqual({ ok: true, grantedMicros: 100 })
    expect(await periods(hash)).toEqual(every(850, 1_300))
    await f.store.abandon(hash, abandoned.requestId)
    expect(await periods(hash)).toEqual(every(850, 1_000))
    expect(await f.store.settle(extended, 600)).toEqual({ chargedMicros: 600, alreadySettled: false })
    expect(await f.store.settle(after, 400)).toEqual({ chargedMicros: 400, alreadySettled: false })
    expect(await periods(hash)).toEqual(every(1_850, 0))
    // Settled again: nothing moves.
    expect(await f.store.settle(settled, 700)).toEqual({ chargedMicros: 700, alreadySettled: true })
    expect(await periods(hash)).toEqual(every(1_850, 0))
    expect(await f.session(hash, 'run-1')).toMatchObject({ spent: '700', held: '0' })
    // The daily limit counts every charge and hold from both layouts: 10,000 - 1,850 left.
    expect(await f.store.reserve(input(hash, 8_151))).toMatchObject({ ok: false, window: 'daily' })
    expect((await f.store.reserve(input(hash, 8_150))).ok).toBe(true)
  })

  it('a hold booked in a hash before the switch is released in the period it moved to when its window turned', async () => {
    f.clock.set('2026-05-04T12:05:50.000Z')
    const before = '2026-05-04T12:05:50.000Z'
    const hash = await hashKey()
    const old = await f.reserved(hash, 900)
    await useStringPeriods(f.redis)
    f.clock.advance(1_000)
    const folded = await f.reserved(hash, 100)
    // The next minute: the folded minute moves into its hash (the tombstone's name), holding both holds.
    f.clock.set('2026-05-04T12:06:05.000Z')
    const next = await f.reserved(hash, 10)
    expect(await f.period(hash, 'minute', before)).toEqual({ spent: 0, held: 1_000 })
    expect(await f.period(hash, 'minute')).toEqual({ spent: 0, held: 10 })
    expect(await f.period(hash, 'hourly')).toEqual({ spent: 0, held: 1_010 })
    await f.store.settle(old, 800)
    await f.store.settle(folded, 50)
    await f.store.settle(next, 5)
    expect(await f.period(hash, 'minute', before)).toEqual({ spent: 850, held: 0 })
    expect(await f.period(hash, 'minute')).toEqual({ spent: 5, held: 0 })
    for (const w of ['hourly', 'daily', 'weekly', 'monthly'] as const) expect(await f.period(hash, w)).toEqual({ spent: 855, held: 0 })
  })

  it('a flood across the switch never overspends, and every hold ends released', async () => {
    f.clock.set('2026-05-04T12:10:00.000Z')
    const limit = 50_000
    const hash = await hashKey({ limits: { daily: limit } })
    const admitted: Reservation[] = []
    let refused = 0
    const one = async (): Promise<void> => {
      const r = await f.store.reserve(input(hash, 700))
      if (r.ok) admitted.push(r.reservation)
      else refused++
    }
    const flood = Array.from({ length: 120 }, (_, i) => (i === 40 ? useStringPeriods(f.redis).then(one) : one()))
    await Promise.all(flood)
    expect(admitted.length * 700).toBeLessThanOrEqual(limit)
    expect(admitted.length).toBe(Math.floor(limit / 700))
    expect(refused).toBe(120 - admitted.length)
    expect(await f.period(hash, 'daily')).toEqual({ spent: 0, held: admitted.length * 700 })
    await Promise.all(admitted.map((r, i) => f.store.settle(r, i % 2 === 0 ? 700 : 0)))
    const charged = Math.ceil(admitted.length / 2) * 700
    expect(await periods(hash)).toEqual(every(charged, 0))
    expect(await tombstones(hash)).toEqual([true, true, true, true, true])
  })

  it('turns every window at a month end with requests in flight, each hold settled in the periods it was booked in', async () => {
    await f.redis.set(LAYOUT_KEY, '1')
    const hash = await f.newKey({ limits: { monthly: 5_000 } })
    expect(await f.redis.hget(recordKey(hash), 'layout')).toBe('1')
    const april = '2026-04-30T23:59:59.500Z'
    f.clock.set(april)
    const a = await f.reserved(hash, 1_000)
    const b = await f.reserved(hash, 2_000)
    await f.store.settle(a, 400)
    // May (a Friday): every window but the week turns; April's periods move into their hashes, holding b.
    f.clock.set('2026-05-01T00:00:00.250Z')
    const c = await f.reserved(hash, 4_000)
    expect(await f.period(hash, 'monthly', april)).toEqual({ spent: 400, held: 2_000 })
    expect(await f.period(hash, 'monthly')).toEqual({ spent: 0, held: 4_000 })
    expect(await f.period(hash, 'weekly')).toEqual({ spent: 400, held: 6_000 })
    await f.store.settle(b, 1_500)
    expect(await f.period(hash, 'monthly', april)).toEqual({ spent: 1_900, held: 0 })
    expect(await f.period(hash, 'daily', april)).toEqual({ spent: 1_900, held: 0 })
    expect(await f.period(hash, 'minute', april)).toEqual({ spent: 1_900, held: 0 })
    expect(await f.period(hash, 'monthly')).toEqual({ spent: 0, held: 4_000 })
    expect(await f.period(hash, 'weekly')).toEqual({ spent: 1_900, held: 4_000 })
    // The new month's limit counts only May: 5,000 - 4,000 held.
    expect(await f.store.reserve(input(hash, 1_001))).toMatchObject({ ok: false, window: 'monthly' })
    await f.store.settle(c, 4_000)
    expect(await f.period(hash, 'monthly')).toEqual({ spent: 4_000, held: 0 })
    expect(await f.period(hash, 'weekly')).toEqual({ spent: 5_900, held: 0 })
  })

  it('a clock behind takes its period back from the hash it moved to, and gives the newer one back', async () => {
    const hash = await hashKey({ limits: { minute: 1_000 } })
    await f.redis.hset(recordKey(hash), 'layout', '1')
    f.clock.set('2026-05-04T12:20:59.900Z')
    const behind = await f.reserved(hash, 300)
    f.clock.set('2026-05-04T12:21:00.100Z')
    const ahead = await f.reserved(hash, 700)
    f.clock.set('2026-05-04T12:20:59.950Z')
    // The earlier minute has 700 left, not a fresh 1,000.
    expect(await f.store.reserve(input(hash, 701))).toMatchObject({ ok: false, window: 'minute' })
    const late = await f.reserved(hash, 700)
    f.clock.set('2026-05-04T12:21:00.200Z')
    expect(await f.store.reserve(input(hash, 301))).toMatchObject({ ok: false, window: 'minute' })
    for (const r of [behind, ahead, late]) await f.store.settle(r, 100)
    expect(await f.period(hash, 'minute', '2026-05-04T12:20:59.900Z')).toEqual({ spent: 200, held: 0 })
    expect(await f.period(hash, 'minute')).toEqual({ spent: 100, held: 0 })
    expect(await f.period(hash, 'hourly')).toEqual({ spent: 300, held: 0 })
  })

  it('budget status reads the same numbers on both layouts', async () => {
    f.clock.set('2026-05-04T12:30:20.000Z')
    const onHashes = await hashKey({ limits: { daily: 9_000 }, rpm: 100 })
    const onString = await hashKey({ limits: { daily: 9_000 }, rpm: 100 })
    await f.redis.hset(recordKey(onString), 'layout', '1')
    for (const hash of [onHashes, onString]) {
      const a = await f.reserved(hash, 1_000)
      await f.reserved(hash, 2_000)
      await f.store.settle(a, 600)
    }
    expect(await f.redis.exists(curKey(onHashes))).toBe(0)
    expect(await f.redis.exists(curKey(onString))).toBe(1)
    const status = await f.admin.status(onString)
    expect(status).toEqual(await f.admin.status(onHashes))
    expect(status?.daily).toMatchObject({ limitMicros: 9_000, spentMicros: 600, heldMicros: 2_000 })
    expect(status?.minute).toMatchObject({ requests: 2 })
  })

  /**
   * The KEYS count of each budget script call the store sends while `run` runs (MONITOR): 7 for a reserve or settle
   * and 8 for an extend passing the period hashes, 3 and 4 passing the string.
   */
  async function keyCounts(run: () => Promise<void>): Promise<number[]> {
    const monitor = await f.redis.duplicate().monitor()
    const counts: number[] = []
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'evalsha' || args[0]?.toLowerCase() === 'eval') counts.push(Number(args[2]))
    })
    try {
      await run()
      // MONITOR shows a command as it runs: one sent after them arrives after them.
      await f.redis.ping()
      await new Promise((resolve) => setTimeout(resolve, 50))
    } finally {
      monitor.disconnect()
    }
    return counts
  }

  /** A request on a key of its own in a new minute, so the store has read the marker (once a minute) for the next. */
  async function readMarker(at: string): Promise<void> {
    f.clock.set(at)
    await f.store.settle(await f.reserved(await f.newKey(), 1), 1)
    await f.redis.ping()
  }

  it('while the store is not marked the period hashes are passed, and a key switched mid-minute is still right', async () => {
    const hash = await hashKey({ limits: { daily: 10_000 } })
    await readMarker('2026-05-04T13:00:10.000Z')
    let held: Reservation | undefined
    expect(await keyCounts(async () => { held = await f.reserved(hash, 1_000) })).toEqual([7])
    expect(await f.redis.get(`${recordKey(hash).slice(0, -3)}r:${held?.requestId}`)).toMatch(/^held /)

    // The marker flips within the minute: the store still passes the period hashes, the record says string.
    await useStringPeriods(f.redis)
    f.clock.advance(1_000)
    let kept: Reservation | undefined
    const counts = await keyCounts(async () => {
      kept = await f.reserved(hash, 400)
      expect(await tombstones(hash)).toEqual([true, true, true, true, true])
      expect(await periods(hash)).toEqual(every(0, 1_400))
      expect(await f.redis.get(`${recordKey(hash).slice(0, -3)}r:${kept.requestId}`)).toMatch(/^kept /)
      expect(await f.store.extend(held as Reservation, 100, 100)).toEqual({ ok: true, grantedMicros: 100 })
      expect(await f.store.extend(kept, 50, 50)).toEqual({ ok: true, grantedMicros: 50 })
      expect(await periods(hash)).toEqual(every(0, 1_550))
      expect(await f.store.settle(held as Reservation, 700)).toEqual({ chargedMicros: 700, alreadySettled: false })
      expect(await periods(hash)).toEqual(every(700, 450))
      expect(await f.store.settle(kept, 300)).toEqual({ chargedMicros: 300, alreadySettled: false })
      expect(await periods(hash)).toEqual(every(1_000, 0))
    })
    expect(counts).toEqual([7, 8, 8, 7, 7])
    // The string: spent and held of each window, then the minute's two requests.
    expect((await f.redis.get(curKey(hash)))?.split(' ').slice(0, 11)).toEqual([...WINDOW_NAMES.flatMap(() => ['1000', '0']), '2'])

    // From the next minute on, the string's keys: the limit counts both layouts' charges (10,000 - 1,000 left).
    await readMarker('2026-05-04T13:01:05.000Z')
    const refusedAndAdmitted = await keyCounts(async () => {
      expect(await f.store.reserve(input(hash, 9_001))).toMatchObject({ ok: false, window: 'daily' })
      expect((await f.store.reserve(input(hash, 9_000))).ok).toBe(true)
    })
    expect(refusedAndAdmitted).toEqual([3, 3])
  })

  it('while the store is marked the string is passed, and a key not switched yet is still right in its hashes', async () => {
    // The step marks the store before it marks each key: a key on the hash layout, the store's marker set.
    const hash = await hashKey({ limits: { daily: 10_000 } })
    await f.redis.set(LAYOUT_KEY, '1')
    await readMarker('2026-05-04T14:00:10.000Z')
    const counts = await keyCounts(async () => {
      const r = await f.reserved(hash, 1_000)
      expect(await f.store.extend(r, 100, 100)).toEqual({ ok: true, grantedMicros: 100 })
      expect(await periods(hash)).toEqual(every(0, 1_100))
      expect(await f.store.settle(r, 600)).toEqual({ chargedMicros: 600, alreadySettled: false })
    })
    expect(counts).toEqual([3, 4, 3])
    expect(await periods(hash)).toEqual(every(600, 0))
    const at = f.clock.now()
    const types = await Promise.all(WINDOW_NAMES.map((w) => f.redis.type(periodKey(hash, w, periodOf(w, at).id))))
    expect(types).toEqual(['hash', 'hash', 'hash', 'hash', 'hash'])
    expect(await f.redis.exists(curKey(hash))).toBe(0)
  })

  it('marks a store holding no key, so its keys start on the string layout; a store with keys only by the step', async () => {
    const fresh = await startTestStore('redis')
    const g = await createBudgetFixture(fresh, { redisLayout: 'string' })
    try {
      const first = await g.newKey()
      expect(await g.redis.get(LAYOUT_KEY)).toBe('1')
      expect(await g.redis.hget(recordKey(first), 'layout')).toBe('1')
      // A store with a key of a previous release: not marked by a key created now.
      await g.redis.del(LAYOUT_KEY)
      const second = await g.newKey()
      expect(await g.redis.get(LAYOUT_KEY)).toBeNull()
      expect(await g.redis.hget(recordKey(second), 'layout')).toBeNull()
      expect(await useStringPeriodsCommand(g.redis)).toBe('1 key moved to the string layout of the current periods; keys created from now on use it too')
      expect(await g.redis.hget(recordKey(second), 'layout')).toBe('1')
      expect(await g.redis.hget(recordKey(await g.newKey()), 'layout')).toBe('1')
      expect(await useStringPeriods(g.redis)).toBe(0)
      await expect(useStringPeriodsCommand(null)).rejects.toThrow(/for a Redis store/)
    } finally {
      await g.close()
      await fresh.stop()
    }
  })
})
