import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { elementsOf, JsonSpan, JsonText, type Elements } from '../../src/http/json-elements.js'
import { isObject } from '../../src/providers/body.js'
import { LAZY_MIN_BYTES, readLazyBody, readParsedBody } from '../../src/proxy/request-body.js'

// Issue 12: the hosted-tools check reads each tool's few members from the bytes of a lazily read body, never parsing
// the tools. Whatever the spelling (escaped keys, spaces, nesting, values of any type), every read is JSON.parse's.

const PAD = 'x'.repeat(LAZY_MIN_BYTES)
/** Names the readers are asked for, and names near them. */
const NAMES = ['type', 'max_uses', 'googleSearch', 'google_maps', 'systemTool', 'tools']
const NEAR_NAMES = [...NAMES, '__proto__', 'function', 'Type', 'typ', 'types', 'name', '', 'functionDeclarations']
/** The members of a Gemini tool that declare functions (`hasOtherMember`). */
const DECLARED = ['functionDeclarations', 'type']

/** A body of `members` (JSON texts by key, in order), padded so that it is read lazily, as readLazyBody reads it. */
function lazyBody(members: string): Record<string, unknown> {
  const raw = Buffer.from(`{"pad":"${PAD}",${members}}`)
  const read = readLazyBody(raw, null)
  if (read instanceof Promise) throw new Error('a body read in one slice')
  return read.json
}

/** What a parsed array's element holds: `isObject(element) ? element[name] : undefined`. */
function expectSame(lazy: Elements | null, parsed: unknown): void {
  if (!Array.isArray(parsed)) {
    expect(lazy).toBeNull()
    return
  }
  expect(lazy?.length).toBe(parsed.length)
  for (let i = 0; i < parsed.length; i++) {
    const element: unknown = parsed[i]
    for (const name of NAMES) expect(lazy?.member(i, name)).toEqual(isObject(element) ? element[name] : undefined)
    const present = isObject(element) ? (NAMES.find((name) => element[name] != null) ?? null) : null
    expect(lazy?.firstPresent(i, NAMES)).toBe(present)
    const other = isObject(element) && Object.keys(element).some((key) => !DECLARED.includes(key) && element[key] != null)
    expect(lazy?.hasOtherMember(i, DECLARED)).toBe(other)
    expect(lazy?.typeOf(i)).toBe(element === null ? 'null' : Array.isArray(element) ? 'array' : typeof element)
    // The element undecoded: a JsonText or a JsonSpan (read from the bytes) spells it, anything else is it.
    expect(spelled(lazy?.undecoded(i))).toEqual(element)
    // All names in one read; those of UNDECODED's bits may come as a JsonText or a JsonSpan, which decodes to the value.
    const values = NAMES.map(() => 'unset' as unknown)
    expect(lazy?.members(i, NAMES, UNDECODED, values)).toBe(isObject(element))
    if (!isObject(element)) {
      expect(values.every((value) => value === 'unset')).toBe(true)
      continue
    }
    for (let n = 0; n < NAMES.length; n++) {
      const value = values[n]
      if (value instanceof JsonText) {
        expect((UNDECODED >> n) & 1).toBe(1)
        expect(value.decode()).toBe(element[NAMES[n] as string])
      } else if (value instanceof JsonSpan) {
        expect((UNDECODED >> n) & 1).toBe(1)
        expect(value.decode()).toEqual(element[NAMES[n] as string])
      } else {
        expect(value).toEqual(element[NAMES[n] as string])
      }
    }
  }
}

// JSON.parse as it was before any test spied on it: `spelled` parses without counting as the readers' parse.
const parse = JSON.parse.bind(JSON)

/** What an undecoded value (a JsonText or a JsonSpan) spells; anything else as it is. */
function spelled(value: unknown): unknown {
  if (value instanceof JsonText) return parse(value.raw.toString('utf8', value.start, value.end + 1))
  if (value instanceof JsonSpan) return parse(value.raw.toString('utf8', value.start, value.end))
  return value
}

/** The names whose values `members` is asked to leave undecoded: bits 0 and 2 (`type` and `googleSearch`). */
const UNDECODED = 0b101

/** Runs `read` with JSON.parse spied on: the long tool (so the tools) was never parsed. */
function expectUnparsed(read: () => void): void {
  const spy = vi.spyOn(JSON, 'parse')
  try {
    read()
    expect(spy.mock.calls.filter(([text]) => String(text).includes(LONG_DESCRIPTION))).toEqual([])
  } finally {
    spy.mockRestore()
  }
}

