// The embedded store's loop record (loop_steps, integer keys: rows.loopPlace): places that share an id, and a file
// of the previous release (its loop steps in `loops`, text keys) opened, settled and swept by this one.
import { DatabaseSync } from 'node:sqlite'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createSqliteKeyAdmin } from '../../src/budget/sqlite/admin.js'
import { createDb, type Db } from '../../src/budget/sqlite/database.js'
import { startHousekeeping } from '../../src/budget/sqlite/housekeeping.js'
import { loopPlace, type LoopPlace } from '../../src/budget/sqlite/rows.js'
import { createSqliteBudgetStore } from '../../src/budget/sqlite/store.js'
import type { BudgetStore, KeyAdmin, Reservation, ReserveInput } from '../../src/budget/types.js'
import { createLoopCheck } from '../../src/loop/check.js'
import { checksScopeSize, DEFAULT_LOOP_LIMIT, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE } from '../../src/loop/rule.js'
import { reserveInput } from '../support/budget-fixture.js'
import { loopRowLayout, loopRowState } from '../support/sqlite-loop-row.js'
import { openSqliteStack, type SqliteStack } from '../support/sqlite-stack.js'

const SCOPE = `c:${'5'.padStart(16, '0')}`
const STEP = '00000000000abc01'
const place = (hash: string, scope: string, step: string): LoopPlace => loopPlace({ scope: 0, step: 0, stepLow: 0, tag: 0 }, hash, scope, step)

async function admitted(store: BudgetStore, input: ReserveInput): Promise<Reservation> {
  const r = await store.reserve(input)
  if (!r.ok) throw new Error(`refused: ${r.reason}`)
  return r.reservation
}

describe('loopPlace', () => {
  const keyA = 'a'.repeat(64)
  const keyB = `${'a'.repeat(63)}b`
  it('keeps a step exactly (first 13 hex digits and last 3) and sorts steps as their hex', () => {
    const p = place(keyA, SCOPE, 'fedcba9876543210')
    expect([p.step, p.stepLow]).toEqual([0xfedcba9876543, 0x210])
    const steps = ['0000000000000fff', '0000000000001000', '00000000000abc01', 'ffffffffffffffff']
    const places = steps.map((s) => place(keyA, SCOPE, s))
    for (let i = 1; i < places.length; i++) {
      const [a, b] = [places[i - 1] as LoopPlace, places[i] as LoopPlace]
      expect(a.step < b.step || (a.step === b.step && a.stepLow < b.stepLow)).toBe(true)
    }
  })
  it('gives every key and scope its own scope id and tag, in range', () => {
    const seen = new Set<number>()
    for (const key of [keyA, keyB]) {
      for (const scope of [SCOPE, `c:${'6'.padStart(16, '0')}`, 's:one', 's:two', 's:ones']) {
        const p = place(key, scope, STEP)
        expect(Number.isSafeInteger(p.scope) && p.scope >= 0 && p.scope < 2 ** 52).toBe(true)
        expect(Number.isSafeInteger(p.tag) && p.tag >= 0 && p.tag < 2 ** 32).toBe(true)
        seen.add(p.scope)
      }
    }
    expect(seen.size).toBe(10)
  })
})

