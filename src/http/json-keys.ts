import { setImmediate as yieldToLoop } from 'node:timers/promises'

/**
 * Duplicate-key detection over a JSON body's raw bytes. `JSON.parse` keeps the last of two equal keys; a
 * provider's parser may keep the first, so a body with a repeated key could be metered one way and run
 * another (`"stream":false,…,"stream":true`, or a `"type"` that hides a file part). The proxy refuses such
 * bodies instead of re-serializing them, which would cost a second full pass in JS and change bytes the
 * client chose (number spelling, escapes, key order, what a SigV4 client expects).
 */

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c

/** Bytes scanned between two yields to the event loop (a few milliseconds of work at most). */
export const SCAN_SLICE_BYTES = 1 << 18

/**
 * Strings and structural bytes visited between two yields: a dense body (many short keys and values)
 * costs far more per byte than one long string, so slices are bounded in steps too (~1-3 ms each).
 */
export const SCAN_SLICE_STEPS = 4096

/**
 * A lookup table of `size` small values (0 to 127) indexed by byte, for the JSON scans. An Int8Array, not a Uint8Array:
 * Node makes each Buffer its C++ side creates (every chunk of a request body its HTTP parser reads: node::Buffer::Copy)
 * a Uint8Array and then sets its prototype, which moves Uint8Array's initial map on and leaves it unstable for the rest
 * of the process, so TurboFan checks the map of even a constant Uint8Array at every load (three instructions; with
 * BYTE_KINDS and a word set's heads, +2.1 % of the validating scan's state machine at 128 KiB, callgrind with
 * bench/jit-positions.mjs). Nothing sets an Int8Array's prototype: its map stays stable and the check is left out.
 */
export function byteTable(size = 256): Int8Array {
  return new Int8Array(size)
}

/**
 * One open container: an object's keys so far (and whether a key comes next), or null for an array. Keys
 * are kept as the offsets of their quotes (the first `keys` pairs of `quotes`) and compared byte by byte:
 * no string is made for a body with no repeat. An object past LINEAR_KEYS keys, or with a long or escaped
 * key, keeps them as strings in a Set. A closed object's frame is reused by the next one opened.
 */
export type Frame = { quotes: number[]; keys: number; set: Set<string> | null; expectKey: boolean } | null

/** Frames of closed objects, reset, for the next objects any scan opens: a transcript of a thousand messages needs a few. */
export const spareFrames: NonNullable<Frame>[] = []
export const MAX_SPARE_FRAMES = 64

/** Objects up to this many keys are searched linearly; larger ones get a Set. */
export const LINEAR_KEYS = 16
// A key compared byte by byte in JavaScript is at most this long (quotes included); a longer one is compared natively as a string.
export const LINEAR_KEY_BYTES = 32

// The quotes of a new frame: room for the linear case's keys, made by pushes so that copies of it keep small integers
// packed (a hole, or an array that grows, would make each load or store check for one).
const NO_QUOTES: number[] = []
for (let k = 0; k < 2 * LINEAR_KEYS; k++) NO_QUOTES.push(0)
// Tried and dropped, counted by callgrind over a 33 KB agent body's validating scan: the quotes as an Int32Array (each
// access checks its buffer; the scan then left valueEnds out of line), its self instructions 297.4k -> 298.8k + 3.6k.

/**
 * A frame for an object opened: a spare one, or a new one whose `quotes` hold the linear case's LINEAR_KEYS keys, so
 * that the two stores of each key never grow it.
 */
export function openFrame(): NonNullable<Frame> {
  return spareFrames.pop() ?? { quotes: NO_QUOTES.slice(), keys: 0, set: null, expectKey: true }
}

/**
 * True when the key whose quotes are at `start` and `end` was already in the object; records it otherwise.
 * `plain`: isPlainShortKey of that key.
 */
export function seen(raw: Buffer, frame: NonNullable<Frame>, start: number, end: number, plain: boolean): boolean {
  // The common case, small enough for a scan to inline: a plain key in an object of a few keys.
  if (!plain || frame.set !== null || frame.keys >= LINEAR_KEYS) return seenInSet(raw, frame, start, end, plain)
  const quotes = frame.quotes
  const used = 2 * frame.keys
  for (let k = 0; k < used; k += 2) if (sameBytes(raw, quotes[k] as number, quotes[k + 1] as number, start, end)) return true
  // used + 1 < 2 * LINEAR_KEYS: within quotes.
  quotes[used] = start
  quotes[used + 1] = end
  frame.keys++
  return false
}