/** JSON text of `value` spelled as `random` chooses: spaces between tokens, key characters as \u escapes. */
function spell(value: unknown, random: () => number): string {
  const space = () => [' ', '', '\n', '\t ', ''][Math.floor(random() * 5)] as string
  const key = (name: string) => `"${[...name].map((c) => (random() < 0.25 ? [...c].map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, '0')}`).join('') : JSON.stringify(c).slice(1, -1))).join('')}"`
  if (Array.isArray(value)) return `[${space()}${value.map((v) => spell(v, random)).join(`${space()},${space()}`)}${space()}]`
  if (value instanceof Map) return `{${space()}${[...value].map(([k, v]) => `${key(k as string)}${space()}:${space()}${spell(v, random)}`).join(`${space()},${space()}`)}${space()}}`
  return JSON.stringify(value)
}

/** A member longer than the longest parsed at once (LAZY_EAGER_MEMBER_BYTES): the tools stay unread behind their accessor. */
const LONG_DESCRIPTION = 'y'.repeat(300)
const LONG_TOOL = new Map([['description', LONG_DESCRIPTION]])

/** Objects as Maps (so `__proto__` is a key like any other), of NEAR_NAMES, nested; and any JSON value. */
const leaf = fc.oneof(fc.constantFrom('function', 'web_search_20250305', 'mcp', 'code_execution_1', '', 'a"b\\c', 'ünï 🦊', null, 0, -0, 1e21, true, false), fc.jsonValue({ maxDepth: 2 }))
const { object } = fc.letrec((tie) => ({
  object: fc.uniqueArray(fc.tuple(fc.constantFrom(...NEAR_NAMES), fc.oneof({ weight: 3, arbitrary: leaf }, tie('object'), fc.array(tie('object'), { maxLength: 2 }))), { selector: ([k]) => k, maxLength: 5 }).map((entries) => new Map(entries)),
}))
const tool = fc.oneof({ weight: 4, arbitrary: object }, leaf, fc.array(object, { maxLength: 2 }))
const seed = fc.integer()

