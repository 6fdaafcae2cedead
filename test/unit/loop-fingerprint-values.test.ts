import { describe, expect, it } from 'vitest'
import { LOOP_SHAPES } from '../../src/loop/shapes/index.js'
import type { LoopShape } from '../../src/loop/types.js'
import type { Json } from '../../src/providers/body.js'
import { fingerprintWays } from '../support/fingerprint-ways.js'

// Issue 12: fingerprints are stored across a rolling upgrade, so a change to how one is computed must not move it
// (loop-fingerprint-golden.test.ts holds the agent bodies, the edge bodies of every shape and the loop fixtures). This
// file adds the bodies where the digest reads a string's bytes in more than one way: short strings checked for plain
// ASCII in JavaScript and longer ones natively (the bound between them, 128 bytes, on both sides), escaped and
// non-ASCII strings of every length around it, a Mistral chat body, and strings fed once the character budget is
// spent (sampled with edges longer than themselves). EXPECTED was produced by this file's bodies run through the
// fingerprint code of 17ab15a (before the string checks and the SHA-256 read changed), read every way the proxy reads
// a body; nothing here is computed by the code it checks.

const ascii = (n: number, seed: number) => `${seed} `.padEnd(n, 'lorem ipsum dolor sit amet ')

/** Strings whose JSON spelling is `n` bytes long or near it, for n around the 128-byte bound, plain and not. */
function boundaryStrings(): string[] {
  const out: string[] = []
  for (const n of [0, 1, 15, 16, 17, 63, 64, 126, 127, 128, 129, 130, 255, 256, 257]) {
    out.push(ascii(n, n).slice(0, n))
    if (n > 2) {
      out.push(`${ascii(n - 2, n).slice(0, n - 2)}\\"`.slice(0, n)) // a backslash, escaped: the spelling has two
      out.push(`"${ascii(n - 1, n + 1).slice(0, n - 1)}`) // a quote first
      out.push(`${ascii(n - 1, n + 2).slice(0, n - 1)}é`) // non-ASCII last
      out.push(`${ascii(n - 1, n + 3).slice(0, n - 1)}\n`) // an escaped line end last
      out.push(`\u00e9${ascii(n - 1, n + 4).slice(0, n - 1)}`)
    }
  }
  return out
}

const MISTRAL_CHAT = {
  model: 'mistral-large-latest',
  temperature: 0.3,
  safe_prompt: false,
  messages: [
    { role: 'system', content: `You are Le Chat. ${ascii(300, 1)} \\ "quoted" tab\there` },
    { role: 'user', content: 'Quel temps fait-il à Paris ? 🌧' },
    { role: 'assistant', content: '', tool_calls: [{ id: 'D681PevKs', function: { name: 'get_weather', arguments: '{"city": "Paris", "unit": "c"}' } }] },
    { role: 'tool', name: 'get_weather', tool_call_id: 'D681PevKs', content: '{"temp": 11, "sky": "pluie"}' },
    { role: 'assistant', content: [{ type: 'text', text: 'Il pleut, 11 °C.' }] },
    { role: 'user', content: 'Et demain ?' },
    { role: 'assistant', content: 'Demain', prefix: true },
  ],
}

/** Every boundary string as a chat user turn, an assistant's text and a tool's result. */
function chatBoundaries(): Json {
  const messages: Json[] = [{ role: 'system', content: 'sys' }, { role: 'user', content: 'go' }]
  for (const [i, text] of boundaryStrings().entries()) {
    messages.push({ role: 'assistant', content: text, tool_calls: [{ id: `c${i}`, type: 'function', function: { name: 'run', arguments: JSON.stringify({ text }) } }] })
    messages.push({ role: 'tool', tool_call_id: `c${i}`, content: text })
  }
  // The step is the newest two exchanges: end with the boundary strings all in one.
  messages.push({ role: 'assistant', content: boundaryStrings().map((text) => ({ type: 'text', text })) })
  messages.push({ role: 'user', content: boundaryStrings().map((text) => ({ type: 'text', text })) })
  return { model: 'gpt-4o', messages }
}

