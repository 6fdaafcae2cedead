import { readdirSync, readFileSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { parseJson, pickMemberObject, pickMembers } from '../../src/http/json-pick.js'
import { createTokenCounter } from '../../src/tokens/worker.js'
import { ANSWER_TEXT } from '../support/billing.js'

// A whole answer's usage is read from its raw bytes: the walk must give what JSON.parse gives, or defer to it.

const KEYS = ['usage', 'usageMetadata']
const pick = (text: string | Buffer, keys = KEYS): unknown => pickMembers(Buffer.isBuffer(text) ? text : Buffer.from(text), keys)
/** What the proxy read before: each key of JSON.parse's object, or JSON.parse's result when it is no object. */
function parsed(text: string | Buffer, keys = KEYS): unknown {
  const whole = parseJson(Buffer.isBuffer(text) ? text : Buffer.from(text))
  if (typeof whole !== 'object' || whole === null || Array.isArray(whole)) return whole
  return Object.fromEntries(keys.filter((k) => k in whole).map((k) => [k, (whole as Record<string, unknown>)[k]]))
}

describe('picked members', () => {
  it.each([
    ['a usage member among others', '{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":16}}', { usage: { prompt_tokens: 9, completion_tokens: 16 } }],
    ['none of the keys', '{"id":"x"}', {}],
    ['an empty object', '{}', {}],
    ['a nested usage is not the answer’s', '{"choices":[{"usage":{"n":1}}],"meta":{"usage":2}}', {}],
    ['"usage" inside a string value', '{"a":"\\"usage\\":{\\"n\\":1}","b":"usage"}', {}],
    ['a string ending in an escaped backslash before the key', '{"a":"x\\\\","usage":{"n":1}}', { usage: { n: 1 } }],
    ['an escaped quote before the key', '{"a":"\\"","usage":3}', { usage: 3 }],
    ['a key spelled with an escape', '{"us\\u0061ge":4}', { usage: 4 }],
    ['a key that only starts like one', '{"usages":1,"usag":2,"usage2":3}', {}],
    ['repeated keys: the last one', '{"usage":1,"x":{"usage":5},"usage":{"n":2},"y":[{"usage":6}]}', { usage: { n: 2 } }],
    ['whitespace everywhere', ' \r\n\t{ "usage" :\n{ "n" : [ 1 , 2 ] } ,\t"usageMetadata"\r: null } \n', { usage: { n: [1, 2] }, usageMetadata: null }],
    ['numbers and literals', '{"a":[-0,1.5e+3,2E-2,0.25,true,false,null],"usage":-12.5e1}', { usage: -125 }],
    ['unicode and escapes in other members', `{"content":${JSON.stringify(ANSWER_TEXT)},"usage":{"n":1}}`, { usage: { n: 1 } }],
    ['a value string with unicode', '{"usage":{"note":"caf\\u00e9 — 東京"}}', { usage: { note: 'café — 東京' } }],
  ])('%s', (_name, text, expected) => {
    expect(pick(text)).toEqual(expected)
    expect(pick(text)).toEqual(parsed(text))
  })

  it.each([
    ['empty', ''],
    ['only spaces', '  '],
    ['truncated', '{"usage":{"n":1}'],
    ['trailing bytes', '{"usage":1} x'],
    ['two objects', '{"usage":1}{}'],
    ['a trailing comma', '{"usage":1,}'],
    ['a nested trailing comma', '{"a":[1,],"usage":1}'],
    ['a missing colon in a nested object', '{"a":{"b" 1},"usage":1}'],
    ['a missing comma in an array', '{"a":[1 2],"usage":1}'],
    ['a raw newline in a string', '{"a":"x\ny","usage":1}'],
    ['a control character in a long string', `{"a":"${'x'.repeat(600)}\u0001","usage":1}`],
    ['an unknown escape', '{"a":"\\x","usage":1}'],
    ['a short \\u escape', '{"a":"\\u12","usage":1}'],
    ['an unterminated string', '{"usage":1,"a":"x'],
    ['a leading zero', '{"a":01,"usage":1}'],
    ['a bare dot', '{"a":1.,"usage":1}'],
    ['a plus sign', '{"a":+1,"usage":1}'],
    ['an exponent without digits', '{"a":1e,"usage":1}'],
    ['a number running to the end', '{"usage":12'],
    ['a lone minus sign', '{"usage":-}'],
    ['a fraction without digits before an exponent', '{"usage":1.e5}'],
    ['a misspelt literal', '{"a":tru,"usage":1}'],
    ['a single-quoted key', "{'usage':1}"],
    ['a byte-order mark', '\ufeff{"usage":1}'],
  ])('not JSON (%s): null, as JSON.parse has it', (_name, text) => {
    expect(pick(text)).toBeNull()
  })

  it.each([
    ['an array', '[{"usage":1}]'],
    ['a string', '"usage"'],
    ['a number', '12'],
    ['null', 'null'],
  ])('not an object (%s): what JSON.parse makes of it', (_name, text) => {
    expect(pick(text)).toEqual(JSON.parse(text))
  })

  it('defers nesting deeper than it walks to JSON.parse, with the same values', () => {
    const deep = `{"a":${'['.repeat(200)}${']'.repeat(200)},"usage":{"n":1}}`
    expect(pick(deep)).toEqual(JSON.parse(deep))
    expect((pick(deep) as { usage: unknown }).usage).toEqual({ n: 1 })
  })

  // Long strings are scanned four bytes at a time: a quote, a backslash or a control character must be seen in
  // every position of a word, at every alignment of the body in memory.
  it.each([
    ['a quote', '\\"'],
    ['a backslash', '\\\\'],
    ['a \\u escape', '\\u00e9'],
    ['a raw tab (invalid)', '\t'],
    ['a raw NUL (invalid)', '\u0000'],
    ['a raw unit separator (invalid)', '\u001f'],
    ['an unknown escape (invalid)', '\\q'],
    ['UTF-8 bytes', 'é€😀'],
  ])('a long string holding %s at every offset and alignment reads as JSON.parse reads it', (_name, inner) => {
    for (let position = 250; position < 270; position++) {
      const text = `{"content":"${'y'.repeat(position)}${inner}${'z'.repeat(300)}","usage":{"n":${position}}}`
      for (let shift = 0; shift < 4; shift++) {
        const memory = Buffer.alloc(Buffer.byteLength(text) + shift)
        memory.write(text, shift)
        const raw = memory.subarray(shift)
        expect(pick(raw)).toEqual(parsed(raw))
      }
    }
  })

  it('parses every JSON fixture the way JSON.parse does', () => {
    const dirs = ['anthropic', 'azure', 'bedrock', 'gemini', 'mistral', 'openai']
    for (const dir of dirs) {
      for (const name of readdirJson(dir)) {
        const raw = readFileSync(new URL(`../fixtures/${dir}/${name}`, import.meta.url))
        const keys = ['usage', 'usageMetadata', 'results', 'model', 'messages', 'contents', 'error', 'inputTextTokenCount']
        expect(pick(raw, keys), `${dir}/${name}`).toEqual(parsed(raw, keys))
      }
    }
  })
})

// A big answer's members are read in the counting worker (src/proxy/forward.ts): the same members, or null when it is no object.
describe('members of a big answer, read in the counting worker', () => {
  const worker = createTokenCounter()
  afterAll(() => worker.close())
  /** `text` in shared memory, as a big answer is read. */
  const shared = (text: string): Buffer => {
    const raw = Buffer.from(new SharedArrayBuffer(Buffer.byteLength(text)))
    raw.write(text)
    return raw
  }

  it.each([
    ['members among others', '{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":9},"usageMetadata":null}'],
    ['repeated keys: the last one', '{"usage":1,"x":{"usage":5},"usage":{"n":2}}'],
    ['none of the keys', '{"id":"x"}'],
    ['nesting deeper than the walk goes (parsed whole)', `{"a":${'['.repeat(200)}${']'.repeat(200)},"usage":{"n":1}}`],
    ['not JSON', '{"usage":{"n":1}'],
    ['an array', '[{"usage":1}]'],
    ['null', 'null'],
  ])('%s: the members pickMembers reads, or null when it is no object', async (_name, text) => {
    const whole = parseJson(Buffer.from(text))
    const expected = typeof whole === 'object' && whole !== null && !Array.isArray(whole) ? parsed(text) : null
    expect(pickMemberObject(Buffer.from(text), KEYS)).toEqual(expected)
    expect(await worker.pick(shared(text), KEYS)).toEqual({ members: expected })
  })

  it('answers null when the worker has no room for the answer within its wait (the proxy then reads it itself)', async () => {
    const text = '{"usage":{"n":1}}'
    const cramped = createTokenCounter({ maxPendingBytes: text.length - 1, maxRoomWaitMs: 50 })
    try {
      expect(await cramped.pick(shared(text), KEYS)).toBeNull()
    } finally {
      await cramped.close()
    }
  })
})

function readdirJson(dir: string): string[] {
  return readdirSync(new URL(`../fixtures/${dir}/`, import.meta.url)).filter((name) => name.endsWith('.json'))
}
