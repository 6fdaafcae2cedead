/**
 * A few top-level members of a JSON object read from its raw bytes, without parsing the rest: a whole
 * upstream answer is walked once to check it is JSON and to find the members an adapter reads (its usage),
 * and only those are parsed. What the walk accepts, JSON.parse accepts too, with the same values for those
 * members; anything it cannot vouch for is parsed whole, as JSON.parse has it.
 */

import { byteTable } from './json-keys.js'

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c
const COLON = 0x3a
const MINUS = 0x2d
const PLUS = 0x2b
const DOT = 0x2e
const ZERO = 0x30
const NINE = 0x39

// Deeper nesting is left to JSON.parse (the walk recurses once per level).
const MAX_DEPTH = 64
// A string is scanned four bytes at a time past this many bytes (a view of its words costs what ~200 bytes do one by one).
const WORD_SCAN_AFTER = 256

/** Where a walk over one body stands: its bytes, and their 4-byte words once a long string needs them. */
interface Walk {
  raw: Buffer
  words: Int32Array | null
}

/** Per byte: 1 for JSON whitespace. */
const SPACE = byteTable()
for (const c of [0x20, 0x0a, 0x0d, 0x09]) SPACE[c] = 1
/** Per byte: 1 for what ends a run of plain bytes in a string: a quote, a backslash, a control character. */
const STRING_STOP = byteTable()
for (let c = 0; c < 0x20; c++) STRING_STOP[c] = 1
STRING_STOP[QUOTE] = 1
STRING_STOP[BACKSLASH] = 1

const isDigit = (c: number): boolean => c >= ZERO && c <= NINE
const isHex = (c: number): boolean => isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66)

/** The byte at `i`, or -1 past the end (reads stay in bounds: V8 reads out-of-bounds ones the slow way). */
const at = (raw: Buffer, i: number): number => (i < raw.length ? (raw[i] as number) : -1)

function skipSpace(raw: Buffer, i: number): number {
  const n = raw.length
  while (i < n && SPACE[raw[i] as number] === 1) i++
  return i
}

/** One past the escape at `i` (a backslash), or -1 when it is not one JSON allows. */
function afterEscape(raw: Buffer, i: number): number {
  const e = at(raw, i + 1)
  if (e === 0x75) return isHex(at(raw, i + 2)) && isHex(at(raw, i + 3)) && isHex(at(raw, i + 4)) && isHex(at(raw, i + 5)) ? i + 6 : -1
  // " \ / b f n r t
  return e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74 ? i + 2 : -1
}

/**
 * The index of the first 4-byte word at or after `i` (a word boundary of the underlying memory) that holds a
 * quote, a backslash or a control character, or of the last bytes that make no whole word. Branch-free per
 * word: some byte b of x is below n iff a high bit of (x - n × 0x01010101) & ~x is set (the lowest such b borrows first).
 */
function skipPlainWords(walk: Walk, i: number): number {
  const raw = walk.raw
  if (walk.words === null) {
    const first = (raw.byteOffset + 3) & ~3
    walk.words = new Int32Array(raw.buffer, first, (raw.byteOffset + raw.length - first) >> 2)
  }
  const words = walk.words
  const base = words.byteOffset - raw.byteOffset
  let w = (i - base) >> 2
  for (; w < words.length; w++) {
    const x = words[w] as number
    const quote = x ^ 0x22222222
    const slash = x ^ 0x5c5c5c5c
    if ((((x - 0x20202020) & ~x) | ((quote - 0x01010101) & ~quote) | ((slash - 0x01010101) & ~slash)) & 0x80808080) break
  }
  return base + (w << 2)
}

/** One past the quote that closes the string opened at `start`, or -1 when it is not a valid JSON string. */
function afterString(walk: Walk, start: number): number {
  const raw = walk.raw
  const n = raw.length
  const offset = raw.byteOffset
  let i = start + 1
  // Plain bytes one by one up to WORD_SCAN_AFTER (most strings end before): no word check per byte.
  const bytewise = Math.min(n, start + 1 + WORD_SCAN_AFTER)
  while (i < n) {
    while (i < bytewise && STRING_STOP[raw[i] as number] === 0) i++
    if (i >= n) break
    const c = raw[i] as number
    if (STRING_STOP[c] === 0) {
      i++
      // Bytes of UTF-8 sequences are never below 0x80, so a plain word holds none of the bytes looked for.
      if (((offset + i) & 3) === 0) i = skipPlainWords(walk, i)
    } else if (c === QUOTE) {
      return i + 1
    } else if (c === BACKSLASH) {
      i = afterEscape(raw, i)
      if (i < 0) return -1
    } else {
      return -1
    }
  }
  return -1
}

/** One past the digits from `i` on (`i` itself when there are none). */
function afterDigits(raw: Buffer, i: number): number {
  const n = raw.length
  while (i < n && isDigit(raw[i] as number)) i++
  return i
}

/** One past the number at `i`, or -1 when JSON does not spell numbers that way. */
function afterNumber(raw: Buffer, i: number): number {
  if (at(raw, i) === MINUS) i++
  const first = at(raw, i)
  if (first === ZERO) i++
  else if (isDigit(first)) i = afterDigits(raw, i + 1)
  else return -1
  if (at(raw, i) === DOT) {
    const end = afterDigits(raw, i + 1)
    if (end === i + 1) return -1
    i = end
  }
  if ((at(raw, i) | 0x20) === 0x65) {
    i++
    const sign = at(raw, i)
    if (sign === PLUS || sign === MINUS) i++
    const end = afterDigits(raw, i)
    if (end === i) return -1
    i = end
  }
  return i
}

