import { LAZY_SPANS, valueOf, type LazySpans } from '../http/json-elements.js'
import type { MemberSpan } from '../http/json-members.js'
import type { Json } from '../providers/body.js'

/**
 * A body object whose top-level members are parsed from their spans of the raw bytes, some at once and the others
 * on first read. An array member not read yet gives its elements one at a time through elementsOf
 * (http/json-elements.ts): the loop fingerprint reads a conversation's opening and newest items, not the ones between.
 */

const QUOTE = 0x22
// A longer string is parsed: JSON.parse's native search for an escape beats a walk in JavaScript.
const SLICED_STRING_BYTES = 64

/** The value of valid JSON in [start, end), as JSON.parse gives it (json-elements' valueOf: no parse for a literal, a number or a short plain string). */
const parseSpan = (raw: Buffer, start: number, end: number): unknown =>
  raw[start] === QUOTE && end - start > SLICED_STRING_BYTES ? JSON.parse(raw.toString('utf8', start, end)) : valueOf(raw, start, end)

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
class LazyState implements LazySpans {
  readonly spans: LazySpans['spans'] = new Map()
  readonly values = new Map<string, unknown>()
  reader: LazySpans['reader'] = null
  readerKey: string | null = null

  // A class, not an object literal: a state lives as long as its request, and V8 may tenure a literal's allocation
  // site whose objects it saw survive, after which every state would start in the old generation holding `raw`.
  constructor(
    readonly raw: Buffer,
    readonly materialized: Set<string>,
  ) {}
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
      state = new LazyState(raw, materialized)
      Object.defineProperty(json, LAZY_SPANS, { value: state })
    }
    state.spans.set(member.key, member)
    Object.defineProperty(json, member.key, accessorsOf(member.key))
  }
}
