import { setImmediate as yieldToLoop } from 'node:timers/promises'
import {
  byteTable,
  isTypeKey,
  keyText,
  LINEAR_KEY_BYTES,
  MAX_SPARE_FRAMES,
  mayBeSpelledWord,
  mayBeWord,
  openFrame,
  SCAN_SLICE_BYTES,
  SCAN_SLICE_STEPS,
  seen,
  spareFrames,
  type Frame,
  type KeyReport,
  type WordSet,
} from './json-keys.js'
import type { MemberSpan } from './json-members.js'
import { holdBody, stringEnd } from './json-simd.js'

/**
 * A validating key scan: one pass over a body's raw bytes that gives the verdict `JSON.parse(raw.toString('utf8'))`
 * would give (valid JSON or not, an object or not) without building the parsed tree, the key scan's report (first
 * repeated key, words met: json-keys.ts), and where the top-level members and the elements of top-level arrays lie,
 * so a reader parses only the spans it reads.
 */

/**
 * A top-level member, and when its value is an array, where each element lies (pairs of start, end) and where each
 * element's `type` key lies (`typeKeys`).
 */
export interface ScannedMember extends MemberSpan {
  elements: number[] | null
  /**
   * Of an array, per element: the opening quote of its `type` key spelled out, NO_KEY when it has none (or is no
   * object), ESCAPED_KEY when it has a key spelled with an escape (which may be `type`). Null when every element
   * would be NO_KEY (and for a value that is no array).
   */
  typeKeys: number[] | null
}

/** typeKeys: the element has no `type` key, or is no object. */
export const NO_KEY = -1
/** typeKeys: the element has a key spelled with an escape, read to know whether it is `type`. */
export const ESCAPED_KEY = -2

/** The scan's verdict: `not_json` where JSON.parse throws, `not_object` where it gives anything but an object. */
export type JsonScan = { ok: false; problem: 'not_json' | 'not_object' } | { ok: true; keys: KeyReport; members: ScannedMember[] }

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

// What may come next outside a string.
const VALUE = 0
const VALUE_OR_CLOSE = 1
const KEY = 2
const KEY_OR_CLOSE = 3
const COLON_NEXT = 4
const COMMA_OR_CLOSE = 5
const END = 6

// Inside a string, each byte is one of these: a quote, a backslash, a control byte (< 0x20, refused) or any other (kept).
// Bytes of 0x80 and up are kept whatever sequence they make: toString('utf8') turns a bad one into U+FFFD (which JSON
// allows in a string) and never swallows the ASCII byte after it, so the string ends where it ends in the bytes.
const PLAIN = 0
const CLOSES = 1
const ESCAPES = 2
const CONTROL = 3
const STRING_BYTES = byteTable()
for (let c = 0; c < 0x20; c++) STRING_BYTES[c] = CONTROL
STRING_BYTES[QUOTE] = CLOSES
STRING_BYTES[BACKSLASH] = ESCAPES

/** The bytes that may follow a backslash: `" \ / b f n r t` (and `u` with four hex digits). */
const SIMPLE_ESCAPES = byteTable()
for (const c of '"\\/bfnrt') SIMPLE_ESCAPES[c.charCodeAt(0)] = 1
const HEX = byteTable()
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1
const LETTER_U = 0x75

// What a byte outside a string begins, told by one load rather than a chain of compares (a quote, the most common,
// was the fifth compare): space, a string, a colon, a comma, a container opened or closed; 0 for the rest (a number,
// a literal, or a byte JSON refuses there).
const SPACE = 1
const STRING = 2
const COLON_BYTE = 3
const COMMA_BYTE = 4
const OPENS = 5
const CLOSES_CONTAINER = 6
const BYTE_KINDS = byteTable()
for (const c of [0x20, 0x0a, 0x0d, 0x09]) BYTE_KINDS[c] = SPACE
BYTE_KINDS[QUOTE] = STRING
BYTE_KINDS[COLON] = COLON_BYTE
BYTE_KINDS[COMMA] = COMMA_BYTE
BYTE_KINDS[OPEN_OBJECT] = OPENS
BYTE_KINDS[OPEN_ARRAY] = OPENS
BYTE_KINDS[CLOSE_OBJECT] = CLOSES_CONTAINER
BYTE_KINDS[CLOSE_ARRAY] = CLOSES_CONTAINER

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= ZERO && c <= NINE

