import { describe, expect, it, vi } from 'vitest'
import { parseJson, pickMembers } from '../../src/http/json-pick.js'
import { seededRandom } from '../support/seeded-random.js'

// The answer walk against JSON.parse: answers as providers send them, then random JSON (nesting, whitespace,
// escapes, unicode, repeated keys, the usage member anywhere) and random damage to it.

const KEYS = ['usage', 'usageMetadata']
/** What JSON.parse gives for `keys` of `text`: its own members, or its whole result when it is no object. */
function parsed(raw: Buffer, keys = KEYS): unknown {
  const whole = parseJson(raw)
  if (typeof whole !== 'object' || whole === null || Array.isArray(whole)) return whole
  return Object.fromEntries(keys.filter((k) => k in whole).map((k) => [k, (whole as Record<string, unknown>)[k]]))
}

const OPENAI_USAGE = {
  prompt_tokens: 19, completion_tokens: 10, total_tokens: 29,
  prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
}
const ANSWERS: [string, string][] = [
  ['OpenAI, indented, usage with details', JSON.stringify({
    id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT', object: 'chat.completion', created: 1741569952, model: 'gpt-4o-2024-08-06',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! \u201cQuoted\u201d \\ path\n東京 😀', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
    usage: OPENAI_USAGE, service_tier: 'default', system_fingerprint: 'fp_fc9f1d7035',
  }, null, 2)],
  ['OpenAI, usage first, compact', JSON.stringify({ usage: OPENAI_USAGE, id: 'x', choices: [{ message: { content: 'a\u0000b\u001fc' } }] })],
  ['Anthropic, cache members', JSON.stringify({
    id: 'msg_01', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'Hi \u2019 there' }, { type: 'tool_use', id: 't', name: 'f', input: { a: [1, { b: null }] } }],
    stop_reason: 'end_turn', stop_sequence: null,
    usage: { input_tokens: 12, cache_creation_input_tokens: 2048, cache_read_input_tokens: 1800, cache_creation: { ephemeral_5m_input_tokens: 2048, ephemeral_1h_input_tokens: 0 }, output_tokens: 6, service_tier: 'standard' },
  })],
  ['Gemini, indented, usageMetadata with detail arrays', JSON.stringify({
    candidates: [{ content: { parts: [{ text: 'The capital of France is Paris.\n' }], role: 'model' }, finishReason: 'STOP', avgLogprobs: -0.0412 }],
    usageMetadata: { promptTokenCount: 12, candidatesTokenCount: 10, totalTokenCount: 22, promptTokensDetails: [{ modality: 'TEXT', tokenCount: 12 }], candidatesTokensDetails: [{ modality: 'TEXT', tokenCount: 10 }] },
    modelVersion: 'gemini-2.0-flash', responseId: 'mE3PZ6TDNvq_z7IP0t2e6AQ',
  }, null, 2)],
  ['Mistral, usage first', JSON.stringify({ id: '0a1b', object: 'chat.completion', model: 'mistral-small-latest', usage: { prompt_tokens: 10, total_tokens: 26, completion_tokens: 16 }, created: 1733227200, choices: [{ index: 0, message: { role: 'assistant', tool_calls: null, content: 'Rayleigh' }, finish_reason: 'stop' }] })],
  ['usage last with CRLF and tabs', '{\r\n\t"id" : "x" ,\r\n\t"usage" :\t{ "prompt_tokens" : 1e2 , "completion_tokens" : -0.5E-1 }\r\n}\r\n'],
]

describe('the answer walk reads what JSON.parse reads', () => {
  it.each(ANSWERS)('%s: the usage member alone parsed, the rest walked', (_name, text) => {
    const raw = Buffer.from(text)
    const parse = vi.spyOn(JSON, 'parse')
    let picked: unknown
    try {
      picked = pickMembers(raw, KEYS)
      // The walk vouched for the answer: JSON.parse saw only the usage member's text, never the whole answer.
      expect(parse.mock.calls.map((call) => call[0])).toEqual([expect.stringMatching(/^\{.*\}$/s)])
      expect(parse.mock.calls[0]?.[0]).not.toBe(text)
    } finally {
      parse.mockRestore()
    }
    expect(picked).toEqual(parsed(raw))
    expect(Object.keys(picked as object)).toHaveLength(1)
  })

  it.each(ANSWERS)('%s, cut short at every byte: null, as JSON.parse has it', (_name, text) => {
    const raw = Buffer.from(text)
    for (let end = 0; end < raw.length; end++) {
      const cut = raw.subarray(0, end)
      expect(pickMembers(cut, KEYS), `${end}`).toEqual(parsed(cut))
    }
  })

  it('on random JSON, and on random damage to it, gives what JSON.parse gives', () => {
    const random = seededRandom(12)
    const pickOf = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
    const SPACES = ['', '', '', ' ', '\n', '\r\n  ', '\t']
    const STRINGS = ['', 'usage', 'a"b', 'back\\slash', 'caf\u00e9', '東京', '😀', '\u0001\u001f', 'x'.repeat(300), `${'y'.repeat(257)}"\\`, '\u2028']
    const KEY_NAMES = ['usage', 'usageMetadata', 'id', 'usages', 'usag', 'a', 'total_tokens', 'prompt_tokens_details']
    const space = (): string => pickOf(SPACES)
    const value = (depth: number): string => {
      const r = random()
      if (depth > 5 || r < 0.35) return pickOf(['0', '-0', '12', '-3.25', '1e5', '2E-3', '0.5e+2', 'true', 'false', 'null', JSON.stringify(pickOf(STRINGS)), '"\\u0041\\/\\b\\f\\n\\r\\t"'])
      const n = Math.floor(random() * 4)
      const items = Array.from({ length: n }, () => (r < 0.7 ? `${space()}${JSON.stringify(pickOf(KEY_NAMES))}${space()}:${space()}` : space()) + value(depth + 1) + space())
      return r < 0.7 ? `{${space()}${items.join(',')}}` : `[${space()}${items.join(',')}]`
    }
    const DAMAGE = ['', ',', '}', ']', '"', '\\', ':', '{', '[', '1', ' ', '\u0000', 'e', '-', '.']
    let valid = 0
    let invalid = 0
    for (let round = 0; round < 4000; round++) {
      const members = Array.from({ length: 1 + Math.floor(random() * 5) }, () => `${space()}${JSON.stringify(pickOf(KEY_NAMES))}${space()}:${space()}${value(1)}${space()}`)
      let text = `${space()}{${members.join(',')}}${space()}`
      if (round % 2 === 1) {
        const at = Math.floor(random() * text.length)
        text = text.slice(0, at) + pickOf(DAMAGE) + text.slice(at + (random() < 0.5 ? 1 : 0))
      }
      const raw = Buffer.from(text)
      const expected = parsed(raw)
      if (expected === null) invalid++
      else valid++
      expect(pickMembers(raw, KEYS), text).toEqual(expected)
    }
    // The corpus holds both kinds in numbers.
    expect(Math.min(valid, invalid)).toBeGreaterThan(500)
  })
})