describe('sqlite loop steps', () => {
  let stack: SqliteStack
  beforeEach(async () => {
    stack = await openSqliteStack('loop-steps', { limits: { daily: 10_000_000_000 } })
  })
  afterEach(() => stack.close())

  it("a row of another key's scope at the same place reads as none: overwritten, never counted toward a refusal", async () => {
    const { db, store, hash } = stack
    const p = place(hash, SCOPE, STEP)
    // As if another (key, scope) had the same scope id and step: its tag differs, its count is past the limit.
    db.statement('INSERT INTO loop_steps (scope, step, step_low, tag, count, since_ms, inflight, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
      p.scope,
      p.step,
      p.stepLow,
      (p.tag + 1) % 2 ** 32,
      DEFAULT_LOOP_LIMIT + 5,
      Date.now(),
      3,
      Date.now() + 600_000,
    )
    const r = await admitted(store, reserveInput(hash, 100, { loop: { scope: SCOPE, step: STEP } }))
    expect(loopRowState(db, hash, p)).toEqual({ count: 1, since: 1, inflight: 1 })
    expect(loopRowLayout(db, p)).toBe('first')
    await store.settle(r, 50)
    expect(loopRowState(db, hash, p)).toEqual({ count: 1, since: 1, inflight: 0 })
  })

  it('a settle ends its step in flight read from its booked key, a session scope holding ":" too', async () => {
    const { db, store, hash } = stack
    for (const [scope, session] of [[SCOPE, null], ['s:a:b:c', 'a:b:c']] as const) {
      const input = (): ReserveInput =>
        reserveInput(hash, 100, { loop: { scope, step: STEP }, ...(session === null ? {} : { session: { id: session, budgetMicros: null, maxSteps: null } }) })
      // The window's first request is in flight by its reservation (not booked); the second is booked.
      const first = await admitted(store, input())
      const second = await admitted(store, input())
      expect(first.bookedKeys.some((k) => k.startsWith('l:'))).toBe(false)
      const p = place(hash, scope, STEP)
      const booked = (): unknown => db.statement('SELECT inflight FROM loop_steps WHERE scope = ? AND step = ? AND step_low = ?').get(p.scope, p.step, p.stepLow)
      expect(booked()).toEqual({ inflight: 1 })
      expect(loopRowState(db, hash, p)?.inflight).toBe(2)
      await store.settle(second, 50)
      expect(booked()).toEqual({ inflight: 0 })
      expect(loopRowState(db, hash, p)?.inflight).toBe(1)
      await store.settle(first, 50)
      expect(loopRowState(db, hash, p)?.inflight).toBe(0)
    }
  })

  it("a settle ends nothing in another place's row", async () => {
    const { db, store, hash } = stack
    const p = place(hash, SCOPE, STEP)
    await admitted(store, reserveInput(hash, 100, { loop: { scope: SCOPE, step: STEP } }))
    const r = await admitted(store, reserveInput(hash, 100, { loop: { scope: SCOPE, step: STEP } }))
    db.statement('UPDATE loop_steps SET tag = ? WHERE scope = ? AND step = ? AND step_low = ?').run((p.tag + 1) % 2 ** 32, p.scope, p.step, p.stepLow)
    await store.settle(r, 50)
    expect(db.statement('SELECT inflight FROM loop_steps WHERE scope = ?').get(p.scope)).toEqual({ inflight: 1 })
  })

  it("a key whose guard the last transaction found in force has its fingerprint computed before the reserve's transaction", async () => {
    const { db, admin, store, hash } = stack
    // Where each fingerprint was computed: -1 outside a transaction, else the transaction's serial.
    const computedIn: number[] = []
    let step = 0
    const input = (): ReserveInput =>
      reserveInput(hash, 100, {
        loop: createLoopCheck(() => {
          computedIn.push(db.transactionSerial())
          return { conversation: '5'.padStart(16, '0'), step: (++step).toString(16).padStart(16, '0') }
        }, null),
      })
    const settleAll = async (inputs: ReserveInput[]): Promise<void> => {
      for (const r of await Promise.all(inputs.map((x) => admitted(store, x)))) await store.settle(r, 50)
    }
    // The key's row not read since it was written: computed inside, where the guard is decided.
    await settleAll([input()])
    expect(computedIn).toEqual([expect.any(Number)])
    expect(computedIn[0]).toBeGreaterThanOrEqual(0)
    // Read in force since: before the transaction, alone and several in one commit.
    computedIn.length = 0
    await settleAll([input()])
    await settleAll([input(), input(), input()])
    expect(computedIn).toEqual([-1, -1, -1, -1])
    // Switched off by this process: never computed, even by the first request after the switch.
    await admin.setBudget(hash, { loopLimit: 0 })
    computedIn.length = 0
    await settleAll([input(), input()])
    await settleAll([input()])
    expect(computedIn).toEqual([])
    // On again: the first request's computed inside, as the key is read anew; the later ones before.
    await admin.setBudget(hash, { loopLimit: 3 })
    await settleAll([input()])
    await settleAll([input()])
    expect(computedIn.map((serial) => serial === -1)).toEqual([false, true])
    // Every one recorded its step in the scope: the steps computed outside are the ones checked.
    expect(db.statement('SELECT count(*) AS n FROM loop_steps').get()).toEqual({ n: 7 })
  })

  it("a session's loop limit on a key whose guard is off: computed before the transaction only when this request asks it", async () => {
    const { db, admin, store, hash } = stack
    await admin.setBudget(hash, { loopLimit: 0 })
    const computedIn: number[] = []
    const input = (loopLimit?: number): ReserveInput =>
      reserveInput(hash, 100, {
        session: { id: 'sess-early', budgetMicros: null, maxSteps: null, ...(loopLimit === undefined ? {} : { loopLimit }) },
        loop: createLoopCheck(() => {
          computedIn.push(db.transactionSerial())
          return { conversation: '6'.padStart(16, '0'), step: STEP }
        }, 'sess-early'),
      })
    // The key's row read (guard off) by a request without a check.
    await store.settle(await admitted(store, reserveInput(hash, 100)), 50)
    // Asked by the request: before. Kept by the session only (read inside): inside, and still counted.
    await store.settle(await admitted(store, input(1)), 50)
    await store.settle(await admitted(store, input()), 50)
    expect(await store.reserve(input())).toMatchObject({ ok: false, reason: 'loop_detected' })
    expect(computedIn.map((serial) => serial === -1)).toEqual([true, false, false])
  })

  it('a new step whose request another check refuses records nothing', async () => {
    const { db, store, hash } = stack
    const p = place(hash, SCOPE, STEP)
    const r = await store.reserve(reserveInput(hash, 100, { minMicros: 20_000_000_000, maxMicros: 20_000_000_000, loop: { scope: SCOPE, step: STEP } }))
    expect(r).toMatchObject({ ok: false, reason: 'budget_exceeded' })
    expect(db.statement('SELECT count(*) AS n FROM loop_steps').get()).toEqual({ n: 0 })
    // The step is new again: its first admitted request counts once.
    await admitted(store, reserveInput(hash, 100, { loop: { scope: SCOPE, step: STEP } }))
    expect(loopRowState(db, hash, p)).toEqual({ count: 1, since: 1, inflight: 1 })
  })
})

