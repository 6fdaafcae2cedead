import { statSync } from 'node:fs'
import { DatabaseSync, StatementSync } from 'node:sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { StoreUnavailableError } from '../../src/errors.js'
import { newRequestId } from '../../src/budget/request-id.js'
import type { Db } from '../../src/budget/sqlite/database.js'
import { loopPlace, type LoopPlace } from '../../src/budget/sqlite/rows.js'
import { createSqliteBudgetStore } from '../../src/budget/sqlite/store.js'
import type { BudgetStore, KeyAdmin, Reservation } from '../../src/budget/types.js'
import { reserveInput } from '../support/budget-fixture.js'
import { loopRowState } from '../support/sqlite-loop-row.js'
import { openSqliteStack, type SqliteStack } from '../support/sqlite-stack.js'

// What the embedded store writes per request, counted in WAL frames (one page each), which is what its
// commits cost: every page a commit touched is written (and later checkpointed) once.
const FRAME_BYTES = 24 + 4096
const WAL_HEADER_BYTES = 32

describe('embedded store commits', () => {
  let stack: SqliteStack
  let path: string
  let db: Db
  let store: BudgetStore
  let admin: KeyAdmin
  let hash: string

  beforeEach(async () => {
    stack = await openSqliteStack('commits', { limits: { daily: 10_000_000_000 }, loopLimit: 0 })
    ;({ path, db, store, admin, hash } = stack)
  })
  afterEach(() => stack.close())

  /** WAL frames written by `work`, with checkpoints off so the WAL only grows. */
  const framesOf = async (work: () => Promise<void>): Promise<number> => {
    db.statement('PRAGMA wal_checkpoint(TRUNCATE)').get()
    db.setAutoCheckpoint(false)
    const size = (): number => statSync(`${path}-wal`).size
    const before = size()
    await work()
    return (size() - Math.max(before, WAL_HEADER_BYTES)) / FRAME_BYTES
  }
  const request = async (): Promise<void> => {
    const r = await store.reserve(reserveInput(hash, 100, { requestId: newRequestId() }))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    await store.settle(r.reservation, 50)
  }

  /** `n` reserves of 100 in flight together on `on` (the test's store unless given), each admitted. */
  const reserveTogether = (n: number, on: BudgetStore = store): Promise<Reservation[]> =>
    Promise.all(
      Array.from({ length: n }, async () => {
        const r = await on.reserve(reserveInput(hash, 100, { requestId: newRequestId() }))
        if (!r.ok) throw new Error(`refused: ${r.reason}`)
        return r.reservation
      }),
    )
  /** 64 reserves in flight together, then their settles at 50 each. */
  const reserveAndSettle64 = async (on: BudgetStore = store): Promise<void> => {
    const reservations = await reserveTogether(64, on)
    await Promise.all(reservations.map((r) => on.settle(r, 50)))
  }

  it('one request, reserve then settle, writes at most 5 pages once thousands of records exist (was 6.2)', async () => {
    for (let i = 0; i < 3_000; i++) await request()
    const n = 400
    const frames = await framesOf(async () => {
      for (let i = 0; i < n; i++) await request()
    })
    // Reserve: the key's period rows and the new record (its page splits now and then); settle: the period
    // rows with the day's spend beside them, and the record. A table of days of its own and random request
    // ids (a random page of 35 days of records, split a third of the time) cost 6.2.
    expect(frames / n).toBeLessThanOrEqual(5)
    expect(frames / n).toBeGreaterThanOrEqual(4)
  })

  it('requests in flight together share commits: 64 reserves and their settles write a few pages, not hundreds', async () => {
    for (let i = 0; i < 200; i++) await request()
    const frames = await framesOf(reserveAndSettle64)
    // One commit for the 64 reserves and one for the settles (each page once), where a commit each wrote ~300.
    expect(frames).toBeLessThanOrEqual(20)
    const status = await admin.status(hash)
    expect(status?.daily).toMatchObject({ spentMicros: 50 * (200 + 64), heldMicros: 0 })
  })

  // The checkpoint worker takes the write lock for a few ms to empty the WAL: requests queued meanwhile
  // once retried one commit each (~64 commits after every truncation, and a WAL written that many times).
  it('requests queued while another connection holds the write lock wait for it together and share a commit', async () => {
    for (let i = 0; i < 200; i++) await request()
    const other = new DatabaseSync(path)
    try {
      const frames = await framesOf(async () => {
        other.exec('BEGIN IMMEDIATE')
        setTimeout(() => other.exec('COMMIT'), 30)
        await reserveAndSettle64()
      })
      expect(frames).toBeLessThanOrEqual(20)
      expect((await admin.status(hash))?.daily).toMatchObject({ spentMicros: 50 * (200 + 64), heldMicros: 0 })
    } finally {
      other.close()
    }
  })

  it('a work that throws in a shared commit fails alone; the others keep their results', async () => {
    const used = reserveInput(hash, 100, { requestId: newRequestId() })
    const first = await store.reserve(used)
    if (!first.ok) throw new Error('refused')
    const inputs = Array.from({ length: 8 }, () => reserveInput(hash, 100, { requestId: newRequestId() }))
    const results = await Promise.allSettled([...inputs.slice(0, 4).map((i) => store.reserve(i)), store.reserve(used), ...inputs.slice(4).map((i) => store.reserve(i))])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'])
    expect((results[4] as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableError)
    expect(String((results[4] as PromiseRejectedResult).reason)).toMatch(/already used/)
    // Every admitted reserve holds its 100 exactly once: the thrown one held nothing.
    expect((await admin.status(hash))?.daily.heldMicros).toBe(100 * 9)
  })

  it('the reserves of one key in one commit hold in its periods in one statement, and their settles book in one', async () => {
    // The store on a Db that counts the runs of the minute's period statements (prepared by the store once a minute).
    const runs = { hold: 0, book: 0 }
    const counting: Db = {
      ...db,
      prepare(sql) {
        const statement = db.prepare(sql)
        const kind = !sql.startsWith('INSERT INTO periods') ? null : sql.includes('requests') ? 'hold' : 'book'
        if (kind === null) return statement
        return new Proxy(statement, {
          get: (target, name) =>
            name === 'run'
              ? (...args: Parameters<typeof statement.run>) => {
                  runs[kind] += 1
                  return target.run(...args)
                }
              : (Reflect.get(target, name) as unknown),
        })
      },
    }
    await reserveAndSettle64(createSqliteBudgetStore(counting))
    expect(runs).toEqual({ hold: 1, book: 1 })
    expect((await admin.status(hash))?.minute).toMatchObject({ spentMicros: 50 * 64, heldMicros: 0 })
    expect((await admin.status(hash))?.daily).toMatchObject({ spentMicros: 50 * 64, heldMicros: 0 })
  })

  it('a request id reserved twice in one commit: the first is admitted, the second fails, admitted or refused', async () => {
    const id = newRequestId()
    const results = await Promise.allSettled([store.reserve(reserveInput(hash, 100, { requestId: id })), store.reserve(reserveInput(hash, 100, { requestId: id }))])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected'])
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/already used/)
    expect((await admin.status(hash))?.daily.heldMicros).toBe(100)
    // The second would be refused (past the limit): still a fault, not a refusal.
    await admin.setBudget(hash, { limits: { daily: 1_000 } })
    const again = newRequestId()
    const refused = await Promise.allSettled([store.reserve(reserveInput(hash, 800, { requestId: again })), store.reserve(reserveInput(hash, 800, { requestId: again }))])
    expect(refused.map((r) => r.status)).toEqual(['fulfilled', 'rejected'])
    expect(String((refused[1] as PromiseRejectedResult).reason)).toMatch(/already used/)
    expect((await admin.status(hash))?.daily.heldMicros).toBe(900)
  })

  it('a reserve and an abandon of the same request id in one commit run as if one after the other', async () => {
    const input = reserveInput(hash, 100, { requestId: newRequestId() })
    const [reserved] = await Promise.all([store.reserve(input), store.abandon(hash, input.requestId)])
    expect(reserved.ok).toBe(true)
    expect((await admin.status(hash))?.daily).toMatchObject({ spentMicros: 0, heldMicros: 0 })
    await expect(store.reserve(input)).rejects.toThrow(/already used/)
  })

  it('settles booked at the commit are booked once when their shared commit fails and each runs again alone', async () => {
    const held = await reserveTogether(8)
    // A reserve with a used id in the same commit throws: the commit rolls back, its settles' bookings with it, and
    // each work runs again in a transaction of its own.
    const results = await Promise.allSettled([...held.slice(0, 4).map((r) => store.settle(r, 50)), store.reserve(reserveInput(hash, 100, { requestId: held[0]?.requestId ?? '' })), ...held.slice(4).map((r) => store.settle(r, 50))])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'])
    await store.ping()
    const status = await admin.status(hash)
    expect(status?.daily).toMatchObject({ spentMicros: 50 * 8, heldMicros: 0 })
    expect(status?.minute).toMatchObject({ spentMicros: 50 * 8, heldMicros: 0 })
    expect((await admin.history(hash, 1))?.[0]?.spentMicros).toBe(50 * 8)
  })

  it('a day booked by an older release (daily_spend) still shows in the history, added to the new rows', async () => {
    await request()
    const raw = new DatabaseSync(path)
    try {
      const today = new Date().toISOString().slice(0, 10)
      raw.prepare('INSERT INTO daily_spend (hash, day, spent, expires_at) VALUES (?, ?, ?, ?)').run(hash, today, 1_000, Date.now() + 86_400_000)
    } finally {
      raw.close()
    }
    expect((await admin.history(hash, 1))?.[0]?.spentMicros).toBe(1_050)
  })

  describe('with the loop guard on (the key default)', () => {
    let loopHash: string
    beforeEach(async () => {
      loopHash = (await admin.createKey('commits-loop', ['openai'], { limits: { daily: 10_000_000_000 } })).record.hash
    })
    /** Step `i` of conversation 1, as the fingerprint makes them (16 hex digits). */
    const stepOf = (i: number): string => (0xabc00 + i).toString(16).padStart(16, '0')
    const loopInput = (i: number): ReturnType<typeof reserveInput> =>
      reserveInput(loopHash, 100, { requestId: newRequestId(), loop: { scope: `c:${'1'.padStart(16, '0')}`, step: stepOf(i) } })
    const placeOf = (i: number): LoopPlace => loopPlace({ scope: 0, step: 0, stepLow: 0, tag: 0 }, loopHash, `c:${'1'.padStart(16, '0')}`, stepOf(i))
    const scopeOf = (): number => loopPlace({ scope: 0, step: 0, stepLow: 0, tag: 0 }, loopHash, `c:${'1'.padStart(16, '0')}`, stepOf(0)).scope
    /** The scope's steps' requests in flight (loopRowState), in step order. */
    const inFlight = (): number[] =>
      (db.statement('SELECT step * 4096 + step_low AS step FROM loop_steps WHERE scope = ? ORDER BY step, step_low').all(scopeOf()) as Array<{ step: number }>).map(
        (r) => loopRowState(db, loopHash, placeOf(r.step - 0xabc00))?.inflight ?? -1,
      )
    /** SQLite statement runs during `work`, counted on node:sqlite's own methods. */
    const statementsOf = async (work: () => Promise<unknown>): Promise<number> => {
      const methods = ['run', 'get', 'all'] as const
      const originals = methods.map((m) => StatementSync.prototype[m])
      let calls = 0
      methods.forEach((m, i) => {
        const original = originals[i] as (...args: unknown[]) => unknown
        ;(StatementSync.prototype as unknown as Record<string, unknown>)[m] = function (this: StatementSync, ...args: unknown[]) {
          calls++
          return original.apply(this, args)
        }
      })
      try {
        await work()
      } finally {
        methods.forEach((m, i) => ((StatementSync.prototype as unknown as Record<string, unknown>)[m] = originals[i]))
      }
      return calls
    }

    it('the settles of one commit book their minute periods in one statement, each ending its step in flight', async () => {
      const held = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const r = await store.reserve(loopInput(i))
          if (!r.ok) throw new Error(`refused: ${r.reason}`)
          return r.reservation
        }),
      )
      expect(inFlight()).toEqual(Array(8).fill(1))
      // Per settle its record alone (each its step's first request: in flight by its record); once for the commit the
      // periods' booking, BEGIN and COMMIT.
      const statements = await statementsOf(() => Promise.all(held.map((r) => store.settle(r, 50))))
      expect(statements).toBe(8 + 3)
      expect(inFlight()).toEqual(Array(8).fill(0))
      const status = await admin.status(loopHash)
      expect(status?.minute).toMatchObject({ spentMicros: 50 * 8, heldMicros: 0 })
      expect(status?.daily).toMatchObject({ spentMicros: 50 * 8, heldMicros: 0 })
      expect((await admin.history(loopHash, 1))?.[0]?.spentMicros).toBe(50 * 8)
    })

    const rowOf = (i: number): unknown => loopRowState(db, loopHash, placeOf(i))
    const admitted = async (input: ReturnType<typeof reserveInput>): Promise<Reservation> => {
      const r = await store.reserve(input)
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      return r.reservation
    }

    it('reserves of one step in one commit each see the step as the one before left it', async () => {
      // Fired at once: the first two count (at most one other in flight), the third does not.
      await Promise.all([admitted(loopInput(1)), admitted(loopInput(1)), admitted(loopInput(1))])
      expect(rowOf(1)).toEqual({ count: 2, since: 1, inflight: 3 })
    })

    it('a settle and a reserve of its step in one commit: the reserve sees the step one fewer in flight', async () => {
      const first = await admitted(loopInput(2))
      await admitted(loopInput(2))
      expect(rowOf(2)).toEqual({ count: 2, since: 1, inflight: 2 })
      // As one after the other: the settle leaves one in flight, so the reserve is a repeat and counts.
      await Promise.all([store.settle(first, 50), admitted(loopInput(2))])
      expect(rowOf(2)).toEqual({ count: 3, since: 1, inflight: 2 })
    })

    it('a commit that fails leaves no loop step written, and each work run again alone counts its step once', async () => {
      const used = await admitted(loopInput(3))
      const results = await Promise.allSettled([admitted(loopInput(4)), store.reserve({ ...loopInput(5), requestId: used.requestId }), admitted(loopInput(6))])
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
      expect([rowOf(3), rowOf(4), rowOf(5), rowOf(6)]).toEqual([
        { count: 1, since: 1, inflight: 1 },
        { count: 1, since: 1, inflight: 1 },
        undefined,
        { count: 1, since: 1, inflight: 1 },
      ])
    })

    it('a reserve with a loop step and its abandon in one commit release the hold and end the step in flight', async () => {
      const input = loopInput(0)
      const [reserved] = await Promise.all([store.reserve(input), store.abandon(loopHash, input.requestId)])
      expect(reserved.ok).toBe(true)
      expect((await admin.status(loopHash))?.daily).toMatchObject({ spentMicros: 0, heldMicros: 0 })
      expect(inFlight()).toEqual([0])
      await expect(store.reserve(input)).rejects.toThrow(/already used/)
    })
  })
})
