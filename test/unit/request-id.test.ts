import { describe, expect, it } from 'vitest'
import { newRequestId } from '../../src/budget/request-id.js'

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('request ids (UUIDv7)', () => {
  it('are version-7 UUIDs whose first 48 bits are the millisecond', () => {
    // Ids of one process only increase, so the tests' clocks go forward from test to test.
    const ms = Date.UTC(2030, 11, 3, 22, 50, 1, 234)
    const id = newRequestId(ms)
    expect(id).toMatch(UUID_V7)
    expect(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(ms)
    expect(newRequestId(ms + 1).slice(0, 13)).toBe(newRequestId(ms + 1).slice(0, 13))
  })

  it('sort in the order of their milliseconds, so the embedded store appends their records', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => newRequestId(Date.UTC(2031, 0, 1) + i))
    expect([...ids].sort()).toEqual(ids)
  })

  it('strictly increase within one process, in one millisecond too and when the clock goes back', () => {
    const ms = Date.UTC(2032, 0, 1)
    const ids = [...Array.from({ length: 5000 }, () => newRequestId(ms)), newRequestId(ms - 10), newRequestId(ms + 5)]
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true)
    for (const id of ids) expect(id).toMatch(UUID_V7)
    // Past 4,096 ids in one millisecond the next millisecond is borrowed; a clock gone back keeps the last one.
    expect(ids[4999]!.slice(0, 13) > ids[0]!.slice(0, 13)).toBe(true)
    expect(ids.at(-2)!.slice(0, 13)).toBe(ids[4999]!.slice(0, 13))
  })

  it('are unique and carry random bits (over several pool refills)', () => {
    const ms = Date.now()
    const ids = Array.from({ length: 20_000 }, () => newRequestId(ms))
    expect(new Set(ids).size).toBe(ids.length)
    for (const id of ids.slice(0, 50)) expect(id).toMatch(UUID_V7)
    // Within one millisecond the random tail differs in every position over many ids.
    const tails = new Set(ids.map((id) => id.slice(24)))
    expect(tails.size).toBe(ids.length)
  })
})