/** One past `true`, `false` or `null` at `i`, whose first byte is `first`, or -1. */
function afterLiteral(raw: Buffer, i: number, first: number): number {
  const a = at(raw, i + 1)
  const b = at(raw, i + 2)
  const c = at(raw, i + 3)
  if (first === 0x74) return a === 0x72 && b === 0x75 && c === 0x65 ? i + 4 : -1
  if (first === 0x6e) return a === 0x75 && b === 0x6c && c === 0x6c ? i + 4 : -1
  return a === 0x61 && b === 0x6c && c === 0x73 && at(raw, i + 4) === 0x65 ? i + 5 : -1
}

/** One past the JSON value at `i`, or -1 when there is none the walk can vouch for. */
function afterValue(walk: Walk, i: number, depth: number): number {
  const raw = walk.raw
  const c = at(raw, i)
  if (c === QUOTE) return afterString(walk, i)
  if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
    if (depth >= MAX_DEPTH) return -1
    const object = c === OPEN_OBJECT
    const close = object ? CLOSE_OBJECT : CLOSE_ARRAY
    i = skipSpace(raw, i + 1)
    if (at(raw, i) === close) return i + 1
    for (;;) {
      if (object) {
        if (at(raw, i) !== QUOTE) return -1
        i = afterString(walk, i)
        if (i < 0) return -1
        i = skipSpace(raw, i)
        if (at(raw, i) !== COLON) return -1
        i = skipSpace(raw, i + 1)
      }
      i = afterValue(walk, i, depth + 1)
      if (i < 0) return -1
      i = skipSpace(raw, i)
      const next = at(raw, i)
      if (next === close) return i + 1
      if (next !== COMMA) return -1
      i = skipSpace(raw, i + 1)
    }
  }
  if (c === 0x74 || c === 0x66 || c === 0x6e) return afterLiteral(raw, i, c)
  return afterNumber(raw, i)
}

/** The index in `keys` of the key whose quotes are at `start` and `end - 1`, or -1. */
function keyIndex(raw: Buffer, start: number, end: number, keys: readonly string[]): number {
  let escaped = false
  for (let k = start + 1; k < end - 1 && !escaped; k++) escaped = raw[k] === BACKSLASH
  // An escaped key is compared as JSON.parse decodes it (`"us\u0061ge"` is `usage`).
  if (escaped) return keys.indexOf(JSON.parse(raw.toString('utf8', start, end)) as string)
  const length = end - start - 2
  for (let n = 0; n < keys.length; n++) {
    const key = keys[n] as string
    if (key.length !== length) continue
    let k = 0
    while (k < length && raw[start + 1 + k] === key.charCodeAt(k)) k++
    if (k === length) return n
  }
  return -1
}

/**
 * The members `keys` (ASCII names) of the object `raw` holds, each parsed once the walk vouched for its value
 * (the last of repeated keys, as JSON.parse keeps it), in an object of their own. Null unless all of `raw` is JSON.
 */
function readMembers(raw: Buffer, keys: readonly string[]): Record<string, unknown> | null {
  const walk: Walk = { raw, words: null }
  const picked: Record<string, unknown> = {}
  let i = skipSpace(raw, 0)
  if (at(raw, i) !== OPEN_OBJECT) return null
  i = skipSpace(raw, i + 1)
  if (at(raw, i) === CLOSE_OBJECT) return skipSpace(raw, i + 1) === raw.length ? picked : null
  for (;;) {
    if (at(raw, i) !== QUOTE) return null
    const keyStart = i
    i = afterString(walk, i)
    if (i < 0) return null
    const key = keyIndex(raw, keyStart, i, keys)
    i = skipSpace(raw, i)
    if (at(raw, i) !== COLON) return null
    const valueStart = skipSpace(raw, i + 1)
    i = afterValue(walk, valueStart, 1)
    if (i < 0) return null
    if (key >= 0) picked[keys[key] as string] = JSON.parse(raw.toString('utf8', valueStart, i))
    i = skipSpace(raw, i)
    const next = at(raw, i)
    if (next === CLOSE_OBJECT) return skipSpace(raw, i + 1) === raw.length ? picked : null
    if (next !== COMMA) return null
    i = skipSpace(raw, i + 1)
  }
}

/** JSON.parse of all of `raw` as UTF-8; null when it is not JSON. */
export function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'))
  } catch {
    return null
  }
}

/**
 * The members `keys` (ASCII names) of the JSON object `raw` holds, as JSON.parse would give them: an object
 * with only those of them `raw` has, parsed. When the walk cannot vouch for `raw` (not an object, not JSON,
 * nested deeper than it goes) it is `parseJson(raw)`, whatever that is. Either way `json[key]` is the same.
 */
export function pickMembers(raw: Buffer, keys: readonly string[]): unknown {
  return readMembers(raw, keys) ?? parseJson(raw)
}

/**
 * `pickMembers(raw, keys)` reduced to the members `keys` in an object of their own (small to pass between
 * threads, however large `raw`), or null when `raw` is not a JSON object: no adapter reads usage from anything else.
 */
export function pickMemberObject(raw: Buffer, keys: readonly string[]): Record<string, unknown> | null {
  const json = pickMembers(raw, keys)
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return null
  const picked: Record<string, unknown> = {}
  for (const key of keys) if (Object.hasOwn(json, key)) picked[key] = (json as Record<string, unknown>)[key]
  return picked
}
