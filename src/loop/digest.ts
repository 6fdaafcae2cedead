import { isAscii } from 'node:buffer'
import type { JsonText } from '../http/json-elements.js'
import { Bulk } from './bulk.js'

/**
 * A bounded canonical encoding of JSON values, hashed to 16 hex chars (64 bits). Work is capped by node
 * and character budgets, never by body size: long strings are sampled (length, head, middle, tail).
 *
 * Markers, lengths and short strings are mixed as they are fed into two 32-bit lanes (the murmur3 round,
 * a different rotation and multiplier in each), with no string built: a small conversation costs no
 * native call. Long pieces go as UTF-8 to one buffer hashed by native SHA-256 at the end (bulk.ts; a
 * per-character loop in JavaScript is ~3x slower there), whose first 64 bits the lanes then absorb. Which
 * way a piece goes follows from what was fed before it, so the two streams still decode to one value. A
 * string still in a lazily read body's bytes (`jsonText`) is fed from them when that is the same feed:
 * plain ASCII without escapes, each byte a unit. The lanes are no
 * cryptographic hash: a crafted collision needs the very content it collides with, which its sender
 * could resend as is, and a fingerprint only counts within one key's scope (src/loop/README.md).
 */

const WHOLE_STRING_CHARS = 2048
const EDGE_CHARS = 1024
const SAMPLE_CHARS = 128
const MAX_DEPTH = 16
const MAX_KEYS = 64
const MAX_ELEMENTS = 256

// Pieces of at least BULK_CHARS, and every piece once the lanes took LANE_CHARS, are hashed natively.
const BULK_CHARS = 256
const LANE_CHARS = 2048

// Markers separate what is fed so that no two different values encode alike.
const TAG = 1
const CUT = 2
const SCALAR = 3
const NONE = 4
const NULL = 5
const KEY = 6
const STRING = 7
const SAMPLED = 8
const ARRAY = 9
const OBJECT = 10
const END = 11
const BULK = 12

const BACKSLASH = 0x5c

// A string's bytes up to this many are checked for plain ASCII in JavaScript: a view and two native calls cost more.
const PLAIN_CHECK_BYTES = 128

/** Whether `raw` in [start, end) is ASCII without a backslash: a JSON string's bytes that spell it as they are. */
function isPlain(raw: Buffer, start: number, end: number): boolean {
  for (let k = start; k < end; k++) {
    const byte = raw[k] as number
    if (byte >= 0x80 || byte === BACKSLASH) return false
  }
  return true
}

/** isPlain of all of `bytes`, natively. */
function isPlainLong(bytes: Buffer): boolean {
  return isAscii(bytes) && bytes.indexOf(BACKSLASH) < 0
}

/** One unit (a code unit, a marker, a length half) spread over 32 bits: murmur3's key step. */
function spread(unit: number): number {
  const k = Math.imul(unit, 0xcc9e2d51)
  return Math.imul((k << 15) | (k >>> 17), 0x1b873593)
}

// (A table of spread for units below 256 cost more: the lanes' loop 24.4k → 27.3k callgrind instructions a fingerprint.)

/** Lane a's round: murmur3's. Lane b rotates and multiplies otherwise, so the lanes collide apart. */
function roundA(a: number, k: number): number {
  a ^= k
  return (Math.imul((a << 13) | (a >>> 19), 5) + 0xe6546b64) | 0
}

function roundB(b: number, k: number): number {
  b ^= k
  return (Math.imul((b << 17) | (b >>> 15), 9) + 0x7b7d159c) | 0
}

/** The murmur3 finalizer: every input bit flips each output bit with probability about one half. */
function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return h ^ (h >>> 16)
}

/** The hex digit of the low 4 bits of `n`. */
function digit(n: number): number {
  const d = n & 15
  return d < 10 ? 48 + d : 87 + d
}

/** The 32 bits big-endian of the four chars of the one-byte string `bytes` from `at`. */
function word(bytes: string, at: number): number {
  return (bytes.charCodeAt(at) << 24) | (bytes.charCodeAt(at + 1) << 16) | (bytes.charCodeAt(at + 2) << 8) | bytes.charCodeAt(at + 3)
}

