import { describe, expect, it } from 'vitest'
import { cachedKeyHash, generateKey, hashKey, isKeyHash, isProxyKey, KEY_HASH_CACHE_SIZE } from '../../src/keys.js'

describe('generateKey', () => {
  it('is lp- followed by 43 characters of [A-Za-z0-9]', () => {
    for (let i = 0; i < 200; i++) expect(generateKey()).toMatch(/^lp-[A-Za-z0-9]{43}$/)
  })

  it('never repeats', () => {
    const keys = new Set(Array.from({ length: 2_000 }, generateKey))
    expect(keys.size).toBe(2_000)
  })

  it('uses every character of the alphabet about equally (no modulo bias)', () => {
    const counts = new Map<string, number>()
    const samples = 3_000
    for (let i = 0; i < samples; i++) for (const c of generateKey().slice(3)) counts.set(c, (counts.get(c) ?? 0) + 1)
    expect(counts.size).toBe(62)
    const expected = (samples * 43) / 62 // ≈ 2081 per character, σ ≈ 45
    for (const n of counts.values()) expect(Math.abs(n - expected)).toBeLessThan(expected * 0.12)
  })
})

describe('hashKey', () => {
  it.each([
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [`lp-${'A'.repeat(43)}`, '45a7bbdcaa35924e2b01f46b79fdc72a23324f8814469f36cd3cb0ee89e0b426'],
  ])('sha256(%s) is the lowercase hex digest of the whole string', (input, digest) => {
    expect(hashKey(input)).toBe(digest)
    expect(isKeyHash(hashKey(input))).toBe(true)
  })
})

describe('isProxyKey', () => {
  it.each([
    [`lp-${'a'.repeat(43)}`, true],
    [`lp-${'Z9'.repeat(21)}x`, true],
    [`lp-${'a'.repeat(42)}`, false],
    [`lp-${'a'.repeat(44)}`, false],
    [`LP-${'a'.repeat(43)}`, false],
    [`lp_${'a'.repeat(43)}`, false],
    [`lp-${'a'.repeat(42)}-`, false],
    [` lp-${'a'.repeat(43)}`, false],
    [`lp-${'a'.repeat(43)}\n`, false],
    ['', false],
  ])('%j → %s', (input, ok) => {
    expect(isProxyKey(input)).toBe(ok)
  })
})

describe('isKeyHash', () => {
  it.each([
    ['a'.repeat(64), true],
    ['A'.repeat(64), false],
    ['a'.repeat(63), false],
    ['g'.repeat(64), false],
  ])('%s → %s', (input, ok) => {
    expect(isKeyHash(input)).toBe(ok)
  })
})

describe('cachedKeyHash', () => {
  it('answers exactly what hashKey does, for keys seen again, evicted and seen again, and new', () => {
    const keys = Array.from({ length: KEY_HASH_CACHE_SIZE + 50 }, generateKey)
    for (const round of [0, 1]) {
      for (const key of keys) expect(cachedKeyHash(key), `round ${round}`).toBe(hashKey(key))
      // A hot key hit between new ones stays right after the others have pushed it towards eviction.
      expect(cachedKeyHash(keys[0] as string)).toBe(hashKey(keys[0] as string))
    }
  })
})