function generator(start: number): () => number {
  let s = start >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = Math.imul(s ^ (s >>> 15), s | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('elementsOf', () => {
  it('reads what JSON.parse reads from any array of tools, however spelled', () => {
    fc.assert(
      fc.property(fc.array(tool, { maxLength: 8 }), seed, (tools, s) => {
        const text = spell([...tools, LONG_TOOL], generator(s))
        const json = lazyBody(`"tools":${text}`)
        expect(Object.getOwnPropertyDescriptor(json, 'tools')?.get).toBeTypeOf('function')
        const parsed = JSON.parse(text) as unknown
        expectUnparsed(() => {
          expectSame(elementsOf(json, 'tools'), parsed)
          // A second reader of the same body (the input bound after the check) is given the first's reads.
          expect(elementsOf(json, 'tools')).toBe(elementsOf(json, 'tools'))
          expectSame(elementsOf(json, 'tools'), parsed)
        })
        // Whole elements, as JSON.parse gives them, each parsed once (the fingerprint's items: test/unit/loop-fingerprint-reference.test.ts).
        const elements = elementsOf(json, 'tools') as Elements
        const spy = vi.spyOn(JSON, 'parse')
        try {
          for (let i = 0; i < elements.length; i++) expect(elements.value(i)).toEqual((parsed as unknown[])[i])
          const parses = spy.mock.calls.length
          for (let i = 0; i < elements.length; i++) expect(elements.value(i)).toBe(elements.value(i))
          expect(spy.mock.calls.length).toBe(parses)
        } finally {
          spy.mockRestore()
        }
      }),
      { numRuns: 400 },
    )
  })

  it('reads each member of a long array as JSON.parse does, in any order, again and again (reads kept for its first elements only)', () => {
    // A conversation's roles read from its far end, then tools' types read by each check: every read, first or
    // repeated, is of its own element, past the elements whose reads are kept as well as among them.
    const items = Array.from({ length: 300 }, (_, i) => (i % 7 === 0 ? { role: `r${i}`, type: i } : i % 5 === 0 ? { type: `t${i}` } : { role: `r${i}` }))
    const text = JSON.stringify(items)
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(299), fc.constantFrom('role', 'type')), { minLength: 1, maxLength: 200 }), (reads) => {
        // A body read afresh each run: its reads start unkept.
        const elements = elementsOf(lazyBody(`"messages":${text}`), 'messages') as Elements
        expect(elements.spanned).toBe(true)
        for (const [index, name] of [...reads, ...reads]) expect(elements.member(index, name)).toEqual((items[index] as Record<string, unknown>)[name])
      }),
      { numRuns: 200 },
    )
  })

  it('reads what JSON.parse reads from an array inside an object member (Bedrock `toolConfig.tools`)', () => {
    const config = fc.oneof({ weight: 4, arbitrary: fc.tuple(object, fc.array(tool, { maxLength: 5 })).map(([map, tools]) => new Map([...map, ['tools', [...tools, LONG_TOOL]]])) }, object, leaf)
    fc.assert(
      fc.property(config, seed, (value, s) => {
        const text = spell(value, generator(s))
        const parsed = JSON.parse(text) as unknown
        const json = lazyBody(`"toolConfig":${text}`)
        expectUnparsed(() => expectSame(elementsOf(json, 'toolConfig', 'tools'), isObject(parsed) ? parsed.tools : undefined))
      }),
      { numRuns: 400 },
    )
  })

  it.each([
    ['an escaped key', '[{"t\\u0079pe":"web_search"},{"\\u0074ype":1,"max_uses":2}]'],
    ['a type that is not a string', '[{"type":1},{"type":{"type":"web_search"}},{"type":null},{"type":["mcp"]},{"type":"web\\u005fsearch"}]'],
    ['tools that are not objects', '["web_search",1,null,true,[{"type":"web_search"}],[]]'],
    ['a type at depth 2 only', '[{"function":{"type":"web_search","name":"x"},"parameters":{"properties":{"type":{"type":"string"}}}}]'],
    ['a __proto__ member', '[{"__proto__":{"type":"web_search","googleSearch":{}}},{"__proto__":null,"type":"mcp"}]'],
    ['members after a nested value', '[{"function":{"a":[1,{"b":"]}"}],"c":"\\"}"},"x":-1.5e3,"y":true,"type":"mcp","googleSearch":null,"google_maps":{}}]'],
    ['spaces everywhere', ' [ { "a" : [ ] , "type" : "mcp" } , { } ] '],
  ])('%s: the same reads as JSON.parse, the tools unparsed', (_name, tools) => {
    const text = tools.replace(/\]\s*$/, `,${spell(LONG_TOOL, generator(1))}]`)
    const json = lazyBody(`"tools":${text}`)
    expect(Object.getOwnPropertyDescriptor(json, 'tools')?.get).toBeTypeOf('function')
    const parsed = JSON.parse(text) as unknown
    const spy = vi.spyOn(JSON, 'parse')
    try {
      expectSame(elementsOf(json, 'tools'), parsed)
      // No parse of a tool: only of a key with escapes, or of a value that is not a plain string.
      expect(spy.mock.calls.every(([part]) => String(part).length < tools.length / 2)).toBe(true)
    } finally {
      spy.mockRestore()
    }
  })

  it('leaves the strings asked for undecoded when it reads from the bytes, and only those', () => {
    const text = '[{"type":"a\\n\\u00e9b","googleSearch":"plain","systemTool":"decoded","max_uses":"x"},{"type":7,"googleSearch":null},'
    const elements = elementsOf(lazyBody(`"tools":${text}${spell(LONG_TOOL, generator(1))}]`), 'tools') as Elements
    const values: unknown[] = []
    expect(elements.members(0, ['type', 'googleSearch', 'systemTool', 'max_uses'], 0b0011, values)).toBe(true)
    const [type, search, tool, uses] = values
    expect(type).toBeInstanceOf(JsonText)
    expect((type as JsonText).decode()).toBe('a\néb')
    expect(search).toBeInstanceOf(JsonText)
    expect((search as JsonText).decode()).toBe('plain')
    expect([tool, uses]).toEqual(['decoded', 'x'])
    expect(elements.members(1, ['type', 'googleSearch', 'systemTool'], 0b0011, values)).toBe(true)
    expect(values.slice(0, 3)).toEqual([7, null, undefined])
  })

  it('reads the value of a member read or written since, and of a body read whole', async () => {
    const text = '[{"type":"mcp"},{"type":"function"}]'
    const read = lazyBody(`"tools":${text}`)
    ;(read.tools as Array<Record<string, unknown>>)[0]!.type = 'web_search'
    expect(elementsOf(read, 'tools')?.member(0, 'type')).toBe('web_search')
    const written = lazyBody(`"tools":${text}`)
    written.tools = [{ type: 'file_search' }]
    expect(elementsOf(written, 'tools')?.member(0, 'type')).toBe('file_search')
    const small = (await readParsedBody(Buffer.from(`{"tools":${text}}`), null)).json
    expect(Object.getOwnPropertyDescriptor(small, 'tools')?.get).toBeUndefined()
    expectSame(elementsOf(small, 'tools'), JSON.parse(text))
    expect(elementsOf(lazyBody('"tools":{"type":"mcp"}'), 'tools')).toBeNull()
    expect(elementsOf(lazyBody('"model":"m"'), 'tools')).toBeNull()
  })
})
