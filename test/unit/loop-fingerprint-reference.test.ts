import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { fingerprintRequest } from '../../src/loop/fingerprint.js'
import { LOOP_SHAPES } from '../../src/loop/shapes/index.js'
import type { Json } from '../../src/providers/body.js'
import { LAZY_MIN_BYTES, readLazyBody, readParsedBody } from '../../src/proxy/request-body.js'
import { REFERENCE_SHAPES, referenceFingerprint } from '../support/fingerprint-reference.js'
import { seededRandom } from '../support/seeded-random.js'

// Issue 12: the fingerprint reads a lazily read body's items from their bytes (an item's role without parsing it).
// Loop detection is a security feature: whatever the body and its spelling, the digest is the one every item parsed
// gave (test/support/fingerprint-reference.ts), on a parsed body and on a lazily read one.

/** A string literal of `text` with some characters escaped (`\u0061`, `\/`), as a client may spell it. */
function spellString(text: string, random: () => number): string {
  const plain = JSON.stringify(text)
  if (random() < 0.5) return plain
  let out = '"'
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    const roll = random()
    if (code === 0x2f && roll < 0.5) out += '\\/'
    else if (roll < 0.3) out += `\\u${code.toString(16).padStart(4, '0')}`
    else out += JSON.stringify(text[i]).slice(1, -1)
  }
  return `${out}"`
}

/** A number literal that JSON.parse reads as `n`, in one of its spellings. */
function spellNumber(n: number, random: () => number): string {
  const text = JSON.stringify(n)
  const roll = random()
  if (roll < 0.4 || !Number.isFinite(n)) return text
  const [mantissa, exponent] = text.split('e') as [string, string | undefined]
  if (exponent !== undefined) return `${mantissa}E${exponent}`
  if (roll < 0.6) return `${mantissa}e0`
  if (roll < 0.8 || mantissa.includes('.') || /^-?0$/.test(mantissa)) return mantissa.includes('.') ? `${mantissa}0` : `${mantissa}.0`
  // An integer's digits and a zero, over ten: the same decimal value.
  return `${mantissa}0E-1`
}

/** `value` as JSON text, spelled variously: escapes, number spellings, whitespace between tokens. */
function spell(value: unknown, random: () => number): string {
  const space = () => (random() < 0.2 ? [' ', '\n', '\t ', '\r\n'][Math.floor(random() * 4)] : '')
  if (typeof value === 'string') return spellString(value, random)
  if (typeof value === 'number') return spellNumber(value, random)
  if (typeof value !== 'object' || value === null) return JSON.stringify(value)
  if (Array.isArray(value)) return `[${space()}${value.map((v) => `${spell(v, random)}${space()}`).join(`,${space()}`)}]`
  const members = Object.entries(value).map(([k, v]) => `${space()}${spellString(k, random)}${space()}:${space()}${spell(v, random)}${space()}`)
  return `{${members.join(',')}${space()}}`
}

const text = fc.oneof(
  { weight: 12, arbitrary: fc.string() },
  { weight: 4, arbitrary: fc.string({ unit: 'binary' }) },
  // Long strings, sampled by the digest (above 2 KiB) or past its character budget.
  { weight: 1, arbitrary: fc.tuple(fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }), fc.integer({ min: 300, max: 1500 })).map(([s, n]) => s.repeat(n)) },
)
const number = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(0, -0, 1e21, 1e-7, 123.456, -5e-324))
const json = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, text, number, fc.boolean(), fc.constant(null), tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(fc.oneof(text, fc.constantFrom('id', 'type', 'role', 'text', 'status', 'index', 'name')), tie('value'), { maxKeys: 4 }),
})).value
// The model's roles as often as the client's: the step's bounds are counted in model turns.
const role = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('assistant', 'model') },
  { weight: 6, arbitrary: fc.constantFrom('user', 'tool', 'system', 'developer', 'function') },
  { weight: 1, arbitrary: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constant({ role: 'assistant' })) },
)
const type = (...known: string[]) => fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...known) }, { weight: 1, arbitrary: fc.oneof(fc.string(), fc.integer(), fc.constant(null)) })
/** A record whose members are each present or not. */
const some = <T extends Record<string, fc.Arbitrary<unknown>>>(members: T) => fc.record(members, { requiredKeys: [] })

