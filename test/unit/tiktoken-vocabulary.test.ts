import { Tiktoken } from 'js-tiktoken/lite'
import cl100k from 'js-tiktoken/ranks/cl100k_base'
import o200k from 'js-tiktoken/ranks/o200k_base'
import { describe, expect, it } from 'vitest'
import { RankBuilder } from '../../src/tokens/rank-builder.js'
import { readRankSource } from '../../src/tokens/rank-file.js'
import { countTextTokens, type Encoding } from '../../src/tokens/tiktoken.js'

const ranks = { o200k_base: o200k, cl100k_base: cl100k }
const ENCODINGS: Encoding[] = ['o200k_base', 'cl100k_base']

/** Every token of an encoding as a latin1 string (one char per byte) by rank, read from js-tiktoken's own rank data. */
function vocabulary(encoding: Encoding): Map<string, number> {
  const tokens = new Map<string, number>()
  for (const line of ranks[encoding].bpe_ranks.split('\n')) {
    const [, first, ...fields] = line.split(' ')
    fields.forEach((field, i) => tokens.set(Buffer.from(field, 'base64').toString('latin1'), Number(first) + i))
  }
  return tokens
}

describe.each(ENCODINGS)('%s: the rank table against the whole vocabulary', (encoding) => {
  const tokens = vocabulary(encoding)
  const builder = new RankBuilder(readRankSource(encoding).rankText)
  builder.step()
  const table = builder.ranks

  it('finds every token at its rank, inside a longer string', () => {
    expect(table.size).toBe(tokens.size)
    let wrong = 0
    for (const [token, rank] of tokens) {
      const text = `\x00${token}\xff`
      if (table.rank(text, 1, text.length - 1) !== rank) wrong++
    }
    expect(wrong).toBe(0)
  })

  // Each token cut by a byte or grown by one is a near miss in its own bucket's neighbourhood: a token or not, as the vocabulary says.
  it('answers every token less its last byte or plus a byte as the vocabulary does', () => {
    let wrong = 0
    let found = 0
    for (const token of tokens.keys()) {
      for (const text of [token.slice(0, -1), `${token}e`, `${token}\x80`, `\x20${token}`]) {
        const expected = tokens.get(text) ?? -1
        if (expected !== -1) found++
        if (table.rank(text, 0, text.length) !== expected) wrong++
      }
    }
    expect(found).toBeGreaterThan(tokens.size / 4)
    expect(wrong).toBe(0)
  })

  // Each token that is valid UTF-8 on its own, as text: one token (or, where the pre-tokenizer splits it, js-tiktoken's count).
  it("counts every token's text as js-tiktoken does", () => {
    const reference = new Tiktoken(ranks[encoding])
    let wrong = 0
    let counted = 0
    for (const token of tokens.keys()) {
      const text = Buffer.from(token, 'latin1').toString('utf8')
      if (Buffer.byteLength(text) !== token.length) continue
      counted++
      if (countTextTokens(text, encoding) !== reference.encode(text, [], []).length) wrong++
    }
    expect(counted).toBeGreaterThan(tokens.size * 0.9)
    expect(wrong).toBe(0)
  }, 60_000)
})
