/**
 * A stream's events are mostly one JSON text repeated with another string in one place (the delta's text).
 * A slot learns that shape from one event and then reads the string of every event of the same shape without
 * parsing the rest: exactly the value JSON.parse gives there, escapes included.
 */

import type { OutputCounter } from '../tokens/output-counter.js'

const QUOTE = 0x22
const BACKSLASH = 0x5c
// What a string token's characters need beyond a copy: an escape, or what makes them more or less than one token.
const NOT_PLAIN = /["\\\u0000-\u001f]/
// A learned shape that never matched the next event counts as fruitless; after this many a stream stops learning.
const MAX_FRUITLESS = 4

export class StringSlot {
  // The learned text around the slot's string token, when `learned`.
  private prefix = ''
  private suffix = ''
  private learned = false
  private hits = 0
  private fruitless = 0

  /**
   * The string in the slot when `text` is the learned text with any one string token in the slot; undefined
   * when nothing is learned or `text` has another shape (then parse it).
   */
  read(text: string): string | undefined {
    if (!this.learned) return undefined
    const { prefix, suffix } = this
    const start = prefix.length
    const end = text.length - suffix.length
    if (end - start < 2 || text.charCodeAt(start) !== QUOTE || text.charCodeAt(end - 1) !== QUOTE) return undefined
    // Compared as strings: an order faster than startsWith/endsWith here (V8 compares those character by character).
    if (text.slice(0, start) !== prefix || text.slice(end) !== suffix) return undefined
    this.hits++
    const value = text.slice(start + 1, end - 1)
    if (!NOT_PLAIN.test(value)) return value
    // Escapes, or a quote (then several tokens or none): the token decoded alone is what JSON.parse reads in place.
    try {
      const decoded: unknown = JSON.parse(text.slice(start, end))
      return typeof decoded === 'string' ? decoded : undefined
    } catch {
      return undefined
    }
  }

  /**
   * Learns the shape of `text` (a JSON text that parsed) with the slot at the string token after the last
   * `marker` (a key, its colon and the token's opening quote, e.g. `"content":"`). Returns the probe: `text`
   * with a string in the slot that no other value of `text` can equal (it is longer than `text`). The caller
   * parses the probe and reads it the full way, and keeps the slot only if that reading does nothing but count
   * the probe's string (in the slot of the probe, nowhere else) once: then reading any text of this shape does nothing but count its
   * slot's string, and `read` gives that string; otherwise it calls `forget`. `learnChecked` does both. Null when `text` has no such
   * token, when that token is empty, or when this stream has stopped learning. `marker` must name a field the reading only counts, never
   * compares (a value compared, like an event type, would act on other strings as it does not on the probe's).
   */
  learn(text: string, marker: string): string | null {
    this.forget()
    if (this.fruitless >= MAX_FRUITLESS) return null
    const at = text.lastIndexOf(marker)
    if (at === -1) return null
    const start = at + marker.length - 1
    const end = stringTokenEnd(text, start)
    // An empty string is an opening event's (OpenAI's role chunk, Anthropic's content_block_start): the text
    // that follows comes in another shape, so its probe would only cost a parse.
    if (end === -1 || end - start === 2) return null
    this.prefix = text.slice(0, start)
    this.suffix = text.slice(end)
    this.learned = true
    this.hits = 0
    return `${this.prefix}"${probeString(text)}"${this.suffix}`
  }

  /**
   * Learns the shape of `text` as `learn` does and checks its probe at once, the one place that decides whether a
   * shape may be read without parsing: `readFully` reads the parsed probe the full way, counting into `counter`,
   * and says whether it reported nothing else (no usage, no error). The shape is kept when it did and counted
   * nothing but the probe's string, once: that count's context is returned. Otherwise the shape is forgotten and
   * null returned (also when `text` has no slot).
   */
  learnChecked(text: string, marker: string, readFully: (parsed: unknown, counter: ProbeCounter) => boolean): number | null {
    const probe = this.learn(text, marker)
    if (probe === null) return null
    const counter = new ProbeCounter()
    let quiet: boolean
    try {
      quiet = readFully(JSON.parse(probe), counter)
    } catch {
      quiet = false
    }
    const context = quiet ? counter.onlyCounted(probeString(text)) : null
    if (context === null) this.forget()
    return context
  }

  /** Drops the learned shape (a probe that failed its check, or before learning another). */
  forget(): void {
    if (this.learned && this.hits === 0) this.fruitless++
    this.learned = false
    this.prefix = ''
    this.suffix = ''
  }
}

/** What a probe of `text` puts in its slot: longer than `text`, so no other value of it can equal it. */
function probeString(text: string): string {
  return 'x'.repeat(text.length + 1)
}

/** The index after the closing quote of the JSON string token whose opening quote is at `start`, or -1. */
function stringTokenEnd(text: string, start: number): number {
  let at = start + 1
  for (;;) {
    const quote = text.indexOf('"', at)
    if (quote === -1) return -1
    let backslashes = 0
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++
    if (backslashes % 2 === 0) return quote + 1
    at = quote + 1
  }
}

/** An OutputCounter that records what a probe's full reading counts, instead of counting it. */
export class ProbeCounter implements OutputCounter {
  private readonly texts: string[] = []
  private readonly contexts: number[] = []
  private addedTokens = 0

  // As the output counter takes text: only non-empty strings count; the context as given.
  add(text: unknown, context = 0): void {
    if (typeof text !== 'string' || text.length === 0) return
    this.texts.push(text)
    this.contexts.push(context)
  }

  addTokens(tokens: number): void {
    this.addedTokens += tokens
  }

  tokens(): number {
    return 0
  }

  bound(): number {
    return 0
  }

  /** The context `text` was counted in, when nothing but `text` was counted, once; else null. */
  onlyCounted(text: string | null): number | null {
    if (this.addedTokens !== 0 || this.texts.length !== 1 || this.texts[0] !== text) return null
    return this.contexts[0] as number
  }
}
