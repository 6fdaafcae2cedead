import type { OutputCounter } from '../../src/tokens/output-counter.js'

/** An OutputCounter for parser tests: one token per UTF-8 byte, keeping what it was given, so a test sees exactly what a parser counts. */
export interface ByteCounter extends OutputCounter {
  /** The texts added, in order. */
  texts: string[]
  /** Tokens added without text (block framing, media). */
  added: number
  text(): string
}

export function byteCounter(): ByteCounter {
  const counter: ByteCounter = {
    texts: [],
    added: 0,
    add(text) {
      if (typeof text === 'string' && text.length > 0) counter.texts.push(text)
    },
    addTokens(tokens) {
      counter.added += tokens
    },
    tokens: () => Buffer.byteLength(counter.text()) + counter.added,
    bound: () => counter.tokens(),
    text: () => counter.texts.join(''),
  }
  return counter
}