/**
 * Where a validating scan over one body stands between two slices. A class, its arrays copied from never-written
 * ones of their kind (stack, members, typeKeys: NO_FRAMES, NO_MEMBERS, NO_KEYS) or made by Array.of (spans), with no
 * literal or `new Array`: what a scan makes lives as long as the request that reads it, and V8 tenures an allocation
 * site whose objects it saw survive (each later one then starts in the old generation, garbage only a full collection
 * frees) and throws away the code that allocates there when it changes its mind: elementKey's `new Array` did, about
 * once a run (bench/agent-phases.mjs --trace-out).
 */
class Scan {
  raw: Buffer
  /** viewOf(raw). */
  view: DataView
  /** The wasm memory's hold of raw (json-simd.ts), or 0 when the JS path reads it. */
  hold: number
  i: number
  next: number
  top: Frame
  /** Frames of the open containers below `top` (null: an array, or outside the top value). */
  stack: Frame[]
  /** The top value is an object. */
  object: boolean
  words: WordSet | null
  wordSeen: boolean
  afterType: boolean
  duplicate: string | null
  members: ScannedMember[]
  /** The top-level member being read: its key (decoded) and its key's opening quote. */
  key: string
  keyStart: number
  valueStart: number
  /**
   * The element spans of the top-level member being read, when its value is an array (`spans`, its first
   * `spanCount` entries; copied out when the member ends), else null; and their typeKeys.
   */
  elements: number[] | null
  spanCount: number
  typeKeys: number[] | null
  /** Where this scan writes element spans: the spare buffer when it was free at the scan's start, else its own. */
  spans: number[]

  constructor(raw: Buffer, words: WordSet | null) {
    this.raw = raw
    this.view = viewOf(raw)
    this.hold = raw.length >= HELD_MIN_BYTES ? holdBody(raw, 0, 0) : 0
    this.i = 0
    this.next = VALUE
    this.top = null
    this.stack = NO_FRAMES.slice()
    this.object = false
    this.words = words
    this.wordSeen = false
    this.afterType = false
    this.duplicate = null
    this.members = NO_MEMBERS.slice()
    this.key = ''
    this.keyStart = 0
    this.valueStart = 0
    this.elements = null
    this.spanCount = 0
    this.typeKeys = null
    this.spans = spareSpans ?? Array.of<number>()
  }
}

/** A top-level member's span as the scan found it (a class for the reason Scan is one). */
class Member implements ScannedMember {
  constructor(
    public key: string,
    public keyStart: number,
    public valueStart: number,
    public valueEnd: number,
    public elements: number[] | null,
    public typeKeys: number[] | null,
  ) {}
}

/**
 * Never written, and empty: the sources of a scan's stack and members, copied. Array.of made each one with small-integer
 * elements that its first frame or member turned into an array of objects, so the scan's stores and pops met both
 * kinds (scanSlice +3.9 % instructions on a 33 KB agent body); a copy of an empty array of objects starts as one.
 */
const NO_FRAMES: Frame[] = [null]
NO_FRAMES.pop()
const NO_MEMBERS: ScannedMember[] = [new Member('', 0, 0, 0, null, null)]
NO_MEMBERS.pop()

/** Never written: the source of a typeKeys array's first entries (a copy has no allocation site; see Scan). */
const NO_KEYS: readonly number[] = Array.from({ length: 256 }, () => NO_KEY)

/**
 * A span buffer that outlives its scan, so that an array's spans are stored into room already there rather than
 * pushed onto an array grown again and again (a 128 KiB conversation's 434 spans: 7 grows, ~8k instructions a scan).
 * Null while a scan holds it; one kept up to MAX_SPARE_SPANS entries.
 */
let spareSpans: number[] | null = []
const MAX_SPARE_SPANS = 8192

/** The longest body scanJson reads: its indices are small integers (the proxy scans bodies under BIG_BODY_BYTES). */
const MAX_SCAN_BYTES = 0x7fffffff
/** A slice's most steps: NaN or Infinity steps mean no bound, and a body has fewer steps than bytes. */
const MAX_STEPS = 0x7fffffff

const NOT_DONE = Symbol('not done')
const INVALID = Symbol('invalid')

/**
 * `raw`'s bytes read four at a time, little-endian whatever the machine (byte k is the low byte of the word at k),
 * for specialByte: a long string's content is most of a body, and a byte at a time costs twice as much.
 */
