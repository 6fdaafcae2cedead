import { describe, expect, it } from 'vitest'
import { bearerToken } from '../../src/http/headers.js'

describe('bearerToken', () => {
  it.each([
    ['Bearer abc', 'abc'],
    ['bearer abc', 'abc'],
    ['BEARER abc', 'abc'],
    ['Bearer  abc', 'abc'],
    ['Bearer\tabc', 'abc'],
    ['Bearer \u00a0abc', 'abc'],
    ['  Bearer abc  ', 'abc'],
    ['Bearer abc def', null],
    ['Bearer abc\u00a0def', null],
    ['Bearer abc\u2028def', null],
    ['Bearer ', null],
    ['Bearer', null],
    ['Bearerabc', null],
    ['Basic abc', null],
    ['', null],
  ])('%j → %j', (value, expected) => {
    expect(bearerToken({ authorization: value })).toBe(expected)
  })

  it('reads the first of repeated values, and nothing without the header', () => {
    expect(bearerToken({ authorization: ['Bearer one', 'Bearer two'] as unknown as string })).toBe('one')
    expect(bearerToken({})).toBeNull()
  })

  // The last value's token is kept for the next request: a value read again, or another one after it, reads as its own.
  it('gives each value its own token when values repeat and alternate', () => {
    const sequence: Array<[string | undefined, string | null]> = [
      ['Bearer lp-one', 'lp-one'],
      ['Bearer lp-one', 'lp-one'],
      ['Bearer lp-two', 'lp-two'],
      ['Bearer lp-one', 'lp-one'],
      ['Bearer lp one', null],
      ['Bearer lp one', null],
      [undefined, null],
      ['Bearer lp-one', 'lp-one'],
      ['Basic lp-one', null],
      ['Bearer lp-one', 'lp-one'],
    ]
    for (const [value, expected] of sequence) expect(bearerToken(value === undefined ? {} : { authorization: value })).toBe(expected)
  })
})
