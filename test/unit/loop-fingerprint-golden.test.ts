import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { LOOP_SHAPES } from '../../src/loop/shapes/index.js'
import type { LoopShape } from '../../src/loop/types.js'
import type { Json } from '../../src/providers/body.js'
import { agentBody } from '../../bench/agent-body.mjs'
import { fingerprintWays } from '../support/fingerprint-ways.js'
import { loadLoopFixtures } from '../support/loop-fixtures.js'

// Issue 12: a fingerprint is compared across processes and releases (a restarted proxy, a rolling upgrade), so no
// change to how it is computed may move one. Each body below, read every way the proxy reads one (parsed whole,
// lazily from its bytes, as the counting worker gets it), must give the fingerprint recorded here, computed before
// the fingerprint's cost was cut. A failure here means a loop would go uncounted across an upgrade.

const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) >>> 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const PIECES = ['const ', 'x', ' = ', '"q"', '\\', '\n', '\t', 'é', '中文', '😀', 'a b c ', '\u0001', '</tag>', "'"]
/** `n` UTF-16 units (or one more, a pair never cut) of code-like text with escapes and unicode, the same for the same seed. */
function mixed(n: number, seed: number): string {
  const random = seeded(seed)
  let out = ''
  while (out.length < n) out += PIECES[Math.floor(random() * PIECES.length)]
  return out
}
const ascii = (n: number, seed: number) => `${seed} `.padEnd(n, 'lorem ipsum dolor sit amet ')

const CHAT_EDGES = {
  model: 'gpt-4o',
  stream: true,
  messages: [
    { role: 'system', content: `Agent. ${mixed(300, 1)}` },
    { role: 'user', content: [{ type: 'text', text: 'Look at this: é😀' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' } }] },
    { role: 'assistant', content: 'Reading.', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read_file', arguments: '{"path":"src/a.ts","limit":10}' } }, { id: 'call_2', type: 'function', function: { name: 'grep', arguments: '{"q":"\\"x\\"\\n"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: mixed(900, 2) },
    { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: mixed(2500, 3) }] },
    { role: 'assistant', content: null, function_call: { name: 'legacy', arguments: '{}' } },
    { role: 'function', name: 'legacy', content: 'ok' },
    { role: 'assistant', content: 'I cannot.', refusal: 'I will not do that.' },
    { role: 'user', name: 'reviewer', content: `Try again ${ascii(5000, 4)}` },
    { role: 'assistant', content: [{ type: 'text', text: 'Plan: 中文 and \u2028 separators' }] },
    { role: 'user', content: '' },
  ],
}

const ANTHROPIC_EDGES = {
  model: 'claude-sonnet-4-5',
  max_tokens: 1024,
  system: [{ type: 'text', text: `You are Claude Code. ${mixed(3000, 5)}`, cache_control: { type: 'ephemeral' } }, { type: 'text', text: 'Second block' }],
  messages: [
    { role: 'user', content: [{ type: 'text', text: 'Fix it', cache_control: { type: 'ephemeral' } }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }] },
    {
      role: 'assistant',
      content: [
        { type: 'thinking', thinking: 'Hmm, the tests.', signature: 'sig-1' },
        { type: 'redacted_thinking', data: 'opaque' },
        { type: 'text', text: 'Running them.' },
        { type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { command: 'npm test', timeout: 60, env: { B: '2', A: '1' } } },
      ],
    },
    {
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'toolu_1', is_error: true, content: [{ type: 'text', text: mixed(1200, 6) }, { type: 'image', source: { type: 'url', url: 'https://x.test/a.png' } }] },
        { type: 'text', text: 'and more' },
      ],
    },
    { role: 'assistant', content: [{ type: 'server_tool_use', id: 'srv_1', name: 'web_search', input: { query: 'é' } }, { type: 'web_search_tool_result', tool_use_id: 'srv_1', content: [{ type: 'web_search_result', url: 'https://a.test', title: 'A' }] }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_2', content: mixed(40_000, 7) }, { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'doc' }, citations: { enabled: true } }] },
    { role: 'assistant', content: [{ type: 'mcp_tool_use', id: 'm1', name: 'fetch', server_name: 's', input: { url: 'https://b.test' } }, { type: 5 }, null, 'bare'] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'm1', content: 'plain result' }] },
  ],
}