function viewOf(raw: Buffer): DataView {
  return new DataView(raw.buffer, raw.byteOffset, raw.length)
}

/**
 * Bit 7 of each byte of the little-endian word `v` that may be a quote, a backslash or a control byte (below 0x20):
 * zero when none is. The bit tricks of "has a byte below n" and "has a zero byte" (flipping bit 1 takes a quote to
 * 0x20 and keeps control bytes below it, so one test finds both; a second, a backslash) flag the lowest such byte
 * exactly; a byte above it may be flagged by the borrow, so only the lowest flag is read. Both tests' `& ~x` are
 * one `& ~v`: neither xor touches bit 7 (two operations fewer a word, ~11 % fewer instructions over a long string).
 */
function specialBits(v: number): number {
  return (((v ^ 0x02020202) - 0x21212121) | ((v ^ 0x5c5c5c5c) - 0x01010101)) & ~v & 0x80808080
}

/**
 * The index of the first byte at or after `k` that is a quote, a backslash or a control byte (below 0x20); raw.length
 * when none is. `view`: viewOf(raw). Four bytes at a time, the one found by its flag (the lowest set bit's byte); the
 * last few bytes of the body one at a time. Small, so that the scan inlines it: it runs once per string and escape.
 */
function specialByte(raw: Buffer, view: DataView, k: number): number {
  const length = raw.length
  let bits = 0
  while (k + 4 <= length && (bits = specialBits(view.getInt32(k, true))) === 0) k += 4
  if (bits !== 0) return k + ((31 - Math.clz32(bits & -bits)) >> 3)
  while (k < length && STRING_BYTES[raw[k] as number] === PLAIN) k++
  return k
}

// Tried and dropped, counted by callgrind: two words a loop, or'd, +13 % instructions over a 33 KB agent body (+86 % over
// one long string); an escape skipped inside this loop, +12 % (a larger function) or +23 % (its return value marked).

// Tried and dropped: each string of a slice walked in one wasm call onto a tape the scan reads (the next opening quote
// found in SIMD too): a 33 KB agent body's scan 21.8 -> 27.8 us CPU. A call costs ~3 ns; the module's gap search and stores cost more.
// Also dropped, in-process medians against the build before: the string after a colon or comma walked in the same call
// (half the calls, its answer left in memory; as a second function, then as one walking twice) 33 KB 20.6 -> 22.8 and
// 22.8 -> 24.1 us, 131 KB 75.7 -> 82.6 and 82.1 -> 82.9 (the module's share of the samples grew more than the calls saved);
// the comma after a closing bracket read with it, as after a string (~500 steps fewer at 131 KB), both orders: 33 KB
// 22.6 -> 21.9, 24.1 -> 24.4 us, 131 KB 73.6 -> 75.8, 84.4 -> 84.9 (noise).
// A body this long or longer is walked in wasm (json-simd.ts) when it fits the module's memory. Measured: a 90-byte body
// scanned ~10 % slower held (the copy and the calls); per string, keys left to JS (a call saved on a short one) no faster.
const HELD_MIN_BYTES = 1024

/** One past the escape whose backslash is at `k`, or -1 when JSON has no such escape. */
function escapeEnd(raw: Buffer, k: number): number {
  const escaped = raw[k + 1] as number
  if (SIMPLE_ESCAPES[escaped] === 1) return k + 2
  if (escaped === LETTER_U && HEX[raw[k + 2] as number] === 1 && HEX[raw[k + 3] as number] === 1 && HEX[raw[k + 4] as number] === 1 && HEX[raw[k + 5] as number] === 1) return k + 6
  return -1
}

/** One past the number that starts at `start`, or -1 when it does not follow JSON's number grammar. */
function numberEnd(raw: Buffer, start: number): number {
  let k = start
  if (raw[k] === MINUS) k++
  if (raw[k] === ZERO) k++
  else if (isDigit(raw[k])) while (isDigit(raw[k])) k++
  else return -1
  if (raw[k] === DOT) {
    k++
    if (!isDigit(raw[k])) return -1
    while (isDigit(raw[k])) k++
  }
  if (raw[k] === 0x65 || raw[k] === 0x45) {
    k++
    if (raw[k] === PLUS || raw[k] === MINUS) k++
    if (!isDigit(raw[k])) return -1
    while (isDigit(raw[k])) k++
  }
  return k
}