// Content parts of every wire shape: text, calls, results, reasoning, media, cache markers.
const part = fc.oneof(
  text,
  some({ type: type('text', 'input_text', 'output_text', 'image', 'image_url'), text, cache_control: fc.constant({ type: 'ephemeral' }), citations: json, annotations: json }),
  some({ type: type('tool_use', 'server_tool_use', 'mcp_tool_use'), id: text, name: text, input: json }),
  some({ type: type('tool_result'), tool_use_id: text, content: fc.oneof(text, fc.array(some({ type: type('text', 'image'), text }), { maxLength: 3 })), is_error: fc.boolean() }),
  some({ type: type('thinking', 'redacted_thinking', 'reasoning'), thinking: text, signature: text, data: text }),
  some({ toolUse: some({ toolUseId: text, name: text, input: json }) }),
  some({ toolResult: some({ toolUseId: text, content: fc.array(fc.oneof(some({ text }), some({ json })), { maxLength: 3 }), status: fc.constantFrom('success', 'error') }) }),
  some({ reasoningContent: json }),
  some({ cachePoint: fc.constant({ type: 'default' }) }),
  some({ functionCall: some({ name: text, args: json, id: text }), thoughtSignature: text }),
  some({ functionResponse: some({ name: text, response: json, id: text }) }),
  some({ text, thought: fc.boolean() }),
  json,
)
// Now and then more parts than an item's MAX_PARTS (256) are hashed: a run repeated.
const parts = fc.oneof(
  { weight: 12, arbitrary: fc.array(part, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.array(fc.oneof(fc.string({ maxLength: 4 }), some({ type: type('text'), text: fc.string({ maxLength: 4 }) })), { minLength: 1, maxLength: 3 }).map((run) => Array.from({ length: 300 }, (_, i) => run[i % run.length])) },
)
const content = fc.oneof(text, parts, fc.constant(null))
// Now and then a call whose type or `function` is another (read parsed), beside the ones read member by member.
const call = fc.oneof(
  { weight: 8, arbitrary: some({ id: text, type: fc.constant('function'), function: some({ name: text, arguments: fc.oneof(json.map((v) => JSON.stringify(v)), text) }), index: fc.integer() }) },
  { weight: 1, arbitrary: some({ id: text, type: type('function', 'tool_use', 'function_call'), function: fc.oneof(json, some({ name: json, arguments: json })), name: text, input: json, arguments: text }) },
  { weight: 1, arbitrary: json },
)
const message = fc.record({
  role,
  content,
  tool_calls: fc.oneof({ weight: 8, arbitrary: fc.array(call, { maxLength: 3 }) }, { weight: 1, arbitrary: json }),
  function_call: some({ name: text, arguments: text }),
  refusal: fc.oneof(text, fc.constant(null)),
  name: fc.oneof(text, fc.integer()),
  tool_call_id: text,
}, { requiredKeys: ['role'] })
const responsesItem = fc.oneof(
  text,
  fc.record({ type: type('message'), role, content, id: text, status: text }, { requiredKeys: ['role'] }),
  some({ type: type('function_call', 'custom_tool_call', 'shell_call', 'computer_call', 'web_search_call'), id: text, call_id: text, name: text, arguments: text, input: text, status: text }),
  some({ type: type('function_call_output', 'custom_tool_call_output', 'shell_call_output'), call_id: text, output: fc.oneof(text, parts) }),
  some({ type: type('reasoning'), id: text, summary: json, encrypted_content: text }),
  some({ type: type('item_reference'), id: text }),
)
const geminiContent = fc.record({ role, parts }, { requiredKeys: ['role'] })
const garbage = fc.oneof(text, number, fc.constant(null), fc.boolean(), fc.array(json, { maxLength: 2 }))
/** Items, now and then more than the bounds read (16 opening items, 64 step items, 256 scanned): a run repeated. */
const items = <T>(item: fc.Arbitrary<T>) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.array(fc.oneof({ weight: 5, arbitrary: item }, garbage), { maxLength: 24 }) },
    { weight: 1, arbitrary: fc.tuple(fc.array(fc.oneof({ weight: 8, arbitrary: item }, garbage), { minLength: 1, maxLength: 6 }), fc.integer({ min: 10, max: 60 })).map(([run, times]) => Array.from({ length: times }, () => run).flat()) },
  )
const body = some({
  model: fc.constant('m'),
  messages: fc.oneof({ weight: 8, arbitrary: items(message) }, { weight: 1, arbitrary: garbage }),
  system: fc.oneof(text, parts),
  prompt: text,
  inputText: text,
  input: fc.oneof(items(responsesItem), text, garbage),
  instructions: fc.oneof(text, parts),
  conversation: fc.oneof(text, some({ id: text })),
  contents: fc.oneof(items(geminiContent), geminiContent, garbage),
  systemInstruction: fc.oneof(some({ parts }), text),
  system_instruction: some({ parts }),
  cachedContent: text,
  cached_content: text,
  stream: fc.boolean(),
  temperature: number,
})

describe('fingerprintRequest against the reference reading', () => {
  it('gives every shape\'s reference digest on random bodies of every spelling, parsed whole or read lazily', async () => {
    // Runs whose conversation was a lazily read array (larger than the members parsed at once) and had a fingerprint.
    let lazyRuns = 0
    let runs = 0
    await fc.assert(
      fc.asyncProperty(body, fc.integer(), fc.boolean(), async (value, seed, padFirst) => {
        const random = seededRandom(seed)
        const spelled = spell(value, random)
        const pad = `"pad":"${'p'.repeat(LAZY_MIN_BYTES)}"`
        const inner = spelled.slice(1, -1).trim()
        const raw = Buffer.from(inner === '' ? `{${pad}}` : padFirst ? `{${pad},${inner}}` : `{${inner},${pad}}`)
        const small = Buffer.from(spelled)
        runs++
        let lazyArray = false
        for (const [name, shape] of Object.entries(LOOP_SHAPES)) {
          const reference = referenceFingerprint(REFERENCE_SHAPES[name] as (typeof REFERENCE_SHAPES)[string], JSON.parse(spelled) as Json)
          expect(fingerprintRequest(shape, JSON.parse(spelled) as Json), name).toEqual(reference)
          if (small.length < LAZY_MIN_BYTES) expect((await readParsedBody(small, shape)).fingerprint(), name).toEqual(reference)
          const lazy = await readLazyBody(raw, shape)
          const conversation = ['messages', 'input', 'contents'].some((key) => Object.getOwnPropertyDescriptor(lazy.json, key)?.get !== undefined && raw.indexOf(`"${key}"`) >= 0)
          const fingerprint = lazy.fingerprint()
          expect(fingerprint, name).toEqual(reference)
          lazyArray ||= conversation && fingerprint !== null
        }
        if (lazyArray) lazyRuns++
      }),
      { numRuns: Number(process.env.FP_RUNS ?? 300), seed: Number(process.env.FP_SEED ?? 1212) },
    )
    expect(lazyRuns).toBeGreaterThan(runs / 4)
  }, 120_000)
})