const CONVERSE_EDGES = {
  system: [{ text: 'You are helpful.' }, { cachePoint: { type: 'default' } }],
  messages: [
    { role: 'user', content: [{ text: 'Weather?' }, { image: { format: 'png', source: { bytes: 'iVBORw0KGgo=' } } }] },
    { role: 'assistant', content: [{ reasoningContent: { reasoningText: { text: 'think', signature: 's' } } }, { toolUse: { toolUseId: 't1', name: 'weather', input: { city: 'Zürich', units: 'c' } } }] },
    { role: 'user', content: [{ toolResult: { toolUseId: 't1', status: 'success', content: [{ json: { temp: 21, sky: 'clear' } }, { text: 'ok' }] } }, { cachePoint: { type: 'default' } }] },
    { role: 'assistant', content: [{ text: 'It is 21°C.' }] },
  ],
}

const RESPONSES_EDGES = {
  model: 'gpt-5',
  instructions: `Be brief. ${mixed(600, 8)}`,
  conversation: { id: 'conv_123' },
  input: [
    'A bare string first',
    { role: 'user', content: [{ type: 'input_text', text: 'Book a flight to Zürich 😀' }, { type: 'input_image', image_url: 'https://x.test/i.png' }] },
    { type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: ascii(800, 9) },
    { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'search', arguments: '{"q":"ZRH","when":"\\u00e9t\\u00e9"}', status: 'completed' },
    { type: 'function_call_output', call_id: 'call_1', output: mixed(3000, 10) },
    { type: 'custom_tool_call', id: 'ct_1', call_id: 'call_2', name: 'patch', input: '*** Begin Patch\n' },
    { type: 'custom_tool_call_output', call_id: 'call_2', output: [{ type: 'input_text', text: 'applied' }] },
    { type: 'shell_call', id: 'sh_1', action: { commands: ['ls', '-la'] } },
    { type: 'shell_call_output', id: 'sh_o', output: 'a\nb' },
    { type: 'item_reference', id: 'msg_9' },
    { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Done.', annotations: [] }] },
    { role: 'developer', content: 'Keep going.' },
  ],
}

const GEMINI_EDGES = {
  systemInstruction: { parts: [{ text: 'You are Gemini.' }] },
  cachedContent: 'cachedContents/abc',
  contents: [
    { role: 'user', parts: [{ text: 'Find the file 中文' }, { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }] },
    { role: 'model', parts: [{ text: 'thinking…', thought: true }, { functionCall: { name: 'find', args: { glob: '**/*.ts', max: 3 } }, thoughtSignature: 'sig' }] },
    { role: 'user', parts: [{ functionResponse: { name: 'find', response: { files: ['a.ts', 'b.ts'], note: mixed(400, 11) } } }] },
    { role: 'model', parts: [{ text: 'Found two.' }] },
    { parts: [{ text: 'no role: a user turn' }] },
  ],
}

/** An agent that has run 120 exchanges: more items than a step reads (64), the opening past 16 items of input. */
function longChat(): Json {
  const messages: Json[] = [{ role: 'system', content: 'sys' }]
  for (let i = 0; i < 20; i++) messages.push({ role: 'user', content: `opening ${i} ${mixed(50, 100 + i)}` })
  for (let i = 0; i < 120; i++) {
    messages.push({ role: 'assistant', content: `thought ${i}`, tool_calls: i % 3 === 0 ? [] : [{ id: `c${i}`, type: 'function', function: { name: 'run', arguments: `{"i":${i % 4}}` } }] })
    messages.push({ role: 'tool', tool_call_id: `c${i}`, content: ascii(100 + (i % 7) * 300, i % 5) })
  }
  return { messages }
}

/** A newest step of many small values: past the digest's 4,096 values and 96 KiB of characters. */
function wideStep(): Json {
  const wide = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${(i * 37) % 100}`, Array.from({ length: 300 }, (_, j) => (j % 3 === 0 ? `s${j}é` : j))]))
  return {
    messages: [
      { role: 'user', content: 'go' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'bulk', input: wide }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: Array.from({ length: 300 }, (_, i) => ({ type: 'text', text: mixed(400, 200 + i) })) }] },
    ],
  }
}

// Bodies as raw JSON text, with escapes JSON.stringify never writes (\u of ASCII, \/, an escaped key, a lone surrogate) and members reordered.
const RAW_CHAT = '{"messages":[{"content":"Sys \\u0041\\/b","role":"system"},{"role":"user","content":"q \\ud83d\\ude00 \\ud800 lone"},' +
  '{"tool_calls":[{"function":{"arguments":"{\\"b\\":1,\\"a\\":2}","name":"f"},"type":"function","id":"x"}],"content":null,"role":"assistant"},' +
  '{"r\\u006fle":"tool","content":"r\\u00e9sult","tool_call_id":"x"},{"role":"assistant","content":[{"text":"t","type":"text"}]}]}'
const RAW_ANTHROPIC = '{"system":"S\\n","messages":[{"role":"user","content":[{"text":"hi","type":"text"}]},' +
  '{"content":[{"input":{"z":[1,2,{"y":null}],"a":"\\u00e9"},"name":"n","id":"i","type":"tool_use"}],"role":"assistant"},' +
  '{"role":"user","content":[{"content":[{"text":"\\"quoted\\"","type":"text"}],"is_error":false,"t\\u0079pe":"tool_result","tool_use_id":"i"}]}]}'
// The same conversation as RAW_ANTHROPIC with every object's members in another order: the same fingerprint.
const RAW_ANTHROPIC_REORDERED = '{"messages":[{"content":[{"type":"text","text":"hi"}],"role":"user"},' +
  '{"role":"assistant","content":[{"type":"tool_use","id":"i","name":"n","input":{"a":"\\u00e9","z":[1,2,{"y":null}]}}]},' +
  '{"content":[{"tool_use_id":"i","type":"tool_result","is_error":false,"content":[{"type":"text","text":"\\"quoted\\""}]}],"role":"user"}],"system":"S\\n"}'

/** [name, LOOP_SHAPES name, body as JSON text]. */
const CORPUS: [string, string, string][] = [
  ['chat edges', 'messages', JSON.stringify(CHAT_EDGES)],
  ['anthropic edges', 'messages', JSON.stringify(ANTHROPIC_EDGES)],
  ['converse edges', 'messages', JSON.stringify(CONVERSE_EDGES)],
  ['invoke messages', 'invoke', JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', messages: ANTHROPIC_EDGES.messages.slice(0, 3) })],
  ['invoke prompt', 'invoke', JSON.stringify({ prompt: `<s>[INST] ${mixed(500, 12)} [/INST]`, max_gen_len: 100 })],
  ['prompt inputText', 'prompt', JSON.stringify({ inputText: 'Titan says hi é', textGenerationConfig: {} })],
  ['responses edges', 'responses', JSON.stringify(RESPONSES_EDGES)],
  ['responses string', 'responses', JSON.stringify({ input: `Just a string ${mixed(3000, 13)}`, instructions: [{ type: 'input_text', text: 'i' }] })],
  ['gemini edges', 'gemini', JSON.stringify(GEMINI_EDGES)],
  ['gemini one content', 'gemini', JSON.stringify({ contents: { parts: [{ text: 'single' }] }, system_instruction: 'plain' })],
  ['long chat', 'messages', JSON.stringify(longChat())],
  ['wide step', 'messages', JSON.stringify(wideStep())],
  ['raw chat', 'messages', RAW_CHAT],
  ['raw anthropic', 'messages', RAW_ANTHROPIC],
  ['raw anthropic reordered', 'messages', RAW_ANTHROPIC_REORDERED],
  ...[8, 32, 128].flatMap((kib): [string, string, string][] => [
    [`agent chat ${kib} KiB`, 'messages', agentBody({ bytes: kib * 1024 })],
    [`agent chat ${kib} KiB step 3`, 'messages', agentBody({ bytes: kib * 1024, step: 3 })],
    [`agent anthropic ${kib} KiB`, 'messages', agentBody({ bytes: kib * 1024, shape: 'anthropic' })],
    [`agent anthropic ${kib} KiB step 3`, 'messages', agentBody({ bytes: kib * 1024, shape: 'anthropic', step: 3 })],
  ]),
]

/** The fingerprints computed before issue 12's cuts to the fingerprint, as `conversation/step`. */
const EXPECTED: Record<string, string> = {
  'chat edges': '068310df5d5140ba/b153eb2b628f08c1',
  'anthropic edges': 'db41f51be60f0f4d/efa6beaf23bc89fb',
  'converse edges': '78b59a0d43b826ec/83a58e961a0d1e03',
  'invoke messages': 'ed343a41a3a3f639/b1c23af2a713cb26',
  'invoke prompt': 'd108d14e460e9861/cf07c33b5d12eb60',
  'prompt inputText': '2a8a823099970d1d/42d9b9f45e1a2079',
  'responses edges': '98596b88fd4d3dee/996f46664f19f7ba',
  'responses string': '3007b18987f8642e/80a6d82b6f328106',
  'gemini edges': '0a4bb9d67e0cfd05/a92eb767eb5feaf9',
  'gemini one content': '8b9b7907e0fcbf71/f7e550360fcf86a5',
  'long chat': 'a182858eecb8557b/24f2e290753e91ae',
  'wide step': '902172d74a7e8141/908ecd6015fc5bfd',
  'raw chat': '300d60bb7189f96f/ba9e237569bb8c13',
  'raw anthropic': 'd3895296616f76a1/82b8a92aa5dd7859',
  'raw anthropic reordered': 'd3895296616f76a1/82b8a92aa5dd7859',
  'agent chat 8 KiB': 'eba9a37e4bc58717/20298b7eee998b5c',
  'agent chat 8 KiB step 3': 'ddf805169e0fa5c9/489f1d1487061cca',
  'agent anthropic 8 KiB': '7a077d99e3153905/8041c0463daac474',
  'agent anthropic 8 KiB step 3': '74b27936d2182cc4/f3074fa7701d8cea',
  'agent chat 32 KiB': '45bc9913c34cebe4/3c147cb495d449e5',
  'agent chat 32 KiB step 3': '45bc9913c34cebe4/969b40229083605f',
  'agent anthropic 32 KiB': '8a351c7b2cf7b316/500e91a29a05a5de',
  'agent anthropic 32 KiB step 3': '8a351c7b2cf7b316/b6e0ba06a33c1dc3',
  'agent chat 128 KiB': '45bc9913c34cebe4/c3078bba180ee65e',
  'agent chat 128 KiB step 3': '45bc9913c34cebe4/ae77cccba264365c',
  'agent anthropic 128 KiB': '8a351c7b2cf7b316/7ea058ec840217a9',
  'agent anthropic 128 KiB step 3': '8a351c7b2cf7b316/769c42337969fca2',
}

/** Per fixture of test/fixtures/loops, the first 16 hex digits of SHA-256 over its requests' fingerprints, one a line. */
const EXPECTED_FIXTURES: Record<string, string> = {
  'healthy-anthropic-continue-chat': 'bdc14fc7f9ec641f',
  'healthy-bedrock-converse-polling-progress': '43808dafde0c2156',
  'healthy-gemini-same-prompt-many-sessions': '6e35548328e25b51',
  'healthy-openai-chat-40-turn-agent': 'a763c71eeb3c632a',
  'healthy-openai-chat-retries-and-sampling': 'cd9a0ff115cd6649',
  'healthy-responses-parallel-independent': '9cbc802bf51450c8',
  'loop-anthropic-changing-system-prompt': '87c9fb9334c1da0d',
  'loop-anthropic-same-tool-use': '9a21e7f33cbc2a0a',
  'loop-bedrock-converse-same-request': 'e535defd1bc542f1',
  'loop-bedrock-converse-tool-use': '0160951112d1702e',
  'loop-gemini-period-two': 'd32aa33d60243182',
  'loop-openai-chat-same-tool-call': 'e6351071a657e120',
  'loop-openai-chat-two-agents-one-session': '94b1a386760311ba',
  'loop-openai-chat-two-agents-ping-pong': '8a301ccf76ce3ee8',
  'loop-responses-function-call': '20f2fcfff327f2d7',
}

/** The fingerprint of `raw` read each way the proxy reads a body; throws when two ways disagree. */
async function fingerprintsOf(shape: LoopShape, raw: string): Promise<string> {
  const { worker, parsed, lazy } = await fingerprintWays(shape, raw)
  expect({ parsed, lazy }).toEqual({ parsed: worker, lazy: worker })
  return worker
}

describe('loop fingerprints stay what they were', () => {
  it.each(CORPUS)('%s', async (name, shapeName, raw) => {
    const shape = LOOP_SHAPES[shapeName] as LoopShape
    expect(await fingerprintsOf(shape, raw)).toBe(EXPECTED[name])
  })

  it('of every request of the loop fixtures', async () => {
    const seen: Record<string, string> = {}
    for (const fixture of loadLoopFixtures()) {
      const hash = createHash('sha256')
      for (const { body } of fixture.requests) hash.update(`${await fingerprintsOf(fixture.shape, JSON.stringify(body))}\n`)
      seen[fixture.name] = hash.digest('hex').slice(0, 16)
    }
    expect(seen).toEqual(EXPECTED_FIXTURES)
  })
})