describe('sqlite loop steps: the trim', () => {
  let stack: SqliteStack
  let now: number
  beforeEach(async () => {
    now = Date.parse('2026-05-04T12:00:30.000Z')
    stack = await openSqliteStack('loop-trim', { limits: { daily: 10_000_000_000 } }, () => now)
  })
  afterEach(() => stack.close())

  const hex = (n: number): string => n.toString(16).padStart(16, '0')
  /** Steps `from`..`to` - 1 of one scope, each new, reserved and settled 1 ms apart. */
  async function steps(from: number, to: number): Promise<void> {
    for (let i = from; i < to; i++) {
      now += 1
      await stack.store.settle(await admitted(stack.store, reserveInput(stack.hash, 1, { loop: { scope: SCOPE, step: hex(i) } })), 1)
    }
  }
  const kept = (): number[] =>
    (stack.db.statement('SELECT step_low FROM loop_steps WHERE scope = ? ORDER BY step, step_low').all(place(stack.hash, SCOPE, hex(0)).scope) as Array<{ step_low: number }>).map(
      (r) => r.step_low,
    )
  const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

  it.each([
    // Step 256 (hex …100) checks the size and finds 257: the expired go, then the oldest down to 192.
    [40, range(65, 272)],
    // More expired than the scope is over: only they go.
    [100, range(100, 272)],
  ])('%i steps expired of 257: the expired go first, then the oldest first sighting down to 192', async (expired, left) => {
    await steps(0, expired)
    now += 600_000
    await steps(expired, 272)
    expect(kept()).toEqual(left)
  })
  const rowsOfScope = (): number =>
    (stack.db.statement('SELECT count(*) AS n FROM loop_steps WHERE scope = ?').get(place(stack.hash, SCOPE, hex(0)).scope) as { n: number }).n

  it('a scope trimmed again and again keeps exactly what the rule keeps, through ties, a clock stepping back and steps starting over', async () => {
    const WINDOW_MS = 600_000
    // The scope's steps as the rule keeps them (src/loop/rule.ts): step → first sighting.
    const model = new Map<string, number>()
    const evict = (): void => {
      for (const [step, since] of model) if (now >= since + WINDOW_MS) model.delete(step)
      const oldest = [...model].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))
      for (let i = 0; model.size > LOOP_STEPS_AFTER_TRIM; i++) model.delete((oldest[i] as [string, number])[0])
    }
    // Session loop limit 0: a step the scope still holds (in its window) is refused, one it forgot is admitted as new.
    const session = { id: 'trims', budgetMicros: null, maxSteps: null, loopLimit: 0 }
    const scope = 's:trims'
    let refused = 0
    let trims = 0
    for (let i = 0; i < 1600; i++) {
      // Mostly 1 ms apart, every 7th in the same ms, twice the clock 300 ms back, once past the window of all but the newest 100 ms.
      if (i === 500 || i === 1100) now -= 300
      else if (i === 800) now += WINDOW_MS - 100
      else if (i % 7 !== 0) now += 1
      // Every 5th request repeats an earlier step (kept: refused; forgotten or past its window: admitted, new or over).
      const step = hex(i % 5 === 4 ? Math.max(i - 1 - ((i * 37) % 320), 0) : i)
      const since = model.get(step)
      const held = since !== undefined && now < since + WINDOW_MS
      const r = await stack.store.reserve(reserveInput(stack.hash, 1, { session, loop: { scope, step } }))
      expect(r.ok, `request ${i}, step ${step}`).toBe(!held)
      if (!r.ok) {
        refused++
        continue
      }
      await stack.store.settle(r.reservation, 1)
      model.set(step, now)
      if (since === undefined && checksScopeSize(step) && model.size > LOOP_STEPS_PER_SCOPE) {
        evict()
        trims++
      }
      const kept = stack.db.statement('SELECT step, step_low FROM loop_steps WHERE scope = ?').all(place(stack.hash, scope, step).scope) as Array<{ step: number; step_low: number }>
      const want = [...model.keys()].map((k) => place(stack.hash, scope, k)).map((p) => `${p.step}:${p.stepLow}`)
      expect(kept.map((row) => `${row.step}:${row.step_low}`).sort(), `request ${i}`).toEqual(want.sort())
    }
    expect(trims).toBeGreaterThanOrEqual(12)
    expect(refused).toBeGreaterThan(100)
  })

  it("a scope's trim order kept by this process is read anew once another connection has changed the scope", async () => {
    // Trimmed at step 256 (hex …100) to 192, its order kept; then steps 257..319 (the checks …110 to …130 find at most
    // 240) and another process adds 40 steps older than all of them.
    await steps(0, 320)
    const other = new DatabaseSync(stack.path, { timeout: 5_000 })
    try {
      const p = place(stack.hash, SCOPE, hex(0))
      const insert = other.prepare('INSERT INTO loop_steps (scope, step, step_low, tag, count, since_ms, inflight, expires_at) VALUES (?, ?, 0, ?, 1, ?, 0, ?)')
      for (let i = 0; i < 40; i++) insert.run(p.scope, 2 ** 40 + i, p.tag, now - 1_000, now + 600_000)
    } finally {
      other.close()
    }
    // Step 320 (hex …140) finds 296: the 40 oldest (the other process's) go, then the oldest 64 of this one's.
    await steps(320, 321)
    expect(kept()).toEqual(range(129, 321))
  })

  it("a scope's size kept by this process is counted anew once another connection has changed the scope", async () => {
    await steps(0, 200)
    // Another process adds 60 steps to the scope: step 208 (hex …d0) checks and finds 269, past 256.
    const other = new DatabaseSync(stack.path, { timeout: 5_000 })
    try {
      const p = place(stack.hash, SCOPE, hex(0))
      const insert = other.prepare('INSERT INTO loop_steps (scope, step, step_low, tag, count, since_ms, inflight, expires_at) VALUES (?, ?, 0, ?, 1, ?, 0, ?)')
      for (let i = 0; i < 60; i++) insert.run(p.scope, 2 ** 40 + i, p.tag, now, now + 600_000)
    } finally {
      other.close()
    }
    await steps(200, 210)
    // Trimmed to 192 at step 208, then step 209.
    expect(rowsOfScope()).toBe(193)
  })

  it("a scope's size kept by this process follows a sweep that removed its steps", async () => {
    await steps(0, 200)
    now += 600_000
    const sweeper = startHousekeeping(stack.db, () => now, 60_000)
    for (let i = 0; i < 3; i++) sweeper.sweep()
    sweeper.stop()
    expect(rowsOfScope()).toBe(0)
    // 60 new steps: the checks (…d0, …e0, …f0, …100, …110) find at most 60, so nothing is trimmed.
    await steps(200, 260)
    expect(rowsOfScope()).toBe(60)
  })

  it("a scope's trim order kept by this process follows a sweep that removed some of its steps", async () => {
    await steps(0, 100)
    now += 599_000
    // Step 256 (hex …100) finds 257, none expired: 0..64 go, the order of 65..271 is kept.
    await steps(100, 272)
    now += 1_000
    const sweeper = startHousekeeping(stack.db, () => now, 60_000)
    for (let i = 0; i < 3; i++) sweeper.sweep()
    sweeper.stop()
    expect(kept()).toEqual(range(100, 272))
    // Step 368 (hex …170) finds 269: the oldest 77 go.
    await steps(272, 369)
    expect(kept()).toEqual(range(177, 369))
  })

  it("a sweep of another scope's steps keeps this scope's size: no count", async () => {
    const other = `c:${'6'.padStart(16, '0')}`
    for (let i = 0; i < 10; i++) {
      now += 1
      await stack.store.settle(await admitted(stack.store, reserveInput(stack.hash, 1, { loop: { scope: other, step: hex(i) } })), 1)
    }
    now += 599_000
    // Step 192 (hex …c0) counts the scope and keeps its size.
    await steps(0, 200)
    now += 1_000
    const sweeper = startHousekeeping(stack.db, () => now, 60_000)
    for (let i = 0; i < 3; i++) sweeper.sweep()
    sweeper.stop()
    expect(stack.db.statement('SELECT count(*) AS n FROM loop_steps WHERE scope = ?').get(place(stack.hash, other, hex(0)).scope)).toEqual({ n: 0 })
    const read = vi.spyOn(stack.db, 'arrayStatement')
    // Step 208 (hex …d0) checks the size: the kept one.
    await steps(200, 210)
    expect(read.mock.calls.filter(([sql]) => sql.includes('count(*)'))).toEqual([])
    expect(rowsOfScope()).toBe(210)
  })
})