/** `a` then `b` as 16 lower-case hex digits: one string made from arithmetic alone (Number#toString(16) costs several times more). */
function hex64(a: number, b: number): string {
  return String.fromCharCode(
    digit(a >>> 28), digit(a >>> 24), digit(a >>> 20), digit(a >>> 16), digit(a >>> 12), digit(a >>> 8), digit(a >>> 4), digit(a),
    digit(b >>> 28), digit(b >>> 24), digit(b >>> 20), digit(b >>> 16), digit(b >>> 12), digit(b >>> 8), digit(b >>> 4), digit(b),
  )
}

/** Bounded hash input: feed values with `add`/`value`, read the result with `hex`; `start` begins another. */
export class Digest {
  private a = 0
  private b = 0
  /** Units mixed into the lanes. */
  private laneChars = 0
  /** The long pieces, in the order fed; their lengths went to the lanes. */
  private readonly bulk = new Bulk()
  /** Code units fed in all (the `maxChars` budget). */
  private fed = 0
  private nodes = 0
  private maxChars = 0

  /** `maxNodes` values and about `maxChars` string characters are hashed at most; the rest is cut. */
  constructor(maxNodes: number, maxChars: number) {
    this.start(maxNodes, maxChars)
  }

  /** Begins a new digest with these bounds, as a new Digest would: one object serves digests made one after another. */
  start(maxNodes: number, maxChars: number): void {
    this.a = 0x6a09e667
    this.b = 0xbb67ae85
    this.laneChars = 0
    this.bulk.clear()
    this.fed = 0
    this.nodes = maxNodes
    this.maxChars = maxChars
  }

  /** A structural marker (role, part kind); markers cannot collide with encoded values. */
  add(tag: string): void {
    this.code(TAG)
    this.string(tag, 0, tag.length)
  }

  /** Encodes any JSON value canonically (object keys sorted), skipping the top-level keys in `omit`. */
  value(value: unknown, omit?: ReadonlySet<string>, depth = 0): void {
    if (--this.nodes < 0 || depth > MAX_DEPTH) {
      this.code(CUT)
      return
    }
    switch (typeof value) {
      case 'string':
        this.string(value, 0, value.length)
        return
      case 'number':
      case 'boolean': {
        const text = String(value)
        this.code(SCALAR)
        this.text(text, 0, text.length)
        return
      }
      case 'object':
        break
      default:
        this.code(NONE)
        return
    }
    if (value === null) {
      this.code(NULL)
    } else if (Array.isArray(value)) {
      const count = Math.min(value.length, MAX_ELEMENTS)
      this.code(ARRAY)
      this.count(value.length)
      for (let i = 0; i < count && this.nodes > 0; i++) this.value(value[i], undefined, depth + 1)
      this.code(END)
    } else {
      const record = value as Record<string, unknown>
      const keys = Object.keys(record)
      // Cut before sorting: sorting a million keys would stall every other request.
      if (keys.length > MAX_KEYS) keys.length = MAX_KEYS
      if (keys.length > 1) keys.sort()
      this.code(OBJECT)
      for (let i = 0; i < keys.length && this.nodes > 0; i++) {
        const key = keys[i] as string
        if (omit?.has(key) === true) continue
        this.code(KEY)
        this.string(key, 0, key.length)
        this.value(record[key], undefined, depth + 1)
      }
      this.code(END)
    }
  }

  /**
   * Encodes the string `text` holds as `value` encodes it decoded: one of ASCII without escapes from its bytes (each
   * byte a UTF-16 unit, at the same position), any other decoded first.
   */
  jsonText(text: JsonText): void {
    if (--this.nodes < 0) {
      this.code(CUT)
      return
    }
    const { raw, start, end } = text
    if (end - start - 1 <= PLAIN_CHECK_BYTES ? isPlain(raw, start + 1, end) : isPlainLong(raw.subarray(start + 1, end))) this.string(raw, start + 1, end - start - 1)
    // Escaped strings (code with its line ends) are decoded by JSON.parse: unescaping the bytes in JavaScript took
    // twice as long (1.4 against 0.7 µs for 900 bytes), and still longer written straight to the bytes the native hash
    // reads, with no string made (1.0–1.2 against 0.75–0.85 µs with the write, no \u escape, ASCII known).
    // (A table-driven unescape into a kept buffer, fed as ASCII bytes: +13 % / +15 % CPU a 32 KiB chat / Anthropic fingerprint.)
    else {
      const decoded = text.decode()
      this.string(decoded, 0, decoded.length)
    }
  }

