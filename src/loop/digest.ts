import { hash } from 'node:crypto'

/**
 * A bounded canonical encoding of JSON values, hashed to 16 hex chars (the first 64 bits of SHA-256).
 * Work is capped by node and character budgets, never by body size: long strings are sampled (length,
 * head, middle, tail). The encoding is built as one string and hashed once: native SHA-256 runs several
 * times faster than any per-character hash loop in JavaScript.
 */

const WHOLE_STRING_CHARS = 2048
const EDGE_CHARS = 1024
const SAMPLE_CHARS = 128
const MAX_DEPTH = 16
const MAX_KEYS = 64
const MAX_ELEMENTS = 256

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

/** Bounded hash input: feed values with `add`/`value`, read the result with `hex`. */
export class Digest {
  private encoded = ''
  private nodes: number
  private readonly maxChars: number

  /** `maxNodes` values and about `maxChars` string characters are hashed at most; the rest is cut. */
  constructor(maxNodes: number, maxChars: number) {
    this.nodes = maxNodes
    this.maxChars = maxChars
  }

  /** A structural marker (role, part kind); markers cannot collide with encoded values. */
  add(tag: string): void {
    this.code(TAG)
    this.string(tag)
  }

  /** Encodes any JSON value canonically (object keys sorted), skipping the top-level keys in `omit`. */
  value(value: unknown, omit?: ReadonlySet<string>, depth = 0): void {
    if (--this.nodes < 0 || depth > MAX_DEPTH) {
      this.code(CUT)
      return
    }
    switch (typeof value) {
      case 'string':
        this.string(value)
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
        this.string(key)
        this.value(record[key], undefined, depth + 1)
      }
      this.code(END)
    }
  }

  /** The first 64 bits of SHA-256 over what was fed, as 16 hex chars. */
  hex(): string {
    return hash('sha256', this.encoded).slice(0, 16)
  }

  /** A marker: one control character. */
  private code(code: number): void {
    this.encoded += String.fromCharCode(code)
  }

  /** A length, written where the grammar expects one: digits and a colon. */
  private count(n: number): void {
    this.encoded += `${n}:`
  }

  /** Feeds `value` in [start, end). */
  private text(value: string, start: number, end: number): void {
    this.encoded += start === 0 && end === value.length ? value : value.slice(start, end)
  }

  private string(value: string): void {
    const n = value.length
    const room = this.maxChars - this.encoded.length
    if (room <= 0) {
      // Out of characters: the length alone still tells most strings apart.
      this.code(SAMPLED)
      this.count(n)
      return
    }
    if (n <= Math.min(WHOLE_STRING_CHARS, room)) {
      this.code(STRING)
      this.count(n)
      this.text(value, 0, n)
      return
    }
    // Sampled: the length plus head, three middle samples and tail tell apart all but contrived look-alikes.
    const edge = Math.max(16, Math.min(EDGE_CHARS, room >> 2))
    const sample = Math.min(SAMPLE_CHARS, edge)
    this.code(SAMPLED)
    this.count(n)
    this.text(value, 0, edge)
    for (const at of [n >> 2, n >> 1, (3 * n) >> 2]) this.text(value, at, Math.min(n, at + sample))
    this.text(value, n - edge, n)
  }
}
