import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { nextPiece } from '../../src/tokens/tiktoken.js'

/** Every match a global search finds, as [start, end] pairs. */
function searched(source: string, text: string): Array<[number, number]> {
  const global = new RegExp(source, 'gu')
  const out: Array<[number, number]> = []
  for (let match = global.exec(text); match !== null; match = global.exec(text)) {
    if (match[0].length === 0) break
    out.push([match.index, global.lastIndex])
  }
  return out
}

/** The same through `nextPiece`, one sticky pattern. */
function stepped(source: string, text: string): Array<[number, number]> {
  const sticky = new RegExp(source, 'uy')
  const out: Array<[number, number]> = []
  for (let at = 0, start = nextPiece(sticky, text, 0); start !== -1; start = nextPiece(sticky, text, at)) {
    at = sticky.lastIndex
    out.push([start, at])
  }
  return out
}

// tiktoken's patterns leave no character out, so only a pattern that does reaches the search past a gap.
describe('nextPiece', () => {
  it.each([
    ['[a-z]+', '12ab!!cd 😀ef'],
    ['[a-z]+', 'no gaps at all'.replaceAll(' ', '')],
    ['[a-z]+', '😀😀x\ud800y\udc00z'],
    ['\\p{L}\\p{M}*|\\d', ' é😀1 \u0301b'],
    ['[^\\ud83d]', '\ud83d\ude00a'],
  ])('finds what a global search of /%s/u finds in %j', (source, text) => {
    expect(stepped(source, text)).toEqual(searched(source, text))
  })

  it('agrees with a global search on generated text', () => {
    const sources = fc.constantFrom('[a-z]+', '\\p{L}+|\\p{N}{1,3}', '[^\\s]+', '\\s+(?!\\S)|\\s+', '.', '[\\ud800-\\udfff]')
    fc.assert(
      fc.property(sources, fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ unit: fc.constantFrom('a', ' ', '1', '\ud83d', '\ude00', '😀', 'é'), maxLength: 40 }), (source, a, b) => {
        const text = a + b
        expect(stepped(source, text)).toEqual(searched(source, text))
      }),
      { numRuns: 500 },
    )
  })
})