  /** 64 bits over what was fed, as 16 hex chars; ends the digest (read it once). */
  hex(): string {
    const sha = this.bulk.sha256()
    if (sha !== null) {
      // The first 64 bits of SHA-256 over the long pieces, one byte a char (mix reads a unit as 32 bits: the same as
      // the hex digits parsed). (A 'buffer' digest read by readUInt32BE took longer: 0.75 against 0.41 µs over 300
      // bytes; the 'hex' digest, sliced and parsed, made three more strings.)
      this.code(BULK)
      this.mix(word(sha, 0))
      this.mix(word(sha, 4))
    }
    const a = fmix((this.a ^ this.fed) + this.b)
    const b = fmix(this.b + a)
    return hex64(a, b)
  }

  /** A marker: one unit. */
  private code(code: number): void {
    this.mix(code)
  }

  /** A length, where the grammar expects one: one unit (lengths stay below 2^32). */
  private count(n: number): void {
    this.mix(n)
  }

  /** Mixes one value of up to 32 bits into both lanes. */
  private mix(unit: number): void {
    const k = spread(unit)
    this.a = roundA(this.a, k)
    this.b = roundB(this.b, k)
    this.laneChars++
    this.fed++
  }

  /**
   * Feeds `value` in [start, end) — a string's units, or ASCII bytes, each byte the unit it spells (the same feed as
   * that string's): mixed unit by unit when short, else kept for the native hash.
   */
  private text(value: string | Buffer, start: number, end: number): void {
    const n = end - start
    if (n >= BULK_CHARS || this.laneChars >= LANE_CHARS) {
      if (typeof value === 'string') this.bulk.addText(value, start, end)
      else this.bulk.addAscii(value, start, end)
      this.fed += n
      return
    }
    let a = this.a
    let b = this.b
    if (typeof value === 'string') {
      for (let i = start; i < end; i++) {
        const k = spread(value.charCodeAt(i))
        a = roundA(a, k)
        b = roundB(b, k)
      }
    } else {
      for (let i = start; i < end; i++) {
        const k = spread(value[i] as number)
        a = roundA(a, k)
        b = roundB(b, k)
      }
    }
    this.a = a
    this.b = b
    this.laneChars += n
    this.fed += n
  }

  /** A string: its units, or ASCII bytes (see `text`): the `n` of `value` from `base`. */
  private string(value: string | Buffer, base: number, n: number): void {
    const room = this.maxChars - this.fed
    if (room <= 0) {
      // Out of characters: the length alone still tells most strings apart.
      this.code(SAMPLED)
      this.count(n)
      return
    }
    if (n <= Math.min(WHOLE_STRING_CHARS, room)) {
      this.code(STRING)
      this.count(n)
      this.text(value, base, base + n)
      return
    }
    // Sampled: the length plus head, three middle samples and tail tell apart all but contrived look-alikes.
    const edge = Math.max(16, Math.min(EDGE_CHARS, room >> 2))
    const sample = Math.min(SAMPLE_CHARS, edge)
    if (n < edge && typeof value !== 'string') {
      // A string shorter than its edges (the characters nearly spent): its pieces reach past it, fed as the string's
      // pieces are (units past it 0, in the lanes and in the bulk alike), never as the body's bytes around it. (Fed
      // from a view of its bytes, the bulk's copy threw on the tail's negative start.)
      value = value.toString('latin1', base, base + n)
      base = 0
    }
    this.code(SAMPLED)
    this.count(n)
    this.text(value, base, base + edge)
    this.text(value, base + (n >> 2), base + Math.min(n, (n >> 2) + sample))
    this.text(value, base + (n >> 1), base + Math.min(n, (n >> 1) + sample))
    this.text(value, base + ((3 * n) >> 2), base + Math.min(n, ((3 * n) >> 2) + sample))
    this.text(value, base + n - edge, base + n)
  }
}
