import { stringEnd } from './json-keys.js'
import { skipSpace, valueEnd, type MemberSpan } from './json-members.js'
import { ESCAPED_KEY, NO_KEY, type ScannedMember } from './json-scan.js'

/**
 * Reads of a few depth-1 members of the objects in a body's array (a tool's `type`, a message's `role`) without
 * parsing the objects, and of single elements: from their byte spans when the body was read lazily and the array not
 * read since, else from the parsed array. The spans are of a body its validating scan passed (valid JSON, no repeated
 * key in any object: json-scan.ts), so a reader that meets a member's key once has met its only occurrence, and skips
 * values without checking them.
 */

/** A lazily read body's bytes and member spans, kept under LAZY_SPANS (proxy/lazy-members.ts), and the keys read since. */
export interface LazySpans {
  raw: Buffer
  spans: Map<string, MemberSpan & Partial<Pick<ScannedMember, 'elements' | 'typeKeys'>>>
  materialized: ReadonlySet<string>
  /** The reader of a top-level array made last, and that array's key: the readers of one request (the check, the bound) share its reads. */
  reader: Elements | null
  readerKey: string | null
}

/** The non-enumerable member under which a lazily read body keeps its LazySpans. */
export const LAZY_SPANS = Symbol('lazy members')

/** The type of a JSON value as `typeof` gives it, with null and arrays told apart. */
type ElementType = 'object' | 'array' | 'string' | 'number' | 'boolean' | 'null'

/**
 * An array's elements, read member by member as `isObject(element) ? element[name] : undefined` would read them
 * (`name` never one of Object.prototype's: only own members are read), or one whole element at a time.
 */
export interface Elements {
  readonly length: number
  /** Whether the elements are read from a body's bytes (`value` parses one), not from a parsed array. */
  readonly spanned: boolean
  /** The type of element `index` (of a span, from its first byte). */
  typeOf(index: number): ElementType
  /** Element `index` as JSON.parse gives it (of a span, parsed on its first read only). */
  value(index: number): unknown
  /** Element `index`'s own member `name` as JSON.parse gives it; undefined when absent or the element is not an object. */
  member(index: number, name: string): unknown
  /** The first of `names` (at most 31) that element `index` has as an own member other than null; null when none. */
  firstPresent(index: number, names: readonly string[]): string | null
  /** Whether element `index` has an own member other than null whose name is not one of `names`. */
  hasOtherMember(index: number, names: readonly string[]): boolean
  /**
   * Sets `values[n]` to element `index`'s own member `names[n]` as `member` reads it, except that where bit n of
   * `undecoded` is set a value of a span comes undecoded (`undecodedValue`); false, `values` untouched, when the element is no object.
   */
  members(index: number, names: readonly string[], undecoded: number, values: unknown[]): boolean
  /** Element `index` as `value` gives it, except that of a span it comes undecoded (`undecodedValue`). */
  undecoded(index: number): unknown
}

/** A JSON string of a lazily read body not decoded yet: `raw` from its opening quote at `start` to its closing one at `end`. */
export class JsonText {
  constructor(
    readonly raw: Buffer,
    readonly start: number,
    readonly end: number,
  ) {}

  /** The string, as JSON.parse gives it. */
  decode(): string {
    return valueOf(this.raw, this.start, this.end + 1) as string
  }
}

/**
 * A JSON object or array of a lazily read body not parsed yet: `raw` in [start, end). Its members and elements are
 * read from the bytes (`members`, `elements`), a string among them undecoded as well.
 */
export class JsonSpan {
  constructor(
    readonly raw: Buffer,
    readonly start: number,
    readonly end: number,
    /** Of an array, its elements' spans (pairs of start, end) when the walk that found its end made them. */
    private readonly spans: number[] | null = null,
  ) {}

  /** Whether it is an object (else an array). */
  get isObject(): boolean {
    return this.raw[this.start] === OPEN_OBJECT
  }

  /** The value, as JSON.parse gives it. */
  decode(): unknown {
    return JSON.parse(this.raw.toString('utf8', this.start, this.end))
  }

  /** Of an object, Elements.members of it; false, `values` untouched, for an array. */
  members(names: readonly string[], undecoded: number, values: unknown[]): boolean {
    return readMembers(this.raw, this.start, names, undecoded, values)
  }

  /** Of an array, its first `limit` elements undecoded (`undecodedValue`) into `out` from index 0; returns how many it has in all. */
  elements(limit: number, out: unknown[]): number {
    const spans = this.spans ?? elementSpans(this.raw, this.start)
    const count = spans.length / 2
    for (let i = 0; i < count && i < limit; i++) out[i] = undecodedValue(this.raw, spans[2 * i] as number, spans[2 * i + 1] as number)
    return count
  }
}

