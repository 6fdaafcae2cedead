import type { MemberSpan } from '../http/json-members.js'
import type { ScannedMember } from '../http/json-scan.js'
import type { Json } from '../providers/body.js'

/**
 * A body object whose top-level members are parsed from their spans of the raw bytes, some at once and the others
 * on first read, and a view of it in which an array member not read yet gives its elements one at a time: the
 * loop fingerprint reads a conversation's opening and newest items, not the ones between.
 */

const parseSpan = (raw: Buffer, start: number, end: number): unknown => JSON.parse(raw.toString('utf8', start, end))

/**
 * Defines each of `members` (spans of `raw`, valid JSON) on `json`, in order: one that `eager` accepts as a data
 * property parsed now, any other as an accessor that parses it on first read (adding its key to `materialized`)
 * and that a write replaces with a data property.
 */
export function defineMembers(json: Json, raw: Buffer, members: readonly MemberSpan[], eager: (member: MemberSpan) => boolean, materialized: Set<string>): void {
  for (const member of members) {
    if (eager(member)) {
      Object.defineProperty(json, member.key, { value: parseSpan(raw, member.valueStart, member.valueEnd), writable: true, enumerable: true, configurable: true })
      continue
    }
    let value: unknown
    Object.defineProperty(json, member.key, {
      enumerable: true,
      configurable: true,
      get() {
        if (!materialized.has(member.key)) value = parseSpan(raw, member.valueStart, member.valueEnd)
        materialized.add(member.key)
        return value
      },
      set(next: unknown) {
        Object.defineProperty(json, member.key, { value: next, writable: true, enumerable: true, configurable: true })
      },
    })
  }
}

/**
 * `json` (made by defineMembers) as a reader of its conversation sees it: a member whose value is an array and which
 * was neither read nor written since is an array whose elements are parsed when read; every other member is `json`'s.
 * For reading only.
 */
export function conversationView(json: Json, raw: Buffer, members: readonly ScannedMember[], materialized: ReadonlySet<string>): Json {
  const view = Object.create(json) as Json
  for (const member of members) {
    if (member.elements === null || materialized.has(member.key)) continue
    if (Object.getOwnPropertyDescriptor(json, member.key)?.get === undefined) continue
    const target: unknown[] = new Array(member.elements.length / 2)
    // Defined, not assigned: an assignment would reach `json`'s setter through the prototype.
    Object.defineProperty(view, member.key, { value: new Proxy(target, new LazyElements(raw, member.elements)), enumerable: true })
  }
  return view
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