/** seen of a key past the linear case: kept in the frame's Set (made now from its keys so far when it has none). */
function seenInSet(raw: Buffer, frame: NonNullable<Frame>, start: number, end: number, plain: boolean): boolean {
  if (frame.set === null) {
    const quotes = frame.quotes
    const used = 2 * frame.keys
    // A plain key may still match one of them (a long or escaped key is compared as text below).
    if (plain) for (let k = 0; k < used; k += 2) if (sameBytes(raw, quotes[k] as number, quotes[k + 1] as number, start, end)) return true
    const set = new Set<string>()
    for (let k = 0; k < used; k += 2) set.add(keyText(raw, quotes[k] as number, quotes[k + 1] as number))
    frame.set = set
  }
  const key = keyText(raw, start, end)
  if (frame.set.has(key)) return true
  frame.set.add(key)
  return false
}

/** Whether the key whose quotes are at `start` and `end` is at most LINEAR_KEY_BYTES long and has no escape. */
function isPlainShortKey(raw: Buffer, start: number, end: number): boolean {
  if (end - start > LINEAR_KEY_BYTES) return false
  for (let k = start + 1; k < end; k++) if (raw[k] === BACKSLASH) return false
  return true
}

/** Whether the keys whose quotes are at `a`, `aEnd` and `b`, `bEnd` hold the same bytes. */
function sameBytes(raw: Buffer, a: number, aEnd: number, b: number, bEnd: number): boolean {
  if (aEnd - a !== bEnd - b) return false
  for (let k = 1; k < aEnd - a; k++) if (raw[a + k] !== raw[b + k]) return false
  return true
}

// Bytes searched for a string's closing quote in JavaScript before Buffer.indexOf takes over.
const NEAR_QUOTE_BYTES = 32

/** The index of the quote that closes the string opened at `start`, skipping escaped quotes; -1 if none. */
export function stringEnd(raw: Buffer, start: number): number {
  // A short string (most keys and values) ends within a few bytes: found in JavaScript, cheaper than a native call.
  const near = Math.min(raw.length, start + 1 + NEAR_QUOTE_BYTES)
  let end = near
  for (let k = start + 1; k < near; k++) {
    if (raw[k] === QUOTE) {
      end = k
      break
    }
  }
  if (end === near) end = near === raw.length ? -1 : raw.indexOf(QUOTE, near)
  while (end > 0) {
    let slashes = 0
    for (let k = end - 1; k > start && raw[k] === BACKSLASH; k--) slashes++
    if (slashes % 2 === 0) return end
    end = raw.indexOf(QUOTE, end + 1)
  }
  return -1
}

/**
 * A key's identity as its UTF-8 bytes read one char per byte (latin1, the cheapest slice); a key with
 * escapes is decoded first, so `"mod\u0065l"` and `"model"` are the same key.
 */
export function keyText(raw: Buffer, start: number, end: number): string {
  let escaped = false
  for (let k = start + 1; k < end && !escaped; k++) escaped = raw[k] === BACKSLASH
  if (!escaped) return raw.toString('latin1', start + 1, end)
  const decoded = JSON.parse(raw.toString('utf8', start, end + 1)) as string
  return Buffer.from(decoded, 'utf8').toString('latin1')
}

/**
 * Strings a key scan looks out for (`createWordSet`), as a key anywhere or as the value of a `type` key: a
 * scan that met none of them proves that the parsed body has none of them there (see KeyReport.wordSeen).
 */
export interface WordSet {
  /** The words of each byte length (ASCII), indexed by length; empty outside [min, max]. */
  byLength: Uint8Array[][]
  min: number
  max: number
  /**
   * 1 at `length * 256 + first byte` of each word, and (`tails`) at `length * 256 + last byte`: most strings of a
   * body are told apart by a load or two (`function` and `fileData` share their first).
   */
  heads: Int8Array
  tails: Int8Array
}

/** A WordSet of `words`: printable ASCII, no quote or backslash (a word is spelled the same in JSON). */
export function createWordSet(words: readonly string[]): WordSet {
  const byLength: Uint8Array[][] = []
  let min = Infinity
  let max = 0
  for (const word of words) {
    if (!/^[\x20-\x7e]+$/.test(word) || word.includes('"') || word.includes('\\')) throw new Error(`not a plain ASCII word: ${word}`)
    const bytes = Buffer.from(word, 'latin1')
    min = Math.min(min, bytes.length)
    max = Math.max(max, bytes.length)
    while (byLength.length <= bytes.length) byLength.push([])
    ;(byLength[bytes.length] as Uint8Array[]).push(bytes)
  }
  const heads = byteTable((max + 1) * 256)
  const tails = byteTable((max + 1) * 256)
  for (let length = min; length <= max; length++) {
    for (const word of byLength[length] as Uint8Array[]) {
      heads[length * 256 + (word[0] as number)] = 1
      tails[length * 256 + (word[length - 1] as number)] = 1
    }
  }
  return { byLength, min, max, heads, tails }
}

const LETTER_U = 0x75

