import { createHash } from 'node:crypto'

/**
 * A bounded canonical encoding of JSON values, hashed to 16 hex chars (64 bits). Work is capped by
 * node and character budgets, never by body size: long strings are sampled (length, head, middle, tail).
 */

const WHOLE_STRING_CHARS = 4096
const EDGE_CHARS = 2048
const SAMPLE_CHARS = 128
const MAX_DEPTH = 16
const MAX_KEYS = 64
const MAX_ELEMENTS = 256

/** Bounded hash input: feed values with `add`/`value`, read the result with `hex`. */
export class Digest {
  private text = ''
  private nodes: number
  private readonly maxChars: number

  /** `maxNodes` values and about `maxChars` string characters are hashed at most; the rest is cut. */
  constructor(maxNodes: number, maxChars: number) {
    this.nodes = maxNodes
    this.maxChars = maxChars
  }

  /** A structural marker (role, part kind); markers cannot collide with encoded values. */
  add(tag: string): void {
    this.text += `\u0001${tag}`
  }

  /** Encodes any JSON value canonically (object keys sorted), skipping the top-level keys in `omit`. */
  value(value: unknown, omit?: ReadonlySet<string>, depth = 0): void {
    if (--this.nodes < 0 || depth > MAX_DEPTH) {
      this.text += '\u0002'
      return
    }
    switch (typeof value) {
      case 'string':
        this.string(value)
        return
      case 'number':
      case 'boolean':
        this.text += `\u0003${String(value)}`
        return
      case 'object':
        break
      default:
        this.text += '\u0004'
        return
    }
    if (value === null) {
      this.text += '\u0005'
    } else if (Array.isArray(value)) {
      const count = Math.min(value.length, MAX_ELEMENTS)
      this.text += `[${value.length}`
      for (let i = 0; i < count; i++) this.value(value[i], undefined, depth + 1)
      this.text += ']'
    } else {
      const record = value as Record<string, unknown>
      const keys = Object.keys(record)
      if (keys.length > 1) keys.sort()
      this.text += '{'
      const count = Math.min(keys.length, MAX_KEYS)
      for (let i = 0; i < count; i++) {
        const key = keys[i] as string
        if (omit?.has(key) === true) continue
        this.text += `\u0006${key}`
        this.value(record[key], undefined, depth + 1)
      }
      this.text += '}'
    }
  }

  /** The first 64 bits of SHA-256 over what was fed, as 16 hex chars. */
  hex(): string {
    return createHash('sha256').update(this.text).digest('hex').slice(0, 16)
  }

  private string(value: string): void {
    const room = this.maxChars - this.text.length
    const whole = Math.min(WHOLE_STRING_CHARS, room)
    if (value.length <= whole) {
      this.text += `\u0007${value.length}:${value}`
      return
    }
    // Sampled: the length plus head, three middle samples and tail tell apart all but contrived look-alikes.
    const edge = Math.max(16, Math.min(EDGE_CHARS, room >> 2))
    const sample = Math.min(SAMPLE_CHARS, edge)
    const n = value.length
    this.text += `\u0008${n}:${value.slice(0, edge)}`
    for (const at of [n >> 2, n >> 1, (3 * n) >> 2]) this.text += `|${value.slice(at, at + sample)}`
    this.text += `|${value.slice(n - edge)}`
  }
}