/** The value `raw` holds in [start, end) undecoded: a string as its JsonText, an object or array as its JsonSpan, a scalar as JSON.parse gives it. */
export function undecodedValue(raw: Buffer, start: number, end: number): unknown {
  const first = raw[start]
  if (first === QUOTE) return new JsonText(raw, start, end - 1)
  if (first === OPEN_OBJECT || first === OPEN_ARRAY) return new JsonSpan(raw, start, end)
  return valueOf(raw, start, end)
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_OBJECT = 0x7b
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c
const LETTER_F = 0x66
const LETTER_N = 0x6e
const LETTER_T = 0x74
const MINUS = 0x2d
const ZERO = 0x30
const NINE = 0x39

/** Whether the key whose quotes are at `start` and `end` is `name` once decoded (`"t\u0079pe"` is `type`). */
function keyIs(raw: Buffer, start: number, end: number, name: string): boolean {
  let escaped = false
  for (let k = start + 1; k < end; k++) if (raw[k] === BACKSLASH) escaped = true
  if (escaped) return JSON.parse(raw.toString('utf8', start, end + 1)) === name
  if (end - start - 1 !== name.length) return false
  for (let k = 0; k < name.length; k++) if (raw[start + 1 + k] !== name.charCodeAt(k)) return false
  return true
}

/** The index of the first member's key quote (or of the closing brace) of the object at `start`; -1 when it is not an object. */
function firstMember(raw: Buffer, start: number): number {
  return raw[start] === OPEN_OBJECT ? skipSpace(raw, start + 1) : -1
}

/** The start of the value of the member whose key's opening quote is at `key` and closing one at `keyEnd`. */
function memberValue(raw: Buffer, keyEnd: number): number {
  // The colon after the key, then the value.
  return skipSpace(raw, skipSpace(raw, keyEnd + 1) + 1)
}

/** The index of the next member's key quote (or of the closing brace) after the value that starts at `value`. */
function nextMember(raw: Buffer, value: number): number {
  const i = skipSpace(raw, valueEnd(raw, value))
  return raw[i] === COMMA ? skipSpace(raw, i + 1) : i
}

/** The start of the value of member `name` of the object at `start`; -1 when absent or not an object. */
function memberStart(raw: Buffer, start: number, name: string): number {
  for (let key = firstMember(raw, start); key >= 0 && raw[key] === QUOTE; ) {
    const keyEnd = stringEnd(raw, key)
    const value = memberValue(raw, keyEnd)
    if (keyIs(raw, key, keyEnd, name)) return value
    key = nextMember(raw, value)
  }
  return -1
}

/** The value of a span as JSON.parse gives it: a string without escapes is sliced, not parsed. */
function spanValue(raw: Buffer, start: number): unknown {
  return valueOf(raw, start, raw[start] === QUOTE ? stringEnd(raw, start) + 1 : valueEnd(raw, start))
}

/**
 * The value of valid JSON `raw` holds in [start, end), as JSON.parse gives it: a literal known by its first byte, a
 * number by Number (the same correctly rounded double, -0 included), a string without escapes sliced; else parsed.
 */
export function valueOf(raw: Buffer, start: number, end: number): unknown {
  const first = raw[start] as number
  switch (first) {
    case LETTER_T:
      return true
    case LETTER_F:
      return false
    case LETTER_N:
      return null
  }
  if (first === MINUS || (first >= ZERO && first <= NINE)) return Number(raw.toString('latin1', start, end))
  if (first === QUOTE) {
    // Invalid UTF-8 decodes to U+FFFD alike in the slice and in the whole: the quotes around it are never swallowed.
    let escaped = false
    for (let k = start + 1; k < end - 1 && !escaped; k++) escaped = raw[k] === BACKSLASH
    if (!escaped) return commonString(raw, start + 1, end - 1) ?? raw.toString('utf8', start + 1, end - 1)
  }
  return JSON.parse(raw.toString('utf8', start, end))
}

// The strings the readers meet most (roles, content block and item types), given as constants: no native slice for them.
const COMMON_STRINGS: string[][] = []
for (const word of [
  'user', 'assistant', 'system', 'tool', 'developer', 'model', 'function', 'message', 'text', 'input_text', 'output_text',
  'tool_use', 'tool_result', 'thinking', 'redacted_thinking', 'image', 'image_url', 'function_call', 'function_call_output', 'reasoning',
]) (COMMON_STRINGS[word.length] ??= []).push(word)

/** The string `raw` holds in [start, end) (ASCII without escapes) when it is one of COMMON_STRINGS; else null. */
function commonString(raw: Buffer, start: number, end: number): string | null {
  const words = COMMON_STRINGS[end - start]
  if (words === undefined) return null
  for (let w = 0; w < words.length; w++) {
    const word = words[w] as string
    let k = 0
    while (k < word.length && raw[start + k] === word.charCodeAt(k)) k++
    if (k === word.length) return word
  }
  return null
}

/** A member not looked for yet. */
const UNREAD = Symbol('unread')
/**
 * Elements whose member read first is kept (a tool's `type`, read by each check): the first this many. A conversation's
 * items read by role from its far end are read once each, and no list as long as the conversation is made for them.
 */
const KEPT_READS = 64

/** Elements given as spans of `raw` (pairs of start, end), never parsed whole; the member read first, looked for once in each. */
class SpanElements implements Elements {
  readonly length: number
  readonly spanned = true
  /** The member read first (a tool's `type`), and the first KEPT_READS elements' values of it (UNREAD until looked for). */
  private readName: string | null = null
  private readValues: unknown[] | null = null
  /** The elements parsed whole so far (a conversation's items the fingerprint hashes: a few of many). */
  private parsed: Map<number, unknown> | null = null

  constructor(
    private readonly raw: Buffer,
    private readonly spans: readonly number[],
    /** Where each element's `type` key lies, as the validating scan found it (ScannedMember.typeKeys); undefined when not known. */
    private readonly typeKeys?: readonly number[] | null,
  ) {
    this.length = spans.length / 2
  }

  /** memberStart of element `index`: of `type`, from where the scan found its key when it did. */
  private memberStart(index: number, name: string): number {
    const keys = this.typeKeys
    if (name === 'type' && keys !== undefined) {
      const key = keys === null ? NO_KEY : (keys[index] as number)
      if (key === NO_KEY) return -1
      // `"type"` spelled out: its closing quote is 5 bytes on.
      if (key !== ESCAPED_KEY) return memberValue(this.raw, key + 5)
    }
    return memberStart(this.raw, this.spans[2 * index] as number, name)
  }

  typeOf(index: number): ElementType {
    switch (this.raw[this.spans[2 * index] as number]) {
      case OPEN_OBJECT:
        return 'object'
      case OPEN_ARRAY:
        return 'array'
      case QUOTE:
        return 'string'
      case LETTER_N:
        return 'null'
      case LETTER_T:
      case LETTER_F:
        return 'boolean'
      default:
        return 'number'
    }
  }

  value(index: number): unknown {
    this.parsed ??= new Map()
    if (this.parsed.has(index)) return this.parsed.get(index)
    const value: unknown = JSON.parse(this.raw.toString('utf8', this.spans[2 * index] as number, this.spans[2 * index + 1] as number))
    this.parsed.set(index, value)
    return value
  }

  member(index: number, name: string): unknown {
    if (this.readName === null) {
      this.readName = name
      this.readValues = new Array<unknown>(Math.min(this.length, KEPT_READS)).fill(UNREAD)
    }
    const values = name === this.readName && index < KEPT_READS ? this.readValues : null
    if (values !== null && values[index] !== UNREAD) return values[index]
    const start = this.memberStart(index, name)
    const value = start < 0 ? undefined : spanValue(this.raw, start)
    if (values !== null) values[index] = value
    return value
  }

  firstPresent(index: number, names: readonly string[]): string | null {
    const raw = this.raw
    let present = 0
    for (let key = firstMember(raw, this.spans[2 * index] as number); key >= 0 && raw[key] === QUOTE; ) {
      const keyEnd = stringEnd(raw, key)
      const value = memberValue(raw, keyEnd)
      // `null` is the only value that starts with `n`.
      if (raw[value] !== LETTER_N) for (let n = 0; n < names.length; n++) if (keyIs(raw, key, keyEnd, names[n] as string)) present |= 1 << n
      key = nextMember(raw, value)
    }
    return present === 0 ? null : (names[31 - Math.clz32(present & -present)] as string)
  }

  hasOtherMember(index: number, names: readonly string[]): boolean {
    const raw = this.raw
    for (let key = firstMember(raw, this.spans[2 * index] as number); key >= 0 && raw[key] === QUOTE; ) {
      const keyEnd = stringEnd(raw, key)
      const value = memberValue(raw, keyEnd)
      if (raw[value] !== LETTER_N) {
        let named = false
        for (let n = 0; n < names.length && !named; n++) named = keyIs(raw, key, keyEnd, names[n] as string)
        if (!named) return true
      }
      key = nextMember(raw, value)
    }
    return false
  }

  members(index: number, names: readonly string[], undecoded: number, values: unknown[]): boolean {
    return readMembers(this.raw, this.spans[2 * index] as number, names, undecoded, values)
  }

  undecoded(index: number): unknown {
    return this.parsed?.has(index) === true ? this.parsed.get(index) : undecodedValue(this.raw, this.spans[2 * index] as number, this.spans[2 * index + 1] as number)
  }
}

/** Elements.members of the object of `raw` at `start`; false, `values` untouched, when it is no object. */
function readMembers(raw: Buffer, start: number, names: readonly string[], undecoded: number, values: unknown[]): boolean {
  if (raw[start] !== OPEN_OBJECT) return false
  for (let n = 0; n < names.length; n++) values[n] = undefined
  for (let key = firstMember(raw, start); raw[key] === QUOTE; ) {
    const keyEnd = stringEnd(raw, key)
    const value = memberValue(raw, keyEnd)
    const n = nameIndex(raw, key, keyEnd, names)
    let end: number
    if (n >= 0 && ((undecoded >>> n) & 1) === 1 && raw[value] === OPEN_ARRAY) {
      // An array left undecoded: the walk to its end gives its elements' spans too.
      const spans: number[] = []
      end = arraySpans(raw, value, spans)
      values[n] = new JsonSpan(raw, value, end, spans)
    } else {
      end = valueEnd(raw, value)
      if (n >= 0) values[n] = ((undecoded >>> n) & 1) === 1 ? undecodedValue(raw, value, end) : valueOf(raw, value, end)
    }
    const next = skipSpace(raw, end)
    key = raw[next] === COMMA ? skipSpace(raw, next + 1) : next
  }
  return true
}

/** The index in `names` of the key whose quotes are at `start` and `end` (keyIs of each); -1 when it is none of them. */
function nameIndex(raw: Buffer, start: number, end: number, names: readonly string[]): number {
  const length = end - start - 1
  for (let k = start + 1; k < end; k++) if (raw[k] === BACKSLASH) return names.indexOf(JSON.parse(raw.toString('utf8', start, end + 1)) as string)
  for (let n = 0; n < names.length; n++) {
    const name = names[n] as string
    if (name.length !== length) continue
    let same = true
    for (let k = 0; k < length && same; k++) same = raw[start + 1 + k] === name.charCodeAt(k)
    if (same) return n
  }
  return -1
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Elements of a parsed array. */
class ValueElements implements Elements {
  readonly length: number
  readonly spanned = false

  constructor(private readonly values: readonly unknown[]) {
    this.length = values.length
  }

  typeOf(index: number): ElementType {
    const value = this.values[index]
    return value === null ? 'null' : Array.isArray(value) ? 'array' : (typeof value as ElementType)
  }

  value(index: number): unknown {
    return this.values[index]
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

  hasOtherMember(index: number, names: readonly string[]): boolean {
    const value = this.values[index]
    return isObject(value) && Object.keys(value).some((key) => !names.includes(key) && value[key] != null)
  }

  members(index: number, names: readonly string[], _undecoded: number, values: unknown[]): boolean {
    const value = this.values[index]
    if (!isObject(value)) return false
    for (let n = 0; n < names.length; n++) values[n] = value[names[n] as string]
    return true
  }

  undecoded(index: number): unknown {
    return this.values[index]
  }
}

/** The elements of a parsed array (JSON values). */
export function arrayElements(values: readonly unknown[]): Elements {
  return new ValueElements(values)
}

/** The spans of the elements of the array that starts at `start` (pairs of start, end). */
function elementSpans(raw: Buffer, start: number): number[] {
  const spans: number[] = []
  arraySpans(raw, start, spans)
  return spans
}

/** Pushes onto `spans` the spans of the elements of the array that starts at `start`; returns one past its end. */
function arraySpans(raw: Buffer, start: number, spans: number[]): number {
  let i = skipSpace(raw, start + 1)
  while (raw[i] !== CLOSE_ARRAY) {
    const end = valueEnd(raw, i)
    spans.push(i, end)
    i = skipSpace(raw, end)
    if (raw[i] === COMMA) i = skipSpace(raw, i + 1)
  }
  return i + 1
}

/** The spans of the elements of `raw`'s object at `start`'s member `inner` when it is an array; null when it is not, or absent. */
function innerElementSpans(raw: Buffer, start: number, inner: string): number[] | null {
  const value = memberStart(raw, start, inner)
  return value >= 0 && raw[value] === OPEN_ARRAY ? elementSpans(raw, value) : null
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
    if (span.elements !== undefined) {
      if (lazy.readerKey !== key) {
        lazy.reader = new SpanElements(lazy.raw, span.elements, span.typeKeys)
        lazy.readerKey = key
      }
      return lazy.reader
    }
  }
  const outer = body[key]
  const value = inner === undefined ? outer : isObject(outer) ? outer[inner] : undefined
  return Array.isArray(value) ? new ValueElements(value) : null
}