/** One past the literal `true`, `false` or `null` that starts at `start`, or -1. */
function literalEnd(raw: Buffer, start: number): number {
  const c = raw[start]
  if (c === 0x74) return raw[start + 1] === 0x72 && raw[start + 2] === 0x75 && raw[start + 3] === 0x65 ? start + 4 : -1
  if (c === 0x66) return raw[start + 1] === 0x61 && raw[start + 2] === 0x6c && raw[start + 3] === 0x73 && raw[start + 4] === 0x65 ? start + 5 : -1
  if (c === 0x6e) return raw[start + 1] === 0x75 && raw[start + 2] === 0x6c && raw[start + 3] === 0x6c ? start + 4 : -1
  return -1
}

/** The decoded text of the key whose quotes are at `start` and `end`, as JSON.parse gives it; `escaped`: it has an escape. */
function decodedKey(raw: Buffer, start: number, end: number, escaped: boolean): string {
  return escaped ? (JSON.parse(raw.toString('utf8', start, end + 1)) as string) : raw.toString('utf8', start + 1, end)
}

/** Notes a value that begins at `start` inside `top` where a span is kept: a top-level member's, an element of one that is an array. */
function valueBegins(scan: Scan, start: number, top: Frame): void {
  const depth = scan.stack.length
  if (depth === 1 && top !== null) {
    scan.valueStart = start
    scan.elements = scan.raw[start] === OPEN_ARRAY ? scan.spans : null
    scan.spanCount = 0
    scan.typeKeys = null
  } else if (depth === 2 && top === null && scan.elements !== null) {
    // Within the buffer's length or at its end: never a hole.
    scan.elements[scan.spanCount++] = start
    scan.typeKeys?.push(NO_KEY)
  }
}

/** Notes a string, number or literal in [start, end) inside `top` (valueBegins, then valueEnds). */
function valueSpan(scan: Scan, start: number, end: number, top: Frame): void {
  valueBegins(scan, start, top)
  valueEnds(scan, end, top)
}

/**
 * Notes a key of the element of a top-level array being read, whose opening quote is at `start`, that is `type`
 * spelled out or (`escaped`) may be: the element's typeKeys entry, unless one was noted.
 */
function elementKey(scan: Scan, start: number, escaped: boolean): void {
  // The elements begun so far, the last being read: its start is noted, not yet its end.
  const count = (scan.spanCount + 1) >> 1
  const keys = (scan.typeKeys ??= count <= NO_KEYS.length ? NO_KEYS.slice(0, count) : Array.from({ length: count }, () => NO_KEY))
  if (keys[count - 1] === NO_KEY) keys[count - 1] = escaped ? ESCAPED_KEY : start
}

/** Notes a value that ended at `end` (one past it) inside `top`: closes a top-level member's span or an element's. */
function valueEnds(scan: Scan, end: number, top: Frame): void {
  const depth = scan.stack.length
  if (depth === 1 && top !== null) {
    const elements = scan.elements === null ? null : scan.elements.slice(0, scan.spanCount)
    scan.members.push(new Member(scan.key, scan.keyStart, scan.valueStart, end, elements, scan.typeKeys))
    scan.elements = null
    scan.typeKeys = null
  } else if (depth === 2 && top === null && scan.elements !== null) {
    scan.elements[scan.spanCount++] = end
  }
}

/**
 * Scans `scan` on from where it stands for at most `sliceBytes` bytes and `sliceSteps` strings and structural
 * bytes: INVALID at the first byte JSON.parse would refuse, null at the end of a valid body, or NOT_DONE.
 */
