import { stringEnd } from './json-keys.js'
import type { MemberSpan } from './json-members.js'

/**
 * Reads of a few depth-1 members of the objects in a body's array (a tool's `type`) without parsing the objects:
 * from their byte spans when the body was read lazily and the array not read since, else from the parsed array.
 * The spans are of a body its validating scan passed (valid JSON, no repeated key in any object: json-scan.ts), so a
 * reader that meets a member's key once has met its only occurrence, and skips values without checking them.
 */

/** A lazily read body's bytes and member spans, kept under LAZY_SPANS (proxy/lazy-members.ts), and the keys read since. */
export interface LazySpans {
  raw: Buffer
  spans: Map<string, MemberSpan & { elements?: number[] | null }>
  materialized: ReadonlySet<string>
}

/** The non-enumerable member under which a lazily read body keeps its LazySpans. */
export const LAZY_SPANS = Symbol('lazy members')

/** An array's elements, read member by member as `isObject(element) ? element[name] : undefined` would read them. */
export interface Elements {
  readonly length: number
  /** Element `index`'s own member `name` as JSON.parse gives it; undefined when absent or the element is not an object. */
  member(index: number, name: string): unknown
  /** The first of `names` (at most 31) that element `index` has as an own member other than null; null when none. */
  firstPresent(index: number, names: readonly string[]): string | null
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c
const LETTER_N = 0x6e

const isSpace = (c: number | undefined): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09

function skipSpace(raw: Buffer, i: number): number {
  while (isSpace(raw[i])) i++
  return i
}

/** One past the valid JSON value that starts at `start` (no leading space). */
function valueEnd(raw: Buffer, start: number): number {
  const c = raw[start]
  if (c === QUOTE) return stringEnd(raw, start) + 1
  if (c !== OPEN_OBJECT && c !== OPEN_ARRAY) {
    // A number or a literal: it ends at the first byte that may follow a value.
    let k = start + 1
    for (let b = raw[k]; b !== COMMA && b !== CLOSE_OBJECT && b !== CLOSE_ARRAY && !isSpace(b) && k < raw.length; b = raw[++k]);
    return k
  }
  let depth = 0
  for (let k = start; ; k++) {
    const b = raw[k]
    if (b === QUOTE) k = stringEnd(raw, k)
    else if (b === OPEN_OBJECT || b === OPEN_ARRAY) depth++
    else if ((b === CLOSE_OBJECT || b === CLOSE_ARRAY) && --depth === 0) return k + 1
  }
}

/** Whether the key whose quotes are at `start` and `end` is `name` once decoded (`"t\u0079pe"` is `type`). */
function keyIs(raw: Buffer, start: number, end: number, name: string): boolean {
  let escaped = false
  for (let k = start + 1; k < end; k++) if (raw[k] === BACKSLASH) escaped = true
  if (escaped) return JSON.parse(raw.toString('utf8', start, end + 1)) === name
  if (end - start - 1 !== name.length) return false
  for (let k = 0; k < name.length; k++) if (raw[start + 1 + k] !== name.charCodeAt(k)) return false
  return true
}

/**
 * Walks the depth-1 members of the object whose span starts at `start`, calling `visit` with each key's quotes and
 * value's start until it returns true; false when the value at `start` is not an object.
 */
function eachMember(raw: Buffer, start: number, visit: (keyStart: number, keyEnd: number, valueStart: number) => boolean): boolean {
  if (raw[start] !== OPEN_OBJECT) return false
  let i = skipSpace(raw, start + 1)
  while (raw[i] === QUOTE) {
    const keyEnd = stringEnd(raw, i)
    // The colon after the key, then the value.
    const valueStart = skipSpace(raw, skipSpace(raw, keyEnd + 1) + 1)
    if (visit(i, keyEnd, valueStart)) return true
    i = skipSpace(raw, valueEnd(raw, valueStart))
    if (raw[i] === COMMA) i = skipSpace(raw, i + 1)
  }
  return true
}

/** The value of a span as JSON.parse gives it: a string without escapes is sliced, not parsed. */
function spanValue(raw: Buffer, start: number): unknown {
  if (raw[start] === QUOTE) {
    const end = stringEnd(raw, start)
    let escaped = false
    for (let k = start + 1; k < end && !escaped; k++) escaped = raw[k] === BACKSLASH
    if (!escaped) return raw.toString('utf8', start + 1, end)
  }
  return JSON.parse(raw.toString('utf8', start, valueEnd(raw, start)))
}

/** Elements given as spans of `raw` (pairs of start, end), never parsed whole. */
class SpanElements implements Elements {
  readonly length: number