describe('a file of the previous release (loop steps in `loops`)', () => {
  let stack: SqliteStack
  let now: number
  beforeEach(async () => {
    now = Date.parse('2026-05-04T12:00:30.000Z')
    stack = await openSqliteStack('loop-upgrade', { limits: { daily: 10_000_000_000 } }, () => now)
  })
  afterEach(() => stack.close())

  /** The previous release's schema (this one's without loop_steps), its loop rows and held reservations as it wrote them. */
  function writeAsPreviousRelease(hash: string, held: readonly Reservation[]): void {
    stack.db.close()
    const raw = new DatabaseSync(stack.path)
    try {
      raw.exec('DROP TABLE loop_steps')
      // The previous release's reserve: the step past the limit, two requests of it in flight.
      raw
        .prepare(
          `INSERT INTO loops (hash, scope, step, count, since_ms, expires_at, inflight) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
           ON CONFLICT (hash, scope, step) DO UPDATE SET count = ?4, since_ms = ?5, inflight = ?7, expires_at = ?6`,
        )
        .run(hash, SCOPE, STEP, DEFAULT_LOOP_LIMIT + 1, now, now + 600_000, held.length)
      for (const r of held) {
        // Every request booked with its loop key, l:<step>:<sinceMs>:<scope> (this release books only a window's later
        // requests, in the same form).
        const key = `l:${STEP}:${now}:${SCOPE}`
        raw.prepare(`UPDATE reservations SET booked = booked || ? WHERE hash = ? AND request_id = ? AND booked NOT LIKE '%' || ?`).run(`\n${key}`, hash, r.requestId, key)
        const booked = raw.prepare('SELECT booked FROM reservations WHERE hash = ? AND request_id = ?').get(hash, r.requestId) as { booked: string }
        expect(booked.booked.split('\n').at(-1)).toBe(key)
      }
    } finally {
      raw.close()
    }
  }

  /** This release on the file: the schema brought up to date on open. */
  function reopen(): { db: Db; store: BudgetStore; admin: KeyAdmin } {
    const db = createDb(stack.path)
    stack.db = db
    const clock = { now: () => now }
    return { db, store: createSqliteBudgetStore(db, clock), admin: createSqliteKeyAdmin(db, clock) }
  }

  it('opens, settles and abandons its reservations, counts its loops anew once, and sweeps its old loop rows', async () => {
    const { store, hash } = stack
    const input = (): ReserveInput => reserveInput(hash, 100, { loop: { scope: SCOPE, step: STEP } })
    // As the previous release made them: each booked with its loop key.
    const bookedAsBefore = (r: Reservation): Reservation => {
      const key = `l:${STEP}:${now}:${SCOPE}`
      return r.bookedKeys.includes(key) ? r : { ...r, bookedKeys: [...r.bookedKeys, key] }
    }
    const settled = bookedAsBefore(await admitted(store, input()))
    const abandoned = bookedAsBefore(await admitted(store, input()))
    writeAsPreviousRelease(hash, [settled, abandoned])

    const { db, store: next, admin } = reopen()
    const tables = (db.statement(`SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'loop%' ORDER BY name`).all() as Array<{ name: string }>).map((t) => t.name)
    expect(tables).toEqual(['loop_steps', 'loops'])
    // Its reservations settle and abandon in their periods; their loop keys end nothing (their steps are in loops).
    expect(await next.settle(settled, 60)).toEqual({ chargedMicros: 60, alreadySettled: false })
    await next.abandon(hash, abandoned.requestId)
    expect((await admin.status(hash))?.daily).toMatchObject({ spentMicros: 60, heldMicros: 0 })
    // The step the previous release counted past the limit starts over (once, at the upgrade): admitted, counted 1.
    const r = await admitted(next, input())
    const p = place(hash, SCOPE, STEP)
    expect(loopRowState(db, hash, p, now)).toEqual({ count: 1, since: 1, inflight: 1 })
    await next.settle(r, 10)
    expect((db.statement('SELECT count(*) AS n FROM loops').get() as { n: number }).n).toBe(1)
    // The old row goes once its window is over, swept like the others.
    now += 600_001
    const sweeper = startHousekeeping(db, () => now, 60_000)
    sweeper.sweep()
    sweeper.stop()
    expect((db.statement('SELECT count(*) AS n FROM loops').get() as { n: number }).n).toBe(0)
    expect((db.statement('SELECT count(*) AS n FROM loop_steps').get() as { n: number }).n).toBe(0)
    expect(db.statement('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' })
  })

  it("a process of the previous release beside this one on the same file: each keeps to its own table, the file stays whole", async () => {
    const { store, hash, path } = stack
    const r = await admitted(store, reserveInput(hash, 100, { loop: { scope: SCOPE, step: STEP } }))
    // The previous release opening the file (its schema: CREATE … IF NOT EXISTS) and recording and ending a step.
    const old = new DatabaseSync(path, { timeout: 5_000 })
    try {
      old.exec(`CREATE TABLE IF NOT EXISTS loops (
        hash TEXT NOT NULL, scope TEXT NOT NULL, step TEXT NOT NULL, count INTEGER NOT NULL, since_ms INTEGER NOT NULL,
        expires_at INTEGER NOT NULL, inflight INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (hash, scope, step)) STRICT, WITHOUT ROWID`)
      old
        .prepare(
          `INSERT INTO loops (hash, scope, step, count, since_ms, inflight, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
           ON CONFLICT (hash, scope, step) DO UPDATE SET count = ?4, since_ms = ?5, inflight = ?6, expires_at = ?7`,
        )
        .run(hash, SCOPE, STEP, 1, now, 1, now + 600_000)
      old.prepare('UPDATE loops SET inflight = inflight - 1 WHERE hash = ? AND scope = ? AND step = ? AND since_ms = ? AND inflight > 0').run(hash, SCOPE, STEP, now)
    } finally {
      old.close()
    }
    expect(await store.settle(r, 50)).toEqual({ chargedMicros: 50, alreadySettled: false })
    const p = place(hash, SCOPE, STEP)
    expect(loopRowState(stack.db, hash, p, now)).toEqual({ count: 1, since: 1, inflight: 0 })
    expect(stack.db.statement('SELECT count, inflight FROM loops WHERE hash = ?').get(hash)).toEqual({ count: 1, inflight: 0 })
    expect(stack.db.statement('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' })
  })
})