/** The boundary strings as Anthropic text blocks, tool names and tool results. */
function anthropicBoundaries(): Json {
  const strings = boundaryStrings()
  return {
    model: 'claude-sonnet-4-5',
    system: strings.slice(0, 20).map((text) => ({ type: 'text', text })),
    messages: [
      { role: 'user', content: strings.slice(20, 40).map((text) => ({ type: 'text', text })) },
      { role: 'assistant', content: strings.map((text, i) => ({ type: 'tool_use', id: `t${i}`, name: text, input: { text } })) },
      { role: 'user', content: strings.map((text, i) => ({ type: 'tool_result', tool_use_id: `t${i}`, content: i % 2 === 0 ? text : [{ type: 'text', text }] })) },
    ],
  }
}

/** The boundary strings as Responses items. */
function responsesBoundaries(): Json {
  const strings = boundaryStrings()
  return {
    model: 'gpt-5',
    instructions: strings[40],
    input: [
      { role: 'user', content: strings.slice(0, 30).map((text) => ({ type: 'input_text', text })) },
      ...strings.map((text, i) => ({ type: 'function_call', call_id: `f${i}`, name: 'run', arguments: JSON.stringify({ text }) })),
      ...strings.map((text, i) => ({ type: 'function_call_output', call_id: `f${i}`, output: text })),
      { role: 'user', content: strings.slice(30) },
    ],
  }
}

/**
 * A step past the digest's 96 KiB of characters, its lanes full, then short strings fed once `room` (the characters
 * left) is below their length: sampled, their edges (16) longer than themselves. Read from a lazily read body's bytes,
 * 17ab15a threw there (RangeError: the tail's copy started before the string); EXPECTED is what it gave parsed.
 */
function charactersSpent(big: number): Json {
  const tail = ['a', 'bc', 'short', 'fifteen chars..', 'sixteen chars...', 'x\\y', 'é', '']
  const texts: string[] = []
  for (let i = 0; i < 28; i++) texts.push(ascii(big + i, i), ...tail)
  return {
    messages: [
      { role: 'user', content: 'go' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'cat', input: {} }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: texts.map((text) => ({ type: 'text', text })) }, ...texts.map((text) => ({ type: 'text', text }))] },
    ],
  }
}

/** [name, LOOP_SHAPES name, body as JSON text]. */
const CORPUS: [string, string, string][] = [
  ['mistral chat', 'messages', JSON.stringify(MISTRAL_CHAT)],
  ['chat boundaries', 'messages', JSON.stringify(chatBoundaries())],
  ['anthropic boundaries', 'messages', JSON.stringify(anthropicBoundaries())],
  ['responses boundaries', 'responses', JSON.stringify(responsesBoundaries())],
  ['characters spent 2001', 'messages', JSON.stringify(charactersSpent(2001))],
  ['characters spent 2032', 'messages', JSON.stringify(charactersSpent(2032))],
  ['characters spent 2037', 'messages', JSON.stringify(charactersSpent(2037))],
]

/** The fingerprints of 17ab15a's code (a body parsed whole: the worker's read), as `conversation/step`. */
const EXPECTED: Record<string, string> = {
  'mistral chat': '4a83ff268c253a87/1af9f97739b5e624',
  'chat boundaries': '27322bafaf10c5b1/0cecc64ec9a5ce19',
  'anthropic boundaries': 'abe87ed37aef839b/0ecbd6a1cf992221',
  'responses boundaries': 'cf2aaa83b4725aaa/977ce1a2998ab8cf',
  'characters spent 2001': '902172d74a7e8141/74998cde1a588ab2',
  'characters spent 2032': '902172d74a7e8141/4f4e567f4e3adb40',
  'characters spent 2037': '902172d74a7e8141/2d1ad39135c55451',
}

describe('loop fingerprints stay what they were, wherever a string is read from its bytes', () => {
  it('of each body, read each way the proxy reads one', async () => {
    const seen: Record<string, string> = {}
    for (const [name, shapeName, raw] of CORPUS) {
      const shape = LOOP_SHAPES[shapeName] as LoopShape
      const { worker, parsed, lazy } = await fingerprintWays(shape, raw)
      seen[`${name} (parsed whole)`] = worker
      seen[`${name} (parsed)`] = parsed
      seen[`${name} (lazy)`] = lazy
    }
    const expected: Record<string, string> = {}
    for (const [name, value] of Object.entries(EXPECTED)) for (const way of ['parsed whole', 'parsed', 'lazy']) expected[`${name} (${way})`] = value
    expect(seen).toEqual(expected)
  })
})
