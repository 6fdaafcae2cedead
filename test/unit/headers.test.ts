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
})
