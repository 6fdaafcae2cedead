import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { JsonSpan } from '../../src/http/json-elements.js'
import { fingerprintRequest } from '../../src/loop/fingerprint.js'
import type { LoopShape } from '../../src/loop/types.js'
import { messagesShape } from '../../src/loop/shapes/messages.js'
import { responsesShape } from '../../src/loop/shapes/responses.js'
import type { Json } from '../../src/providers/body.js'
import { LAZY_MIN_BYTES, readLazyBody } from '../../src/proxy/request-body.js'
import { agentBody } from '../../bench/agent-body.mjs'

// Issue 12: the content blocks of a lazily read Anthropic Messages body (text, tool_use, tool_result, thinking) are
// read member by member from the body's bytes, never parsed whole; the fingerprint must be the one the body parsed
// gives, whatever else a block carries (a `toolUse` or `functionCall` record beside its type, a type that is no
// string, nested result blocks, escapes).

const text = fc.oneof(
  { weight: 6, arbitrary: fc.string() },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 2, arbitrary: fc.array(fc.constantFrom('const a = 1', '\t"quoted"', 'back\\slash', 'é', ''), { maxLength: 6 }).map((lines) => lines.join('\n')) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('line\n', 'x'), fc.integer({ min: 100, max: 1200 })).map(([s, n]) => s.repeat(n)) },
)
const scalar = fc.oneof(text, fc.integer(), fc.boolean(), fc.constant(null))
const json = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, scalar, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 3 }),
  object: fc.dictionary(fc.constantFrom('a', 'name', 'input', 'type', 'text'), tie('value'), { maxKeys: 3 }),
})).value
const some = <T extends Record<string, fc.Arbitrary<unknown>>>(members: T) => fc.record(members, { requiredKeys: [] })
const type = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('text', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking', 'server_tool_use', 'mcp_tool_use', 'function_call', 'custom_tool_call', 'function_call_output', 'custom_tool_call_output', 'image', 'function', 'input_text') },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.constant(null), text) },
)
const record = some({ name: text, input: json, arguments: text })
const block = fc.letrec((tie) => ({
  block: some({
    type,
    text: fc.oneof(text, json),
    id: text,
    name: fc.oneof(text, fc.integer()),
    input: json,
    arguments: fc.oneof(text, json),
    content: fc.oneof(text, fc.array(fc.oneof({ weight: 4, arbitrary: tie('block') }, scalar), { maxLength: 3 }), json),
    is_error: fc.oneof(fc.boolean(), fc.constant(null)),
    output: fc.oneof(text, json),
    tool_use_id: text,
    cache_control: fc.constant({ type: 'ephemeral' }),
    thinking: text,
    signature: text,
    // Beside a type, these send hashPart down another branch.
    toolUse: fc.oneof({ weight: 1, arbitrary: record }, { weight: 1, arbitrary: scalar }),
    functionCall: fc.oneof({ weight: 1, arbitrary: record }, { weight: 1, arbitrary: scalar }),
    function: record,
  }),
})).block
const content = fc.oneof({ weight: 6, arbitrary: fc.array(fc.oneof({ weight: 6, arbitrary: block }, scalar, fc.array(scalar, { maxLength: 2 })), { maxLength: 5 }) }, { weight: 1, arbitrary: block }, { weight: 1, arbitrary: text })
const message = fc.record({ role: fc.constantFrom('user', 'assistant', 'user', 'assistant', 'tool'), content }, { requiredKeys: ['role'] })
const body = fc.record({
  system: fc.oneof(text, fc.array(fc.oneof(block, scalar), { maxLength: 3 })),
  messages: fc.array(message, { minLength: 1, maxLength: 8 }),
})
// Responses items: messages of content blocks, the model's calls and their outputs (Codex's shape), and the odd ones.
const itemType = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('message', 'function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output', 'reasoning', 'shell_call', 'item_reference', 'input_text') },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.constant(null)) },
)
const item = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(block, itemType, fc.constantFrom('user', 'assistant', 'developer', 7)).map(([value, type, role]) => ({ ...value, type, role })) },
  { weight: 1, arbitrary: scalar },
)
const responsesBody = fc.record({ instructions: fc.oneof(text, fc.array(fc.oneof(block, scalar), { maxLength: 2 })), input: fc.array(item, { minLength: 1, maxLength: 8 }) })

/** `value` as a body of at least LAZY_MIN_BYTES, which the proxy reads lazily. */
function padded(value: object): Buffer {
  const inner = JSON.stringify(value).slice(1, -1)
  return Buffer.from(`{"model":"m","pad":"${'p'.repeat(LAZY_MIN_BYTES)}",${inner}}`)
}

describe('content blocks read from the bytes', () => {
  /** Whether lazily read bodies of `shape` drawn from `bodies` fingerprint as parsed, with most runs reading a block from its bytes. */
  async function expectAsParsed(bodies: fc.Arbitrary<object>, shape: LoopShape): Promise<void> {
    // Runs whose fingerprint read a block from its bytes (a JsonSpan's members were read).
    const spy = vi.spyOn(JsonSpan.prototype, 'members')
    let fromBytes = 0
    try {
      await fc.assert(
        fc.asyncProperty(bodies, async (value) => {
          const raw = padded(value)
          const expected = fingerprintRequest(shape, JSON.parse(raw.toString()) as Json)
          spy.mockClear()
          expect((await readLazyBody(raw, shape)).fingerprint()).toEqual(expected)
          if (spy.mock.calls.length > 0) fromBytes++
        }),
        { numRuns: Number(process.env.FP_RUNS ?? 400), seed: Number(process.env.FP_SEED ?? 1212) },
      )
    } finally {
      spy.mockRestore()
    }
    expect(fromBytes).toBeGreaterThan(200)
  }

  it('give the fingerprint of the body parsed, whatever the blocks carry', async () => {
    await expectAsParsed(body, messagesShape)
  }, 120_000)

  it('give the fingerprint of a Responses body parsed, whatever its items carry', async () => {
    await expectAsParsed(responsesBody, responsesShape)
  }, 120_000)

  it('read an agent\'s Anthropic request without parsing a block whole', async () => {
    const raw = Buffer.from(agentBody({ bytes: 32_768, shape: 'anthropic', step: 7 }))
    const expected = fingerprintRequest(messagesShape, JSON.parse(raw.toString()) as Json)
    const lazy = await readLazyBody(raw, messagesShape)
    const parse = vi.spyOn(JSON, 'parse')
    try {
      expect(lazy.fingerprint()).toEqual(expected)
      // Only the code of the newest tool results (escaped strings) and tool inputs are parsed: no block, no array of blocks.
      for (const [arg] of parse.mock.calls) expect(String(arg)).not.toMatch(/^\s*[[{]\s*("type"|\{)/)
    } finally {
      parse.mockRestore()
    }
  })
})
