import { afterEach, describe, expect, it } from 'vitest'
import { newRequestId } from '../../src/budget/request-id.js'
import { DAY_ROW } from '../../src/budget/sqlite/rows.js'
import { RESERVATION_TTL_SECONDS, SETTLED_RECORD_TTL_SECONDS } from '../../src/budget/validate.js'
import type { Reservation } from '../../src/budget/types.js'
import { reserveInput } from '../support/budget-fixture.js'
import { openSqliteStack, type SqliteStack } from '../support/sqlite-stack.js'

// A held record booked in its minute's periods alone stores no list (rows.MINUTE_BOOKED); an abandon finds them
// from its created_at.
describe('embedded store held reservation records', () => {
  let stack: SqliteStack
  // 2026-05-04T13:59:30Z: a minute later is another hour too.
  let nowMs = Date.UTC(2026, 4, 4, 13, 59, 30)
  afterEach(() => stack.close())

  const open = async (): Promise<SqliteStack> => {
    nowMs = Date.UTC(2026, 4, 4, 13, 59, 30)
    stack = await openSqliteStack('records', { limits: { daily: 10_000_000 }, loopLimit: 0 }, () => nowMs)
    return stack
  }
  const admitted = async (s: SqliteStack, extra: Parameters<typeof reserveInput>[2] = {}): Promise<Reservation> => {
    const r = await s.store.reserve(reserveInput(s.hash, 100, { requestId: newRequestId(nowMs), ...extra }))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    return r.reservation
  }
  const bookedOf = (s: SqliteStack, r: Reservation): string =>
    (s.db.statement('SELECT booked FROM reservations WHERE hash = ? AND request_id = ?').get(s.hash, r.requestId) as { booked: string }).booked
  /** Every period row of the key: window, period, spent and held. */
  const periods = (s: SqliteStack): unknown[] =>
    s.db.statement("SELECT win, period, spent, held FROM periods WHERE hash = ? AND win <> ? ORDER BY win, period").all(s.hash, DAY_ROW).map((row) => ({ ...row }))

  it('stores no list for a reservation booked in its minute periods alone, and the list of one booked beyond them', async () => {
    const s = await open()
    const plain = await admitted(s)
    expect(plain.bookedKeys).toHaveLength(5)
    expect(bookedOf(s, plain)).toBe('')
    const withSession = await admitted(s, { session: { id: 'conv-1', budgetMicros: 1_000, maxSteps: null } })
    expect(bookedOf(s, withSession)).toBe(withSession.bookedKeys.join('\n'))
  })

  it.each([
    ['in its own minute', 0],
    ['a minute later (another minute and hour)', 60_000],
    ['a month later', 31 * 86_400_000],
  ])('an abandon %s releases the hold in every period it was booked in', async (_, laterMs) => {
    const s = await open()
    const r = await admitted(s)
    const held = periods(s)
    expect(held).toHaveLength(5)
    for (const row of held) expect(row).toMatchObject({ spent: 0, held: 100 })
    nowMs += laterMs
    // A reserve of the later minute first, so the store's minute is no longer the abandoned record's.
    const other = laterMs === 0 ? null : await admitted(s)
    await s.store.abandon(s.hash, r.requestId)
    // r's periods hold nothing of r; those it shares with the later reserve hold that one's 100.
    const shared = new Set(other?.bookedKeys ?? [])
    const after = periods(s) as Array<{ win: string; period: string }>
    for (const row of held as Array<{ win: string; period: string }>) {
      const now = after.find((a) => a.win === row.win && a.period === row.period)
      expect(now).toEqual({ ...row, held: shared.has(`w:${row.win}:${row.period}`) ? 100 : 0 })
    }
    // Settled at 0: the id stays used, and a settle after it charges nothing more.
    expect(await s.store.settle(r, 50)).toEqual({ chargedMicros: 0, alreadySettled: true })
  })

  it('an abandon of a held record with its list (booked beyond the minute, or by an earlier release) releases where the list says', async () => {
    const s = await open()
    const r = await admitted(s, { session: { id: 'conv-1', budgetMicros: 1_000, maxSteps: null } })
    const sessionHeld = (): unknown => s.db.statement('SELECT held FROM sessions WHERE hash = ? AND id = ?').get(s.hash, 'conv-1')
    expect(sessionHeld()).toEqual({ held: 100 })
    const held = periods(s)
    nowMs += 60_000
    await s.store.abandon(s.hash, r.requestId)
    expect(periods(s)).toEqual(held.map((row) => ({ ...(row as object), held: 0 })))
    expect(sessionHeld()).toEqual({ held: 0 })
  })

  it.each([
    ['settled', SETTLED_RECORD_TTL_SECONDS],
    ['held', RESERVATION_TTL_SECONDS],
  ])('a request id whose %s record has expired is used again: the new reserve replaces the whole record', async (state, ttlSeconds) => {
    const s = await open()
    const { record: key } = await s.admin.createKey('two', ['openai', 'anthropic'], { limits: { daily: 10_000_000 }, loopLimit: 0 })
    const id = newRequestId(nowMs)
    const first = await s.store.reserve(reserveInput(key.hash, 100, { requestId: id, provider: 'anthropic', session: { id: 'conv-1', budgetMicros: 1_000, maxSteps: null } }))
    if (!first.ok) throw new Error(`refused: ${first.reason}`)
    if (state === 'settled') await s.store.settle(first.reservation, 40)
    const record = (): unknown => ({ ...(s.db.statement('SELECT state, amount, provider, booked, charged, created_at, expires_at FROM reservations WHERE hash = ? AND request_id = ?').get(key.hash, id) as object) })
    expect(record()).toMatchObject({ state, provider: 'anthropic' })
    // Still live: the id is used.
    await expect(s.store.reserve(reserveInput(key.hash, 70, { requestId: id }))).rejects.toThrow(/already used/)
    nowMs += ttlSeconds * 1000
    const again = await s.store.reserve(reserveInput(key.hash, 70, { requestId: id }))
    expect(again.ok).toBe(true)
    expect(record()).toEqual({ state: 'held', amount: 70, provider: 'openai', booked: '', charged: 0, created_at: new Date(nowMs).toISOString(), expires_at: nowMs + RESERVATION_TTL_SECONDS * 1000 })
  })
})
