import { LAZY_SPANS, type LazySpans } from '../http/json-elements.js'
import type { MemberSpan } from '../http/json-members.js'
import type { ScannedMember } from '../http/json-scan.js'
import type { Json } from '../providers/body.js'

/**
 * A body object whose top-level members are parsed from their spans of the raw bytes, some at once and the others
 * on first read, and a view of it in which an array member not read yet gives its elements one at a time: the
 * loop fingerprint reads a conversation's opening and newest items, not the ones between.
 */

const parseSpan = (raw: Buffer, start: number, end: number): unknown => JSON.parse(raw.toString('utf8', start, end))

/** Sets own data member `key` of `json`, as JSON.parse makes it: an assignment to `__proto__` would set the prototype. */
function setMember(json: Json, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(json, key, { value, writable: true, enumerable: true, configurable: true })
  else json[key] = value
}

/**
 * What a body made by defineMembers needs to parse its lazy members: the bytes, their spans, what was parsed. Kept
 * under LAZY_SPANS, a non-enumerable symbol-keyed member, which JSON.stringify, spreads, Object.keys and structured
 * clones all leave out (so the providers' element readers find the spans: http/json-elements.ts). Not a WeakMap: a
 * weak table keyed by short-lived bodies lives in the old generation and costs a full collection every few thousand requests.
 */
interface LazyState extends LazySpans {
  values: Map<string, unknown>
  materialized: Set<string>
}

/**
 * One accessor pair per member name, shared by every body that has that member lazily: bodies of one shape then
 * share their hidden classes (a pair made per body would give each body a map of its own, allocated in the old
 * generation, and make every read of a body megamorphic). Client-chosen names beyond SHARED_ACCESSORS get pairs of their own.
 */
const accessors = new Map<string, PropertyDescriptor>()
const SHARED_ACCESSORS = 256

function accessorsOf(key: string): PropertyDescriptor {
  const shared = accessors.get(key)
  if (shared !== undefined) return shared
  const pair: PropertyDescriptor = {
    enumerable: true,
    configurable: true,
    get(this: object) {
      const state = (this as { [LAZY_SPANS]: LazyState })[LAZY_SPANS]
      if (!state.materialized.has(key)) {
        const span = state.spans.get(key) as MemberSpan
        state.values.set(key, parseSpan(state.raw, span.valueStart, span.valueEnd))
        state.materialized.add(key)
      }
      return state.values.get(key)
    },
    set(this: object, next: unknown) {
      Object.defineProperty(this, key, { value: next, writable: true, enumerable: true, configurable: true })
    },
  }
  if (accessors.size < SHARED_ACCESSORS) accessors.set(key, pair)
  return pair
}

/**
 * The large members of the providers' requests have shared accessors from the start: bodies carrying
 * SHARED_ACCESSORS made-up names first (or a long-running mix of clients) cannot leave them a pair per body.
 */
for (const key of [
  'messages', 'tools', 'input', 'contents', 'system', 'systemInstruction', 'instructions', 'prompt', 'functions',
  'tool_choice', 'response_format', 'text', 'metadata', 'toolConfig', 'generationConfig', 'safetySettings', 'cachedContent',
  'inferenceConfig', 'additionalModelRequestFields', 'prediction', 'documents', 'mcp_servers', 'thinking',
]) accessorsOf(key)

/**
 * Defines each of `members` (spans of `raw`, valid JSON) on `json` (a new empty object), in order: one that `eager`
 * accepts as a data property parsed now, any other as an accessor that parses it on first read (adding its key to
 * `materialized`) and that a write replaces with a data property. Its getter reads `this`: read it on `json` itself.
 */
export function defineMembers(json: Json, raw: Buffer, members: readonly MemberSpan[], eager: (member: MemberSpan) => boolean, materialized: Set<string>): void {
  let state: LazyState | null = null
  for (const member of members) {
    if (eager(member)) {
      setMember(json, member.key, parseSpan(raw, member.valueStart, member.valueEnd))
      continue
    }
    if (state === null) {
      state = { raw, spans: new Map(), values: new Map(), materialized, reader: null, readerKey: null }
      Object.defineProperty(json, LAZY_SPANS, { value: state })
    }
    state.spans.set(member.key, member)
    Object.defineProperty(json, member.key, accessorsOf(member.key))
  }
}

/**
 * `json` (made by defineMembers) as a reader of its conversation sees it: a member whose value is an array and which
 * was neither read nor written since reads as an array whose elements are parsed when read; every other member reads
 * as `json`'s own (parsed only if the reader reads it). For reading only.
 */
export function conversationView(json: Json, raw: Buffer, members: readonly ScannedMember[], materialized: ReadonlySet<string>): Json {
  return new Proxy(json, new ConversationView(raw, members, materialized))
}

/** conversationView's reads: a lazy array member made once, on its first read. */
class ConversationView implements ProxyHandler<Json> {
  private readonly arrays = new Map<string, unknown[]>()

  constructor(
    private readonly raw: Buffer,
    private readonly members: readonly ScannedMember[],
    private readonly materialized: ReadonlySet<string>,
  ) {}

  get(target: Json, key: string | symbol): unknown {
    if (typeof key !== 'string' || this.materialized.has(key)) return Reflect.get(target, key)
    const made = this.arrays.get(key)
    if (made !== undefined) return made
    const elements = this.members.find((m) => m.key === key)?.elements ?? null
    // Unread and never written (a write replaces the member's accessor with a value).
    if (elements === null || Object.getOwnPropertyDescriptor(target, key)?.get === undefined) return Reflect.get(target, key)
    const lazy = new Proxy(new Array<unknown>(elements.length / 2), new LazyElements(this.raw, elements))
    this.arrays.set(key, lazy)
    return lazy
  }
}

/** The index `key` names in an array of `length` elements, or -1. */
function arrayIndex(key: string | symbol, length: number): number {
  if (typeof key !== 'string' || key.length === 0 || key.length > 10) return -1
  const first = key.charCodeAt(0)
  if (first < 0x30 || first > 0x39 || (first === 0x30 && key.length > 1)) return -1
  const index = Number(key)
  return Number.isInteger(index) && index < length ? index : -1
}

/** The elements of an array member as spans of `raw` (pairs of start, end), each parsed into the target on first read. */
class LazyElements implements ProxyHandler<unknown[]> {
  constructor(
    private readonly raw: Buffer,
    private readonly spans: readonly number[],
  ) {}

  private element(target: unknown[], index: number): unknown {
    if (!(index in target)) target[index] = parseSpan(this.raw, this.spans[2 * index] as number, this.spans[2 * index + 1] as number)
    return target[index]
  }

  get(target: unknown[], key: string | symbol, receiver: unknown): unknown {
    const index = arrayIndex(key, target.length)
    return index >= 0 ? this.element(target, index) : Reflect.get(target, key, receiver)
  }

  has(target: unknown[], key: string | symbol): boolean {
    return arrayIndex(key, target.length) >= 0 || Reflect.has(target, key)
  }

  getOwnPropertyDescriptor(target: unknown[], key: string | symbol): PropertyDescriptor | undefined {
    const index = arrayIndex(key, target.length)
    if (index >= 0) this.element(target, index)
    return Reflect.getOwnPropertyDescriptor(target, key)
  }

  ownKeys(target: unknown[]): Array<string | symbol> {
    const keys: Array<string | symbol> = []
    for (let i = 0; i < target.length; i++) keys.push(String(i))
    for (const key of Reflect.ownKeys(target)) if (arrayIndex(key, target.length) < 0) keys.push(key)
    return keys
  }
}
