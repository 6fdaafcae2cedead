import type { MemberEdit, MemberSpan } from '../http/json-members.js'
import type { Json } from '../providers/body.js'

/**
 * What an adapter did to a body's top-level members while it edited them through `view` (a Proxy of the body):
 * the members it wrote, defined or removed, and those it read with an object value (an object or array read may
 * have been edited in place). A member it never touched is the client's bytes still: only touched ones are
 * serialized again (`edits`), or, when every one it touched is new to the body, added after the rest (`additions`).
 * The body itself keeps its shape (no accessor is put on it).
 */
export class EditWatch implements ProxyHandler<Json> {
  readonly view: Json
  private readonly touched = new Set<string>()
  // The touched members the body had when first touched (before the adapter could change it).
  private readonly had = new Set<string>()

  constructor(json: Json) {
    this.view = new Proxy(json, this)
  }

  get(target: Json, key: string | symbol): unknown {
    // Read on the body itself: a lazily parsed member's getter finds its bytes by `this` (./lazy-members.ts).
    const value: unknown = Reflect.get(target, key)
    if (typeof key === 'string' && typeof value === 'object' && value !== null) this.touch(target, key)
    return value
  }

  getOwnPropertyDescriptor(target: Json, key: string | symbol): PropertyDescriptor | undefined {
    if (typeof key === 'string') this.touch(target, key)
    return Reflect.getOwnPropertyDescriptor(target, key)
  }

  set(target: Json, key: string | symbol, value: unknown, receiver: unknown): boolean {
    if (typeof key === 'string') this.touch(target, key)
    // The body, not the view, receives the value (as with no receiver at all).
    return Reflect.set(target, key, value, receiver === this.view ? target : receiver)
  }

  defineProperty(target: Json, key: string | symbol, descriptor: PropertyDescriptor): boolean {
    if (typeof key === 'string') this.touch(target, key)
    return Reflect.defineProperty(target, key, descriptor)
  }

  deleteProperty(target: Json, key: string | symbol): boolean {
    if (typeof key === 'string') this.touch(target, key)
    return Reflect.deleteProperty(target, key)
  }

  private touch(target: Json, key: string): void {
    if (this.touched.has(key)) return
    this.touched.add(key)
    if (Object.hasOwn(target, key)) this.had.add(key)
  }

  /**
   * The members the adapter added to `json` (the watched body), in the order it touched them, when it touched
   * none the body had (OpenAI's include_usage on a stream): they go after the body's own members, which need no
   * walk to find. Null when it touched a member the body had: then `edits`.
   */
  additions(json: Json): MemberEdit[] | null {
    const edits: MemberEdit[] = []
    for (const key of this.touched) {
      if (this.had.has(key)) return null
      const text = Object.hasOwn(json, key) ? (JSON.stringify(json[key]) as string | undefined) : undefined
      if (text !== undefined) edits.push({ key, json: text })
    }
    return edits
  }

  /** The edits of `json` (the watched body) against `members`, its spans as read: touched members, removed or serialized anew. */
  edits(json: Json, members: readonly MemberSpan[]): MemberEdit[] {
    const edits: MemberEdit[] = []
    for (const key of this.touched) {
      const text = Object.hasOwn(json, key) ? (JSON.stringify(json[key]) as string | undefined) : undefined
      // A key the body did not have, touched but absent (read, or added and removed), is no edit.
      if (text === undefined && !members.some((m) => m.key === key)) continue
      edits.push({ key, json: text ?? null })
    }
    return edits
  }
}