function scanSlice(scan: Scan, sliceBytes: number, sliceSteps: number): null | typeof NOT_DONE | typeof INVALID {
  const { raw, stack, view, words } = scan
  const held = scan.hold !== 0
  let { i, top, next, wordSeen, afterType } = scan
  // Keys are checked for a repeat until one is found, and strings for a word until one is seen.
  let checking = scan.duplicate === null
  let looking = checking && words !== null && !wordSeen
  const length = raw.length
  // The loop's bounds as small integers, each converted once here rather than at every step (TurboFan checked a
  // buffer's length and a slice's float end on every pass): the slice's end within the body, and its steps. A body is
  // shorter than 2^31 bytes (scanJson), so each fits. The first step of a slice always runs (a slice makes progress
  // however small its budget): stop > i and maxSteps >= 1. NaN or Infinity: no bound, as before.
  const sliceEnd = i + Math.max(1, sliceBytes)
  const stop = sliceEnd < length ? Math.ceil(sliceEnd) | 0 : length | 0
  const maxSteps = sliceSteps < 1 ? 1 : sliceSteps < MAX_STEPS ? Math.floor(sliceSteps) | 0 : MAX_STEPS
  let steps = 0
  while (i < stop) {
    if (++steps > maxSteps) break
    const c = raw[i] as number
    const kind = BYTE_KINDS[c] as number
    if (kind === SPACE) {
      i++
      continue
    }
    if (kind === STRING) {
      // The closing quote: past each escape, to the next special byte; a control byte or the body's end refuses it.
      // A held body's in one wasm call; else one call of specialByte (its only one, which TurboFan then inlines) after
      // the opening quote and each escape.
      let from = i + 1
      let end = -1
      // A valid string has a backslash only where it has an escape: isPlainShortKey's walk, answered from what the scan saw.
      let escaped = false
      if (held) {
        const found = stringEnd(from, length)
        if (found < 0) return INVALID
        end = found >> 1
        escaped = (found & 1) !== 0
      } else {
        for (;;) {
          end = specialByte(raw, view, from)
          if (end >= length || raw[end] !== BACKSLASH) break
          escaped = true
          // A small integer, as `i = end | 0` below: a call's result would make `i` a tagged value across the loop.
          from = escapeEnd(raw, end) | 0
          if (from < 0) return INVALID
        }
        if (end >= length || raw[end] !== QUOTE) return INVALID
      }
      if (next === KEY || next === KEY_OR_CLOSE) {
        if (checking) {
          if (seen(raw, top as NonNullable<Frame>, i, end, !escaped && end - i <= LINEAR_KEY_BYTES)) {
            scan.duplicate = Buffer.from(keyText(raw, i, end), 'latin1').toString('utf8')
            checking = false
            looking = false
          } else if (looking) {
            // Any key may be a word; a string value only as a `type` key's (a string in an array is neither).
            // mayBeWord written out to its first test, which tells most keys apart: TurboFan's inlining budget left
            // mayBeWord a call for every key of a 128 KiB agent body (17k instructions a scan).
            const w = words as WordSet
            const size = end - i - 1
            const head = size >= w.min && size <= w.max && w.heads[size * 256 + (raw[i + 1] as number)] !== 0 && w.tails[size * 256 + (raw[end - 1] as number)] !== 0
            if ((escaped || head) && mayBeSpelledWord(raw, i, end, w, !escaped)) {
              wordSeen = true
              looking = false
            } else {
              afterType = isTypeKey(raw, i, end)
            }
          }
        }
        if (stack.length === 1) {
          scan.key = decodedKey(raw, i, end, escaped)
          scan.keyStart = i
        } else if (stack.length === 3 && (escaped || isTypeKey(raw, i, end)) && scan.elements !== null) {
          // A key of an element of a top-level array (a tool's, an input item's).
          elementKey(scan, i, escaped)
        }
        // A compact body's colon follows its key at once: read with it, one step fewer.
        if (raw[end + 1] === COLON) {
          next = VALUE
          i = end + 2
        } else {
          next = COLON_NEXT
          i = end + 1
        }
        continue
      }
      if (next !== VALUE && next !== VALUE_OR_CLOSE) return INVALID
      if (looking && afterType && top !== null && mayBeWord(raw, i, end, words as WordSet, !escaped)) {
        wordSeen = true
        looking = false
      }
      // Spans are kept of values at depth 2 at most: tested here, so that TurboFan spends its inlining budget on the
      // calls made for every string (specialByte, seen), not on these.
      if (stack.length <= 2) valueSpan(scan, i, end + 1, top)
      // Likewise the comma after a value inside a container.
      if (raw[end + 1] === COMMA && stack.length > 0) {
        next = top === null ? VALUE : KEY
        i = end + 2
      } else {
        next = stack.length === 0 ? END : COMMA_OR_CLOSE
        i = end + 1
      }
      continue
    }
    if (kind === COLON_BYTE) {
      if (next !== COLON_NEXT) return INVALID
      next = VALUE
    } else if (kind === COMMA_BYTE) {
      if (next !== COMMA_OR_CLOSE) return INVALID
      next = top === null ? VALUE : KEY
    } else if (kind === OPENS) {
      if (next !== VALUE && next !== VALUE_OR_CLOSE) return INVALID
      if (stack.length <= 2) valueBegins(scan, i, top)
      if (stack.length === 0) scan.object = c === OPEN_OBJECT
      // Stored at the end rather than pushed, here and for spareFrames: TurboFan left these two push calls to the builtin
      // (~50 instructions each, 3 % of a 33 KB agent body's scan); a store at the length it compiles inline.
      stack[stack.length] = top
      if (c === OPEN_OBJECT) {
        top = openFrame()
        next = KEY_OR_CLOSE
      } else {
        top = null
        next = VALUE_OR_CLOSE
      }
    } else if (kind === CLOSES_CONTAINER) {
      const closes = c === CLOSE_OBJECT ? top !== null && (next === KEY_OR_CLOSE || next === COMMA_OR_CLOSE) : top === null && stack.length > 0 && (next === VALUE_OR_CLOSE || next === COMMA_OR_CLOSE)
      if (!closes) return INVALID
      if (top !== null && spareFrames.length < MAX_SPARE_FRAMES) {
        top.keys = 0
        top.set = null
        top.expectKey = true
        spareFrames[spareFrames.length] = top
      }
      top = stack.pop() ?? null
      if (stack.length <= 2) valueEnds(scan, i + 1, top)
      next = stack.length === 0 ? END : COMMA_OR_CLOSE
    } else {
      if (next !== VALUE && next !== VALUE_OR_CLOSE) return INVALID
      const end = c === MINUS || (c >= ZERO && c <= NINE) ? numberEnd(raw, i) : literalEnd(raw, i)
      if (end < 0) return INVALID
      if (stack.length <= 2) valueSpan(scan, i, end, top)
      next = stack.length === 0 ? END : COMMA_OR_CLOSE
      // A small integer (end <= length < 2^31), so that `i` stays one across the loop (a call's result is a tagged value).
      i = end | 0
      continue
    }
    i++
  }
  if (i < length) {
    scan.i = i
    scan.top = top
    scan.next = next
    scan.wordSeen = wordSeen
    scan.afterType = afterType
    return NOT_DONE
  }
  scan.wordSeen = wordSeen
  return next === END ? null : INVALID
}

