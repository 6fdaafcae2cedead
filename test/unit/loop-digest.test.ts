import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { JsonText } from '../../src/http/json-elements.js'
import { Digest } from '../../src/loop/digest.js'
import { seededRandom } from '../support/seeded-random.js'

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

  it.each([
    // Sampled: its head ends in the high half of a pair, its tail begins with a low half; joined, they are a pair.
    ['a string of astral characters cut inside pairs', ['a' + '😀'.repeat(1500) + 'b'], '3f9ba157eaa88f1f'],
    ['non-ASCII, lone surrogates, numbers and plain text', [{ b: 'é'.repeat(3000), a: ['\ud800x'.repeat(200), 1.5e-7, true, null], c: 'plain '.repeat(100) }], '329b9755e4f6d7ac'],
  ])('gives the digest of the release before for %s (a loop spanning an upgrade keeps its count)', (_name, values, hex) => {
    expect(hexOf(...values)).toBe(hex)
  })

  it('tells the step apart from a prefix of itself with a marker', () => {
    const digest = new Digest(MAX_NODES, MAX_CHARS)
    digest.add('in')
    digest.value('text')
    const tagged = digest.hex()
    expect(tagged).not.toBe(hexOf('in', 'text'))
  })
})

/** `text` as a JSON string literal with characters escaped as a client may spell them (`\\/`, `\\u00E9`, `\\n`). */
function spellString(text: string, random: () => number): string {
  if (random() < 0.4) return JSON.stringify(text)
  let out = '"'
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    const roll = random()
    if (code === 0x2f && roll < 0.5) out += '\\/'
    else if (roll < 0.1) out += `\\u${code.toString(16).padStart(4, '0')}`
    else if (roll < 0.15) out += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`
    else out += JSON.stringify(text[i]).slice(1, -1)
  }
  return `${out}"`
}

// Characters a string's bytes path must decode or refuse: escapes, a quote, controls, non-ASCII, a lone surrogate.
const tricky = fc.constantFrom('a', 'b', ' ', '/', '"', '\\', '\n', '\t', '\u0000', '\u007f', 'é', '\u0080', '\u2028', '😀', '\ud800', '\udfff')
const text = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 3, arbitrary: fc.string({ unit: tricky, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  // Past BULK_CHARS (256) and WHOLE_STRING_CHARS (2048): into the native hash, and sampled.
  { weight: 3, arbitrary: fc.tuple(fc.oneof(fc.string({ minLength: 1, maxLength: 5 }), fc.string({ unit: tricky, minLength: 1, maxLength: 5 })), fc.integer({ min: 50, max: 1500 })).map(([s, n]) => s.repeat(n)) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ minLength: 1, maxLength: 3 }), fc.integer({ min: 2000, max: 40_000 }), tricky).map(([s, n, c]) => `${s.repeat(n)}${c}${s.repeat(n >> 3)}`) },
)

describe('Digest.jsonText', () => {
  it('feeds a JSON string from its bytes as value feeds the string it spells, whatever was fed before and whatever the bounds', () => {
    let fromBytes = 0
    fc.assert(
      fc.property(
        text,
        fc.array(text, { maxLength: 12 }),
        fc.oneof(fc.constant(4096), fc.integer({ min: 0, max: 14 })),
        fc.oneof(fc.constant(96 * 1024), fc.integer({ min: 0, max: 4000 })),
        fc.integer(),
        (value, before, maxNodes, maxChars, seed) => {
          const literal = spellString(value, seededRandom(seed))
          const raw = Buffer.from(`{"x": ${literal} }`)
          const start = raw.indexOf('"', 5)
          const bytes = new Digest(maxNodes, maxChars)
          const parsed = new Digest(maxNodes, maxChars)
          for (const digest of [bytes, parsed]) {
            digest.add('in')
            for (const earlier of before) digest.value(earlier)
          }
          bytes.jsonText(new JsonText(raw, start, raw.length - 3))
          parsed.value(JSON.parse(literal))
          // What follows the string is fed alike too.
          for (const digest of [bytes, parsed]) digest.value(before)
          expect(bytes.hex()).toBe(parsed.hex())
          if (!/[\\\u0080-\uffff]/.test(literal)) fromBytes++
        },
      ),
      { numRuns: Number(process.env.FP_RUNS ?? 1000), seed: Number(process.env.FP_SEED ?? 1212) },
    )
    expect(fromBytes).toBeGreaterThan(100)
  })

  it('keeps the long pieces of one digest apart from another made alongside it', () => {
    const long = 'q'.repeat(5_000)
    const alone = new Digest(4096, 96 * 1024)
    alone.value(long)
    const expected = alone.hex()
    const first = new Digest(4096, 96 * 1024)
    const second = new Digest(4096, 96 * 1024)
    first.value(long)
    second.value('r'.repeat(5_000))
    expect(first.hex()).toBe(expected)
    expect(second.hex()).not.toBe(expected)
  })
})