  constructor(
    private readonly raw: Buffer,
    private readonly spans: readonly number[],
  ) {
    this.length = spans.length / 2
  }

  member(index: number, name: string): unknown {
    const raw = this.raw
    let found = -1
    eachMember(raw, this.spans[2 * index] as number, (keyStart, keyEnd, valueStart) => {
      if (!keyIs(raw, keyStart, keyEnd, name)) return false
      found = valueStart
      return true
    })
    return found < 0 ? undefined : spanValue(raw, found)
  }

  firstPresent(index: number, names: readonly string[]): string | null {
    const raw = this.raw
    let present = 0
    eachMember(raw, this.spans[2 * index] as number, (keyStart, keyEnd, valueStart) => {
      // `null` is the only value starting with `n`.
      if (raw[valueStart] === LETTER_N) return false
      for (let n = 0; n < names.length; n++) if (keyIs(raw, keyStart, keyEnd, names[n] as string)) present |= 1 << n
      return false
    })
    return present === 0 ? null : (names[31 - Math.clz32(present & -present)] as string)
  }
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Elements of a parsed array. */
class ValueElements implements Elements {
  readonly length: number

  constructor(private readonly values: readonly unknown[]) {
    this.length = values.length
  }

  member(index: number, name: string): unknown {
    const value = this.values[index]
    return isObject(value) ? value[name] : undefined
  }

  firstPresent(index: number, names: readonly string[]): string | null {
    const value = this.values[index]
    if (isObject(value)) for (const name of names) if (value[name] != null) return name
    return null
  }
}

/** The spans of the elements of the array that starts at `start` (pairs of start, end). */
function elementSpans(raw: Buffer, start: number): number[] {
  const spans: number[] = []
  let i = skipSpace(raw, start + 1)
  while (raw[i] !== CLOSE_ARRAY) {
    const end = valueEnd(raw, i)
    spans.push(i, end)
    i = skipSpace(raw, end)
    if (raw[i] === COMMA) i = skipSpace(raw, i + 1)
  }
  return spans
}

/** The spans of the elements of `raw`'s object at `start`'s member `inner` when it is an array; null when it is not, or absent. */
function innerElementSpans(raw: Buffer, start: number, inner: string): number[] | null {
  let spans: number[] | null = null
  eachMember(raw, start, (keyStart, keyEnd, valueStart) => {
    if (!keyIs(raw, keyStart, keyEnd, inner)) return false
    if (raw[valueStart] === OPEN_ARRAY) spans = elementSpans(raw, valueStart)
    return true
  })
  return spans
}

/**
 * The elements of `body[key]` (with `inner`, of `body[key][inner]` when `body[key]` is an object) when it is an
 * array, null when it is not: from their spans when `body` was read lazily and `body[key]` neither read nor written
 * since (so the array is never parsed), else from the value `body[key]` reads.
 */
export function elementsOf(body: Record<string, unknown>, key: string, inner?: string): Elements | null {
  const lazy = (body as { [LAZY_SPANS]?: LazySpans })[LAZY_SPANS]
  const span = lazy?.spans.get(key)
  if (lazy !== undefined && span !== undefined && !lazy.materialized.has(key) && Object.getOwnPropertyDescriptor(body, key)?.get !== undefined) {
    if (inner !== undefined) {
      const spans = innerElementSpans(lazy.raw, span.valueStart, inner)
      return spans === null ? null : new SpanElements(lazy.raw, spans)
    }
    // Of a lazily read body each top-level array's element spans are known (the big-body path has none: read it).
    if (span.elements === null) return null
    if (span.elements !== undefined) return new SpanElements(lazy.raw, span.elements)
  }
  const outer = body[key]
  const value = inner === undefined ? outer : isObject(outer) ? outer[inner] : undefined
  return Array.isArray(value) ? new ValueElements(value) : null
}