function verdict(scan: Scan, end: null | typeof INVALID): JsonScan {
  // The members hold copies of their spans: the buffer is free for the next scan.
  if (scan.spans.length <= MAX_SPARE_SPANS) spareSpans = scan.spans
  // The frames still open are dropped, not reused: this one scan holds them.
  if (end === INVALID) return { ok: false, problem: 'not_json' }
  if (!scan.object) return { ok: false, problem: 'not_object' }
  // A scan that met a repeated key stopped looking for words: what it did not look at may hold one.
  return { ok: true, keys: { duplicate: scan.duplicate, wordSeen: scan.duplicate !== null || scan.wordSeen }, members: scan.members }
}

/**
 * Scans `raw` (a request body, not empty): the verdict JSON.parse would give on `raw.toString('utf8')`, and for an
 * object its key report (`words` as scanKeys) and member spans. Yields to the event loop every `sliceBytes` bytes
 * or `sliceSteps` steps, as scanKeys does; a body scanned within its first slice is answered without a promise.
 */
export function scanJson(raw: Buffer, words: WordSet | null, sliceBytes = SCAN_SLICE_BYTES, sliceSteps = SCAN_SLICE_STEPS): JsonScan | Promise<JsonScan> {
  if (raw.length > MAX_SCAN_BYTES) throw new RangeError(`scanJson: a body of ${raw.length} bytes (at most ${MAX_SCAN_BYTES})`)
  const scan = new Scan(raw, words)
  spareSpans = null
  const end = scanSlice(scan, sliceBytes, sliceSteps)
  if (end !== NOT_DONE) return verdict(scan, end)
  return scanRest(scan, sliceBytes, sliceSteps)
}

async function scanRest(scan: Scan, sliceBytes: number, sliceSteps: number): Promise<JsonScan> {
  for (;;) {
    await yieldToLoop()
    // Another scan may have used the memory meanwhile.
    if (scan.hold !== 0) holdBody(scan.raw, scan.i, scan.hold)
    const end = scanSlice(scan, sliceBytes, sliceSteps)
    if (end !== NOT_DONE) return verdict(scan, end)
  }
}