/** Whether the string whose quotes are at `start` and `end` spells one of `words` out. */
function isWord(raw: Buffer, start: number, end: number, words: WordSet): boolean {
  const length = end - start - 1
  if (length < words.min || length > words.max || words.heads[length * 256 + (raw[start + 1] as number)] === 0) return false
  const list = words.byLength[length] as Uint8Array[]
  for (let w = 0; w < list.length; w++) {
    const word = list[w] as Uint8Array
    if (raw[start + 1] !== word[0]) continue
    let k = 1
    while (k < length && raw[start + 1 + k] === word[k]) k++
    if (k === length) return true
  }
  return false
}

/**
 * Whether the string whose quotes are at `start` and `end` may be one of `words` once parsed: spelled out, or
 * with a `\u` escape (the only escape that spells a word's characters another way, each in 6 bytes at most).
 * `plain`: the string is known to have no backslash.
 */
export function mayBeWord(raw: Buffer, start: number, end: number, words: WordSet, plain: boolean): boolean {
  // A plain string is most often told apart by its length and first byte alone: small enough for a scan to inline.
  const length = end - start - 1
  if (plain && (length < words.min || length > words.max || words.heads[length * 256 + (raw[start + 1] as number)] === 0 || words.tails[length * 256 + (raw[end - 1] as number)] === 0)) return false
  return mayBeSpelledWord(raw, start, end, words, plain)
}

/** mayBeWord past its first test: the validating scan writes that test out and calls this only past it. */
export function mayBeSpelledWord(raw: Buffer, start: number, end: number, words: WordSet, plain: boolean): boolean {
  if (isWord(raw, start, end, words)) return true
  const length = end - start - 1
  if (plain || length <= words.min || length > 6 * words.max) return false
  // `\\u` (an escaped backslash, then u) is counted too: harmless.
  for (let k = start + 1; k < end - 1; k++) if (raw[k] === BACKSLASH && raw[k + 1] === LETTER_U) return true
  return false
}

/** Whether the key whose quotes are at `start` and `end` is `type` spelled out (an escaped one is a possible word). */
export function isTypeKey(raw: Buffer, start: number, end: number): boolean {
  return end - start === 5 && raw[start + 1] === 0x74 && raw[start + 2] === 0x79 && raw[start + 3] === 0x70 && raw[start + 4] === 0x65
}

/** What one scan of a body found: its first repeated key (null: none), and whether it met a word it looked out for. */
export interface KeyReport {
  duplicate: string | null
  /**
   * False only when, in the parsed body, no key is one of the scan's words and no `type` key's value is: none
   * was spelled out there, nor spelled with a `\u` escape. True otherwise (and whenever `duplicate` is set).
   */
  wordSeen: boolean
}

/** Where a scan over one body stands between two slices. */
interface KeyScan {
  raw: Buffer
  i: number
  top: Frame
  stack: Frame[]
  words: WordSet | null
  wordSeen: boolean
  /** The last key read was `type`: a string value next is its value. */
  afterType: boolean
}

/** A slice's answer: the repeated key, null when there is none, or NOT_DONE when the body goes on past the slice. */
const NOT_DONE = Symbol('not done')

/**
 * Scans `scan` on from where it stands for at most `sliceBytes` bytes and `sliceSteps` strings and
 * structural bytes; returns the first repeated key, null at the end of the body, or NOT_DONE.
 */
function scanSlice(scan: KeyScan, sliceBytes: number, sliceSteps: number): string | null | typeof NOT_DONE {
  const { raw, stack } = scan
  let { i, top } = scan
  const stop = i + sliceBytes
  let steps = 0
  // The first step of a slice always runs: a slice makes progress however small its budget.
  let first = true
  while (i < raw.length) {
    if (!first && (i >= stop || ++steps >= sliceSteps)) {
      scan.i = i
      scan.top = top
      return NOT_DONE
    }
    first = false
    const c = raw[i]
    if (c === QUOTE) {
      const end = stringEnd(raw, i)
      if (end < 0) return null
      const words = scan.words
      if (top !== null && top.expectKey) {
        const plain = isPlainShortKey(raw, i, end)
        if (seen(raw, top, i, end, plain)) return Buffer.from(keyText(raw, i, end), 'latin1').toString('utf8')
        top.expectKey = false
        // Any key may be a word; a string value only as a `type` key's (a string in an array is neither).
        if (words !== null && !scan.wordSeen) {
          if (mayBeWord(raw, i, end, words, plain)) scan.wordSeen = true
          else scan.afterType = isTypeKey(raw, i, end)
        }
      } else if (top !== null && scan.afterType && words !== null && !scan.wordSeen && mayBeWord(raw, i, end, words, false)) {
        scan.wordSeen = true
      }
      i = end + 1
      continue
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      stack.push(top)
      top = c === OPEN_OBJECT ? openFrame() : null
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (top !== null && spareFrames.length < MAX_SPARE_FRAMES) {
        top.keys = 0
        top.set = null
        top.expectKey = true
        spareFrames.push(top)
      }
      top = stack.pop() ?? null
    } else if (c === COMMA && top !== null) {
      top.expectKey = true
    }
    i++
  }
  return null
}

