import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createWordSet, findDuplicateKey, scanKeys } from '../../src/http/json-keys.js'
import { topLevelMembers } from '../../src/http/json-members.js'
import { ESCAPED_KEY, NO_KEY, scanJson, type JsonScan } from '../../src/http/json-scan.js'
import { SCAN_WORDS } from '../../src/tokens/bound.js'
import { agentBody } from '../../bench/agent-body.mjs'
import { MAX_HELD_BYTES } from '../../src/http/json-simd.js'

// Issue 12: the validating scan replaces JSON.parse as the judge of a mid-size body, so its verdict must be
// JSON.parse's on every input (differential, over generated and mutated JSON), and its report and spans the key
// scan's and topLevelMembers' on every valid one.

const WORDS = createWordSet(SCAN_WORDS)

/** What JSON.parse makes of `raw` as the proxy reads it. */
function parseVerdict(raw: Buffer): 'ok' | 'not_json' | 'not_object' {
  let value: unknown
  try {
    value = JSON.parse(raw.toString('utf8'))
  } catch {
    return 'not_json'
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? 'ok' : 'not_object'
}

const verdictOf = (scan: JsonScan) => (scan.ok ? 'ok' : scan.problem)

/** `bytes` copied `offset` bytes into a fresh buffer: the scan reads four bytes at a time, which must not depend on where they lie. */
function at(bytes: Buffer, offset: number): Buffer {
  const backing = Buffer.alloc(bytes.length + 8)
  bytes.copy(backing, offset)
  return backing.subarray(offset, offset + bytes.length)
}

// Whitespace JSON.parse skips, long enough that the scan walks the body's strings in wasm (json-simd.ts).
const HELD_PAD = Buffer.from(' '.repeat(1024))

/**
 * Checks the scan of `bytes` against JSON.parse, the key scan and topLevelMembers: as it is (walked in JS when short)
 * at each word offset, and after HELD_PAD (walked in wasm, from a copy: at one).
 */
function check(bytes: Buffer): void {
  checkInJs(bytes)
  checkHeld(bytes)
}

const checkInJs = (bytes: Buffer): void => checkAt(bytes, 4)
const checkHeld = (bytes: Buffer): void => checkAt(Buffer.concat([HELD_PAD, bytes]), 1)
// The property tests, once a path. Each takes ~10-20 s alone; under a loaded full suite, 40-60 s were seen.
const PROPERTY_MS = 120_000
const PATHS = [
  ['as it is', checkInJs],
  ['after a pad, held in wasm', checkHeld],
] as const

function checkAt(bytes: Buffer, offsets: number): void {
  const expected = parseVerdict(bytes)
  for (let offset = 0; offset < offsets; offset++) {
    const raw = at(bytes, offset)
    const scan = scanJson(raw, WORDS) as JsonScan
    expect(verdictOf(scan), `${JSON.stringify(bytes.toString('latin1'))} at ${offset}`).toBe(expected)
    if (!scan.ok || offset > 0) continue
    expect(scan.keys.duplicate).toBe(findDuplicateKey(raw))
    if (scan.keys.duplicate === null) expect(scan.keys.wordSeen).toBe((scanKeys(raw, WORDS) as { wordSeen: boolean }).wordSeen)
    expect(scan.members.map(({ key, keyStart, valueStart, valueEnd }) => ({ key, keyStart, valueStart, valueEnd }))).toEqual(topLevelMembers(raw))
    if (scan.keys.duplicate !== null) continue
    expectMemberSpans(raw, scan.members, JSON.parse(raw.toString('utf8')) as Record<string, unknown>)
  }
}

/** Each member's element spans (an array's) and typeKeys against `parsed`, JSON.parse's reading of `raw`. */
function expectMemberSpans(raw: Buffer, members: (JsonScan & { ok: true })['members'], parsed: Record<string, unknown>): void {
  for (const member of members) {
    const value = parsed[member.key]
    if (!Array.isArray(value)) {
      expect(member.elements).toBeNull()
      continue
    }
    const elements = member.elements as number[]
    expect(elements.length).toBe(2 * value.length)
    value.forEach((element, e) => expect(JSON.parse(raw.toString('utf8', elements[2 * e], elements[2 * e + 1]))).toEqual(element))
    expectTypeKeys(raw, elements, member.typeKeys, value)
  }
}

/**
 * A scan's typeKeys of an array member against its parsed `value`: NO_KEY for an element without an own `type` (or
 * no object), the quote of a `"type"` key in the element for one with it, ESCAPED_KEY only for one with an escape.
 */
function expectTypeKeys(raw: Buffer, elements: readonly number[], typeKeys: readonly number[] | null, value: readonly unknown[]): void {
  if (typeKeys !== null) expect(typeKeys.length).toBe(value.length)
  value.forEach((element, e) => {
    const key = typeKeys === null ? NO_KEY : typeKeys[e]
    const hasType = typeof element === 'object' && element !== null && !Array.isArray(element) && Object.hasOwn(element, 'type')
    const [start, end] = [elements[2 * e] as number, elements[2 * e + 1] as number]
    if (key === ESCAPED_KEY) {
      expect(raw.toString('latin1', start, end)).toContain('\\')
    } else if (key === NO_KEY) {
      expect(hasType).toBe(false)
    } else {
      expect(hasType).toBe(true)
      expect(key).toBeGreaterThan(start)
      expect(key).toBeLessThan(end)
      expect(raw.toString('latin1', key as number, (key as number) + 6)).toBe('"type"')
    }
  })
}

/** The scan of `raw` (valid JSON, no repeated key; sliced or not): each array member's element spans and typeKeys against JSON.parse. */
async function expectSpans(raw: Buffer): Promise<void> {
  expectSpansOf(raw, await scanJson(raw, WORDS))
}

function expectSpansOf(raw: Buffer, scan: JsonScan): void {
  expect(scan.ok).toBe(true)
  const parsed = JSON.parse(raw.toString('utf8')) as Record<string, unknown>
  expect(scan.ok && scan.members.map((m) => m.key)).toEqual(Object.keys(parsed))
  expectMemberSpans(raw, scan.ok ? scan.members : [], parsed)
}

// Bytes that matter to the grammar: structure, whitespace (JSON's and not), escapes, number and literal letters,
// control bytes, DEL, UTF-8 lead and continuation bytes, a BOM's.
const INTERESTING = Buffer.from([
  ...Buffer.from('{}[],:" \t\n\r\\/bfnrtu0123456789-+.eEaflsx'),
  0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1f, 0x7f, 0x80, 0xa0, 0xbf, 0xc0, 0xc2, 0xe2, 0xed, 0xef, 0xbb, 0xf0, 0xf4, 0xf5, 0xff,
])
const anyByte = fc.oneof(fc.constantFrom(...INTERESTING), fc.integer({ min: 0, max: 255 }))

// Pieces of string content: plain text, every escape JSON has, escapes it does not have, raw control bytes, UTF-8 (valid or not).
const stringPiece = fc.oneof(
  fc.string({ maxLength: 12 }).map((s) => Buffer.from(s.replace(/["\\]/g, ''))),
  fc.constantFrom(...['\\"', '\\\\', '\\/', '\\b', '\\f', '\\n', '\\r', '\\t', '\\u0000', '\\uD83D\\uDE00', '\\uDEAD', '\\uabCD'].map((e) => Buffer.from(e))),
  fc.constantFrom(...['\\x', '\\u12', '\\u12G4', '\\U0041', '\\', '\\\'', '\\0', '\\a', '\\v'].map((e) => Buffer.from(e))),
  fc.stringMatching(/^[0-9a-fA-FgG]{3,5}$/).map((h) => Buffer.from(`\\u${h}`)),
  fc.uint8Array({ minLength: 1, maxLength: 3 }).map((b) => Buffer.from(b)),
  fc.constantFrom(...['é', '€', '😀', '\u2028'].map((c) => Buffer.from(c))),
  fc.integer({ min: 40, max: 300 }).map((n) => Buffer.from('x'.repeat(n))),
)
const stringBytes = fc.array(stringPiece, { maxLength: 8 }).map((pieces) => Buffer.concat([Buffer.from('"'), ...pieces, Buffer.from('"')]))

// Number-like and literal-like tokens, valid or not.
const numberish = fc.stringMatching(/^[-+]?[0-9.eE+-]{0,6}$/)
const literalish = fc.constantFrom('true', 'false', 'null', 'tru', 'nul', 'fals', 'truee', 'True', 'NaN', 'Infinity', '-Infinity', 'undefined')

// Valid JSON of every kind, compact or indented, some as an object's members.
const validJson = fc.oneof(
  fc.json(),
  fc.jsonValue().map((v) => JSON.stringify(v, null, 2)),
  fc.dictionary(fc.string(), fc.jsonValue()).map((v) => JSON.stringify(v)),
  fc.dictionary(fc.string(), fc.jsonValue(), { minKeys: 1 }).map((v) => JSON.stringify(v, null, '\t')),
  fc.record({ model: fc.string(), messages: fc.array(fc.record({ role: fc.constantFrom('user', 'assistant'), content: fc.string({ unit: 'binary' }) })) }).map((v) => JSON.stringify(v)),
)

// Bodies built from pieces that may or may not be JSON: strings as keys and values, numbers and literals, structure.
const assembled = fc
  .tuple(stringBytes, fc.oneof(stringBytes, numberish.map((s) => Buffer.from(s)), literalish.map((s) => Buffer.from(s))), fc.constantFrom('{K:V}', '{K:V,K:V}', '{"a":[V,V]}', '[V]', 'V', '{K:{K:V}}', ' {K : V} ', '{K:V}\n'))
  .map(([key, value, shape]) => {
    const parts = [...shape].map((c) => (c === 'K' ? key : c === 'V' ? value : Buffer.from(c)))
    return Buffer.concat(parts)
  })

type Mutation = { kind: 'insert' | 'replace'; at: number; byte: number } | { kind: 'remove' | 'truncate'; at: number }
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constantFrom('insert' as const, 'replace' as const), at: fc.nat(), byte: anyByte }),
  fc.record({ kind: fc.constantFrom('remove' as const, 'truncate' as const), at: fc.nat() }),
)

function mutate(bytes: Buffer, mutations: readonly Mutation[]): Buffer {
  let out = bytes
  for (const m of mutations) {
    const i = out.length === 0 ? 0 : m.at % (out.length + (m.kind === 'insert' ? 1 : 0))
    if (m.kind === 'insert') out = Buffer.concat([out.subarray(0, i), Buffer.from([m.byte]), out.subarray(i)])
    else if (m.kind === 'replace' && out.length > 0) out = Buffer.concat([out.subarray(0, i), Buffer.from([m.byte]), out.subarray(i + 1)])
    else if (m.kind === 'remove') out = Buffer.concat([out.subarray(0, i), out.subarray(i + 1)])
    else out = out.subarray(0, i)
  }
  return out
}

const anyBody = fc.oneof(validJson.map((s) => Buffer.from(s)), assembled)

describe('validating JSON scan', () => {
  it.each(PATHS)('gives JSON.parse\'s verdict on generated JSON, and the key scan\'s report and the member spans on it (%s)', (_, checkOn) => {
    fc.assert(fc.property(validJson, (text) => checkOn(Buffer.from(text))), { numRuns: 10_000, seed: 12 })
  }, PROPERTY_MS)

  it.each(PATHS)('gives JSON.parse\'s verdict on bodies assembled from valid and invalid strings, numbers and literals (%s)', (_, checkOn) => {
    fc.assert(fc.property(assembled, checkOn), { numRuns: 30_000, seed: 12 })
  }, PROPERTY_MS)

  it.each(PATHS)('gives JSON.parse\'s verdict on JSON with bytes inserted, replaced, removed or cut off (%s)', (_, checkOn) => {
    fc.assert(fc.property(anyBody, fc.array(mutation, { minLength: 1, maxLength: 3 }), (bytes, mutations) => checkOn(mutate(bytes, mutations))), { numRuns: 40_000, seed: 12 })
  }, PROPERTY_MS)

  it('gives the same answer however its scan is sliced', async () => {
    await fc.assert(
      fc.asyncProperty(anyBody, fc.array(mutation, { maxLength: 2 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 5 }), async (bytes, mutations, sliceBytes, sliceSteps) => {
        const raw = mutate(bytes, mutations)
        expect(await scanJson(raw, WORDS, sliceBytes, sliceSteps)).toEqual(scanJson(raw, WORDS))
      }),
      { numRuns: 3_000, seed: 12 },
    )
  })

  it.each([
    ['{}', 'ok'],
    ['', 'not_json'],
    [' \t\r\n{ "a" : [ 1 , -0.5e+3 , true , false , null , "x" ] } \n', 'ok'],
    ['\ufeff{}', 'not_json'],
    ['{}\u00a0', 'not_json'],
    ['{}\f', 'not_json'],
    ['[1]', 'not_object'],
    ['"{}"', 'not_object'],
    ['null', 'not_object'],
    ['{"a":1}{', 'not_json'],
    ['{"a":01}', 'not_json'],
    ['{"a":1.}', 'not_json'],
    ['{"a":.5}', 'not_json'],
    ['{"a":+1}', 'not_json'],
    ['{"a":1e}', 'not_json'],
    ['{"a":-}', 'not_json'],
    ['{"a":"\\x"}', 'not_json'],
    ['{"a":"\\u00e"}', 'not_json'],
    ['{"a":"\t"}', 'not_json'],
    ['{"a":"\u007f\u0080"}', 'ok'],
    ['{"a":[1,]}', 'not_json'],
    ['{"a":1,}', 'not_json'],
    ['{,}', 'not_json'],
    ['{"a" 1}', 'not_json'],
    ['{"a":1 "b":2}', 'not_json'],
    ['{"a":[}', 'not_json'],
    ['{"a":{]}', 'not_json'],
    ['{"a":1]', 'not_json'],
    ['{"a":1,"a":[1,{"b":2,"b":3', 'not_json'],
    // A colon or comma right after a string is read with it: only where the grammar has one.
    ['"a",1', 'not_json'],
    ['"a","b"', 'not_json'],
    ['"a":1', 'not_json'],
    ['["a",]', 'not_json'],
    ['["a":1]', 'not_json'],
    ['{"a","b"}', 'not_json'],
    ['{"a":"b":"c"}', 'not_json'],
    ['{"a":"b","c"}', 'not_json'],
    ['{"a":["b","c"],"d":"e"}', 'ok'],
  ])('reads %j as JSON.parse does (%s)', (text, verdict) => {
    const raw = Buffer.from(text)
    expect(parseVerdict(raw)).toBe(verdict)
    check(raw)
  })

  it('gives JSON.parse\'s verdict on a long string with a bad byte at every position and word offset', () => {
    const base = `{"a":"${'abcdefgh'.repeat(6)}"}`
    for (const bad of [0x00, 0x0a, 0x1f, 0x22, 0x5c, 0x80, 0xff]) {
      for (let i = 6; i < base.length - 2; i++) {
        const bytes = Buffer.from(base)
        bytes[i] = bad
        check(bytes)
      }
    }
  })

  it('gives JSON.parse\'s verdict with a special byte or escape at every position modulo 16 of a string, at every length modulo 16', () => {
    const specials = ['\u0000', '\u001f', '"', '\\', '\u0080', '\u00ff', '\\n', '\\u00e9', '\\x', '\\u12G4', '\\']
    for (const special of specials) {
      for (let length = 0; length <= 34; length++) {
        for (let p = 0; p <= length; p++) {
          const text = `{"a":"${'x'.repeat(p)}${special}${'y'.repeat(length - p)}"}`
          check(Buffer.from(text, special === '\u0080' || special === '\u00ff' ? 'latin1' : 'utf8'))
        }
      }
    }
  })

  it('refuses a string the body ends in, at every cut, however long the string', () => {
    const bytes = Buffer.from(`{"a":"${'abc\\n'.repeat(12)}${'z'.repeat(40)}"}`)
    for (let cut = 5; cut < bytes.length - 1; cut++) check(bytes.subarray(0, cut))
  })

  it('refuses a held string the body ends in, over the bytes a longer body held before left past its end', () => {
    // Past each cut, the rest of the longer body: escapes and the closing quote, where the wasm walk's last load reads.
    const longer = Buffer.concat([HELD_PAD, Buffer.from(`"${'x'.repeat(40)}${'\\n'.repeat(10)}"`)])
    expect(scanJson(longer, WORDS)).toEqual({ ok: false, problem: 'not_object' })
    for (let cut = HELD_PAD.length + 1; cut < longer.length; cut++) {
      scanJson(longer, WORDS)
      expect(scanJson(longer.subarray(0, cut), WORDS), `cut at ${cut}`).toEqual({ ok: false, problem: 'not_json' })
    }
  })

  it('gives the same answer however a held body\'s scan is sliced', async () => {
    await fc.assert(
      fc.asyncProperty(anyBody, fc.array(mutation, { maxLength: 2 }), fc.integer({ min: 16, max: 300 }), fc.integer({ min: 1, max: 5 }), async (bytes, mutations, sliceBytes, sliceSteps) => {
        const raw = Buffer.concat([HELD_PAD, mutate(bytes, mutations)])
        expect(await scanJson(raw, WORDS, sliceBytes, sliceSteps)).toEqual(scanJson(raw, WORDS))
      }),
      { numRuns: 1_000, seed: 12 },
    )
  })

  it('gives each held body its own answer when sliced scans of several take turns', async () => {
    const bodies = [32_768, 20_000, 70_000].flatMap((bytes, step) => [agentBody({ bytes, step }), agentBody({ bytes, step, shape: 'anthropic' })]).map((text) => Buffer.from(text))
    const whole = await Promise.all(bodies.map((raw) => scanJson(raw, WORDS)))
    expect(whole.every((scan) => scan.ok)).toBe(true)
    // Small slices: every scan yields many times, and the others use the wasm memory meanwhile.
    expect(await Promise.all(bodies.map((raw) => scanJson(raw, WORDS, 4096, 64)))).toEqual(whole)
  })

  it('walks a body larger than the wasm memory first held, then a smaller one, then one too large to hold', async () => {
    const piece = (n: number) => `"k${n}":"${'\\u00e9 line\\n'.repeat(50)}${'v'.repeat(n % 37)}"`
    const body = (members: number) => Buffer.from(`{${Array.from({ length: members }, (_, n) => piece(n)).join(',')}}`)
    for (const raw of [body(300), body(40), body(Math.ceil(MAX_HELD_BYTES / 600))]) {
      const scan = await scanJson(raw, WORDS)
      expect(scan.ok).toBe(true)
      expect(scan.ok && scan.members.map(({ key, keyStart, valueStart, valueEnd }) => ({ key, keyStart, valueStart, valueEnd }))).toEqual(topLevelMembers(raw))
    }
    expect(body(Math.ceil(MAX_HELD_BYTES / 600)).length).toBeGreaterThan(MAX_HELD_BYTES)
    const bad = body(300)
    bad[bad.length - 100] = 0x0a
    expect(await scanJson(bad, WORDS)).toEqual({ ok: false, problem: 'not_json' })
  })

  it('notes where each element of a top-level array has its own `type` key, and where it may have one spelled with escapes', () => {
    const tools = [
      '{"name":"a","input_schema":{"type":"object","properties":{"type":{"type":"string"}}}}',
      '{"name":"b", "type" : "custom"}',
      '{"name":"c","t\\u0079pe":"web_search_20250305"}',
      '{"type":"mcp","n\\u0061me":"d"}',
      '"type"',
      '[{"type":"e"}]',
      '{"description":"type","\\"type\\"":1}',
    ]
    const raw = Buffer.from(`{"model":"m","tools":[${tools.join(',')}],"messages":[{"role":"user","content":"type"}],"tool":{"type":"x"}}`)
    const scan = scanJson(raw, WORDS) as JsonScan & { ok: true }
    const [model, toolSpans, messages, tool] = scan.members
    const typeAt = (element: string, nth = 0) => raw.indexOf(element) + element.split('"type"', nth + 1).join('"type"').length
    expect(toolSpans?.typeKeys).toEqual([NO_KEY, typeAt(tools[1] as string), ESCAPED_KEY, typeAt(tools[3] as string), NO_KEY, NO_KEY, ESCAPED_KEY])
    // Members with no element `type` key, and members that are no array, note none.
    expect([model?.typeKeys, messages?.typeKeys, tool?.typeKeys]).toEqual([null, null, null])
    check(raw)
  })

  it('notes an element\'s `type` key first met after hundreds of elements, and each body its own typeKeys after it', async () => {
    // Elements before the first `type` key start as NO_KEY copies of a kept run (json-scan.ts NO_KEYS): every one
    // must be NO_KEY however many there are, and a later body must not see what an earlier one noted.
    for (const before of [0, 1, 255, 256, 257, 700]) {
      const elements = [...Array.from({ length: before }, (_, k) => `{"n":${k}}`), '{"type":"t"}', '{"n":0}', '{"type":"u"}']
      const raw = Buffer.from(`{"model":"m","tools":[${elements.join(',')}]}`)
      const scan = (await scanJson(raw, WORDS, 4096)) as JsonScan & { ok: true }
      expect(scan.members[1]?.typeKeys?.length).toBe(before + 3)
      expect(scan.members[1]?.typeKeys?.slice(0, before).every((k) => k === NO_KEY)).toBe(true)
      await expectSpans(raw)
    }
  })

  it('gives each array its own element spans: longer than the span buffer kept, then shorter, several in one body', async () => {
    // 10,000 spans, more than a scan keeps for the next (MAX_SPARE_SPANS); then bodies whose arrays are shorter than
    // the buffer a scan before left, so that a span past the count, or one not copied out, would show.
    const numbers = (n: number) => `[${Array.from({ length: n }, (_, k) => k).join(',')}]`
    const objects = (n: number) => `[${Array.from({ length: n }, (_, k) => (k % 3 === 0 ? `{"type":"t${k}"}` : k % 3 === 1 ? `{"t\\u0079pe":${k}}` : `{"k":[${k}]}`)).join(',')}]`
    const bodies = [
      `{"a":${numbers(5_000)},"b":${objects(7)},"c":[]}`,
      `{"m":${objects(600)},"n":[true,false],"o":"x","p":${objects(2)}}`,
      `{"q":${numbers(3)},"r":{"s":${numbers(9)}},"t":${objects(1)}}`,
      `{"u":[],"v":${numbers(1)}}`,
    ]
    // The first two are longer than a slice of the scan or the key scan: checked here; check() takes the others.
    for (const body of [...bodies, ...[...bodies].reverse()]) await expectSpans(Buffer.from(body))
    for (const body of bodies.slice(2)) check(Buffer.from(body))
  })

  it('gives each body its own element spans when sliced scans of bodies with long arrays take turns', async () => {
    const numbers = (n: number, from: number) => `[${Array.from({ length: n }, (_, k) => from + k).join(',')}]`
    const bodies = [900, 40, 2_500, 7].map((n, b) => Buffer.from(`{"x":${numbers(n, 100 * b)},"pad":"${' '.repeat(1_100)}","y":${numbers(n >> 1, b)}}`))
    const sliced = await Promise.all(bodies.map((raw) => scanJson(raw, WORDS, 256, 16)))
    sliced.forEach((scan, b) => expectSpansOf(bodies[b] as Buffer, scan))
  })

  it.each([
    ['a word as a key', '{"a":{"image":1}}', true],
    ['a word as a key spelled with an escape', '{"a":{"im\\u0061ge":1}}', true],
    ['a word as a key spelled with an escape from its first byte', '{"a":{"\\u0069mage":1}}', true],
    ['a word as a key with an escape that spells no word', '{"a":{"ima\\nge":1}}', false],
    ['a key of a word\'s length and first byte but not its last', '{"a":{"imagx":1}}', false],
    ['a key of a word\'s length and last byte but not its first', '{"a":{"xmage":1}}', false],
    ['a word as a `type` key\'s value', '{"a":[{"type":"image"}]}', true],
    ['a word as another key\'s value', '{"a":[{"name":"image"}]}', false],
  ])('tells whether a key scan would meet a word: %s', (_, body, seen) => {
    for (const raw of [Buffer.from(body), Buffer.concat([HELD_PAD, Buffer.from(body)])]) {
      const scan = scanJson(raw, WORDS) as JsonScan & { ok: true }
      expect(scan.keys.wordSeen).toBe(seen)
    }
    check(Buffer.from(body))
  })

  it('refuses a body of 2^31 bytes or more before reading it (its indices are small integers)', () => {
    const huge = { length: 2 ** 31 } as unknown as Buffer
    expect(() => scanJson(huge, WORDS)).toThrow(RangeError)
  })

  it('reads no bound into slice sizes of NaN or Infinity, and rounds a fractional one as the comparisons would', async () => {
    const raw = Buffer.from(agentBody({ bytes: 4096, step: 0 }))
    const whole = scanJson(raw, WORDS)
    expect(whole).not.toBeInstanceOf(Promise)
    for (const unbounded of [Number.NaN, Number.POSITIVE_INFINITY]) expect(scanJson(raw, WORDS, unbounded, unbounded)).toEqual(whole)
    expect(await scanJson(raw, WORDS, 2.5, 1.5)).toEqual(whole)
    expect(await scanJson(raw, WORDS, 0, 0)).toEqual(whole)
  })

  it('reports a repeated key only for a body that is JSON, as a JSON object', () => {
    expect(scanJson(Buffer.from('{"a":1,"a":2}'), WORDS)).toMatchObject({ ok: true, keys: { duplicate: 'a', wordSeen: true } })
    expect(scanJson(Buffer.from('{"a":1,"a":2,}'), WORDS)).toEqual({ ok: false, problem: 'not_json' })
    expect(scanJson(Buffer.from('[{"a":1,"a":2}]'), WORDS)).toEqual({ ok: false, problem: 'not_object' })
  })
})
