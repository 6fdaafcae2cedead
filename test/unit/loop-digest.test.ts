import { describe, expect, it } from 'vitest'
import { Digest } from '../../src/loop/digest.js'

const MAX_NODES = 4096
const MAX_CHARS = 96 * 1024

function hexOf(...values: unknown[]): string {
  const digest = new Digest(MAX_NODES, MAX_CHARS)
  for (const value of values) digest.value(value)
  return digest.hex()
}

const long = (char: string, length: number) => char.repeat(length)

describe('Digest', () => {
  it('gives the same 16 hex chars for the same values, with or without long pieces', () => {
    for (const values of [['Say hello.'], [{ b: 1, a: [true, null] }], [long('x', 5_000), 'y']]) {
      expect(hexOf(...values)).toMatch(/^[0-9a-f]{16}$/)
      expect(hexOf(...values)).toBe(hexOf(...values))
    }
  })

  it.each([
    ['a split moved between short strings', ['ab', 'c'], ['a', 'bc']],
    ['a character moved from a long string to a short one', ['x', long('y', 300)], ['xy', long('y', 299)]],
    ['two long strings swapped', [long('a', 300), long('b', 300)], [long('b', 300), long('a', 300)]],
    ['one character in the middle of a long string', [long('a', 1_000)], [`${long('a', 499)}b${long('a', 500)}`]],
    ['a string and the same text as a tag-like marker', ['\u0001in'], ['in']],
    ['a string and a number', ['1'], [1]],
    ['an empty array and an empty object', [[]], [{}]],
    ['a key and a string value', [{ a: 'b' }], [{ b: 'a' }]],
    ['code units the same in their low byte', ['\u0141'], ['\u0041']],
  ])('tells apart %s', (_name, left, right) => {
    expect(hexOf(...left)).not.toBe(hexOf(...right))
  })

  it('tells apart a late change once the short strings have gone past the lanes into the native hash', () => {
    const words = Array.from({ length: 250 }, (_, i) => `the word number ${i}`)
    const changed = [...words]
    changed[245] = 'the word number X'
    expect(hexOf(words)).not.toBe(hexOf(changed))
  })

  it('tells the step apart from a prefix of itself with a marker', () => {
    const digest = new Digest(MAX_NODES, MAX_CHARS)
    digest.add('in')
    digest.value('text')
    const tagged = digest.hex()
    expect(tagged).not.toBe(hexOf('in', 'text'))
  })
})