/**
 * The first key that appears twice in one object anywhere in `raw` (valid JSON), or null. Strings are
 * skipped natively (`Buffer.indexOf`); the scan yields to the event loop every `sliceBytes` or
 * `sliceSteps` strings and structural bytes, so a 10 MiB body never holds the loop for more than a slice.
 * A body scanned within its first slice is answered in the same turn, without a promise.
 */
export function findDuplicateKey(raw: Buffer, sliceBytes = SCAN_SLICE_BYTES, sliceSteps = SCAN_SLICE_STEPS): string | null | Promise<string | null> {
  const scan: KeyScan = { raw, i: 0, top: null, stack: [], words: null, wordSeen: false, afterType: false }
  const found = scanSlice(scan, sliceBytes, sliceSteps)
  return found === NOT_DONE ? scanRest(scan, sliceBytes, sliceSteps) : found
}

/**
 * findDuplicateKey's scan of `raw` (valid JSON), which also looks out for `words` in the same pass (see KeyReport.wordSeen): a
 * caller whose next walk over the parsed body can only find something at one of them may skip that walk.
 */
export function scanKeys(raw: Buffer, words: WordSet, sliceBytes = SCAN_SLICE_BYTES, sliceSteps = SCAN_SLICE_STEPS): KeyReport | Promise<KeyReport> {
  const scan: KeyScan = { raw, i: 0, top: null, stack: [], words, wordSeen: false, afterType: false }
  const found = scanSlice(scan, sliceBytes, sliceSteps)
  if (found !== NOT_DONE) return keyReport(scan, found)
  return scanRest(scan, sliceBytes, sliceSteps).then((duplicate) => keyReport(scan, duplicate))
}

function keyReport(scan: KeyScan, duplicate: string | null): KeyReport {
  // A scan that stopped at a repeated key did not read on: what it did not read may hold a word.
  return { duplicate, wordSeen: duplicate !== null || scan.wordSeen }
}

async function scanRest(scan: KeyScan, sliceBytes: number, sliceSteps: number): Promise<string | null> {
  for (;;) {
    await yieldToLoop()
    const found = scanSlice(scan, sliceBytes, sliceSteps)
    if (found !== NOT_DONE) return found
  }
}

const COLON = 0x3a

/**
 * The KeyReport of `raw` (valid JSON) told from `json`, its JSON.parse, without a scan, when the members prove it;
 * null when they do not (scan then). Each member of `raw` has one colon outside strings and a repeated key leaves
 * one member fewer in `json`: when `json`'s objects own as many keys in all as `raw` has colons, no key repeats.
 * A colon in a string declines at once (null), before the members are counted. `words`: as scanKeys's, as strings.
 */
export function keyReportOfParsed(raw: Buffer, json: unknown, words: ReadonlySet<string>): KeyReport | null {
  // Every colon of `raw` is counted or declines: a string misread can only decline, never leave a colon out (an
  // escape's next byte, skipped, is never one).
  let colons = 0
  const n = raw.length
  for (let i = 0; i < n; i++) {
    const c = raw[i]
    if (c === COLON) colons++
    else if (c === QUOTE) {
      for (i++; i < n; i++) {
        const s = raw[i]
        if (s === QUOTE) break
        if (s === COLON) return null
        if (s === BACKSLASH) i++
      }
    }
  }
  const tally = { members: 0, wordSeen: false }
  countMembers(json, words, tally)
  return tally.members === colons ? { duplicate: null, wordSeen: tally.wordSeen } : null
}

/** Adds the own keys of every object in `node` to `tally.members`, and notes a key or a `type`'s value in `words`. */
function countMembers(node: unknown, words: ReadonlySet<string>, tally: { members: number; wordSeen: boolean }): void {
  if (typeof node !== 'object' || node === null) return
  if (Array.isArray(node)) {
    for (let k = 0; k < node.length; k++) countMembers(node[k], words, tally)
    return
  }
  // Own keys only: an enumerable key someone put on Object.prototype must not stand in for a repeated one.
  const keys = Object.keys(node)
  tally.members += keys.length
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k] as string
    const value = (node as Record<string, unknown>)[key]
    if (!tally.wordSeen && (words.has(key) || (key === 'type' && typeof value === 'string' && words.has(value)))) tally.wordSeen = true
    if (typeof value === 'object' && value !== null) countMembers(value, words, tally)
  }
}