describe('loop_steps rows of the previous release (every request of a step booked in `inflight`)', () => {
  let stack: SqliteStack
  let now: number
  beforeEach(async () => {
    now = Date.parse('2026-05-04T12:00:30.000Z')
    stack = await openSqliteStack('loop-booked', { limits: { daily: 10_000_000_000 } }, () => now)
  })
  afterEach(() => stack.close())
  const input = (): ReserveInput => reserveInput(stack.hash, 100, { loop: { scope: SCOPE, step: STEP } })
  const bookedRow = (): unknown => {
    const p = place(stack.hash, SCOPE, STEP)
    return stack.db.statement('SELECT count, inflight FROM loop_steps WHERE scope = ? AND step = ? AND step_low = ? AND tag = ?').get(p.scope, p.step, p.stepLow, p.tag)
  }

  it('keeps counting in its layout: its booked reservations settle and abandon exactly, later requests are booked too', async () => {
    const { db, store, hash } = stack
    const p = place(hash, SCOPE, STEP)
    const key = `l:${STEP}:${now}:${SCOPE}`
    const asBefore = (r: Reservation): Reservation => (r.bookedKeys.includes(key) ? r : { ...r, bookedKeys: [...r.bookedKeys, key] })
    const a = asBefore(await admitted(store, input()))
    const b = asBefore(await admitted(store, input()))
    // As the previous release wrote them: its tag, no first request, both requests booked and counted in flight.
    db.statement('UPDATE loop_steps SET tag = ?, first = NULL, count = 2, inflight = 2 WHERE scope = ?').run(p.tag, p.scope)
    db.statement(`UPDATE reservations SET booked = booked || ? WHERE hash = ? AND booked NOT LIKE '%' || ?`).run(`\n${key}`, hash, key)
    // Two in flight: a third is not a repeat, and is booked in the same row.
    const c = await admitted(store, input())
    expect(c.bookedKeys.at(-1)).toBe(key)
    expect(bookedRow()).toEqual({ count: 2, inflight: 3 })
    expect(loopRowLayout(db, p)).toBe('booked')
    await store.settle(a, 10)
    await store.abandon(hash, b.requestId)
    await store.settle(c, 10)
    await store.settle(c, 10)
    expect(bookedRow()).toEqual({ count: 2, inflight: 0 })
    // Nothing in flight: the next counts.
    await store.settle(await admitted(store, input()), 10)
    expect(bookedRow()).toEqual({ count: 3, inflight: 0 })
    // A new window starts this release's layout.
    now += 600_000
    await admitted(store, input())
    expect(loopRowLayout(db, p)).toBe('first')
    expect(loopRowState(db, hash, p, now)).toEqual({ count: 1, since: 1, inflight: 1 })
  })

  it('a process of the previous release reads a row of this layout as none: it never refuses on it, and both keep exact counts of their own', async () => {
    const { db, store, hash } = stack
    const p = place(hash, SCOPE, STEP)
    for (let i = 0; i <= DEFAULT_LOOP_LIMIT; i++) await store.settle(await admitted(store, input()), 1)
    expect(await store.reserve(input())).toMatchObject({ ok: false, reason: 'loop_detected' })
    // The previous release's read: a row whose tag is not its own is another place's (absent, count 0).
    const found = db.statement('SELECT count, since_ms, inflight, tag FROM loop_steps WHERE scope = ? AND step = ? AND step_low = ?').get(p.scope, p.step, p.stepLow) as {
      count: number
      tag: number
    }
    expect(found.count).toBe(DEFAULT_LOOP_LIMIT + 1)
    expect(found.tag).not.toBe(p.tag)
    // Its admission overwrites the row in its layout (its write, its booked key); this release then counts on it.
    now += 1
    db.statement('UPDATE loop_steps SET tag = ?4, count = ?5, since_ms = ?6, inflight = ?7, expires_at = ?8 WHERE scope = ?1 AND step = ?2 AND step_low = ?3').run(
      p.scope,
      p.step,
      p.stepLow,
      p.tag,
      1,
      now,
      1,
      now + 600_000,
    )
    const mine = await admitted(store, input())
    expect(bookedRow()).toEqual({ count: 2, inflight: 2 })
    await store.settle(mine, 1)
    // The previous release's settle of its own request (its statement).
    db.statement('UPDATE loop_steps SET inflight = inflight - 1 WHERE scope = ? AND step = ? AND step_low = ? AND tag = ? AND since_ms = ? AND inflight > 0').run(
      p.scope,
      p.step,
      p.stepLow,
      p.tag,
      now,
    )
    expect(bookedRow()).toEqual({ count: 2, inflight: 0 })
  })
})
