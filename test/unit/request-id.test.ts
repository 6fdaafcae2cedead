import { describe, expect, it } from 'vitest'
import { newRequestId } from '../../src/budget/request-id.js'

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('request ids (UUIDv7)', () => {
  it('are version-7 UUIDs whose first 48 bits are the millisecond', () => {
    const ms = Date.UTC(2026, 11, 3, 22, 50, 1, 234)
    const id = newRequestId(ms)
    expect(id).toMatch(UUID_V7)
    expect(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(ms)
    expect(newRequestId(0).slice(0, 13)).toBe('00000000-0000')
    expect(newRequestId(2 ** 48 - 1).slice(0, 13)).toBe('ffffffff-ffff')
  })

  it('sort in the order of their milliseconds, so the embedded store appends their records', () => {
    const ids = Array.from({ length: 2000 }, (_, i) => newRequestId(1_764_800_000_000 + i))
    expect([...ids].sort()).toEqual(ids)
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
