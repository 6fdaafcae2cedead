import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { Tiktoken } from 'js-tiktoken/lite'
import cl100k from 'js-tiktoken/ranks/cl100k_base'
import o200k from 'js-tiktoken/ranks/o200k_base'
import { describe, expect, it } from 'vitest'
import { boundInputTokens, MAX_MEDIA_WALK_NODES, mediaParts, PRIMING_TOKENS, utf8Bytes } from '../../src/tokens/bound.js'
import {
  countChatTokens,
  countCompletePieces,
  countEmbeddingTokens,
  countResponsesTokens,
  countTextTokens,
  type Encoding,
  encodingForModel,
  preloadEncoding,
} from '../../src/tokens/tiktoken.js'

/** js-tiktoken itself, the reference the fast counter must agree with. */
const reference: Record<Encoding, Tiktoken> = { o200k_base: new Tiktoken(o200k), cl100k_base: new Tiktoken(cl100k) }
const ENCODINGS: Encoding[] = ['o200k_base', 'cl100k_base']
const ref = (text: string, encoding: Encoding = 'o200k_base'): number => reference[encoding].encode(text, [], []).length

function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../fixtures/openai/${name}`, import.meta.url), 'utf8')) as Record<string, unknown>
}

const SAMPLES = [
  '',
  'hello',
  'Hello, world! The quick brown fox jumps over the lazy dog.',
  "It's they're we've I'M you'll he'd — contractions",
  '   leading and trailing spaces   ',
  'tabs\tand\nnew\r\nlines\n\n\n  \n',
  '中文测试，日本語のテキスト。한국어 텍스트입니다.',
  'emoji 😀👩‍💻🏳️‍🌈 and flags 🇨🇭🇯🇵 and skin tones 👍🏽',
  'naïve café résumé Zürich Ångström ﬁ ligature',
  'Ελληνικά, русский текст, עברית, العربية, हिन्दी',
  '12345678901234567890 3.14159 -42 1e10 0x1F',
  '<|endoftext|> special <|endofprompt|> tokens <|fim_prefix|> as text',
  'function f(x) { return x ** 2; } // code\n\tconst y = [1, 2, 3];',
  '{"role":"user","content":"json \\"escaped\\" \\u00e9 text"}',
  'lone surrogate \ud800 and \udc00 here',
  // Long runs without a break: one piece each, merged by the heap (the reference is quadratic on them).
  'a'.repeat(1500),
  ' '.repeat(1500),
  '中'.repeat(500),
  '!'.repeat(1500),
  '\n'.repeat(1000),
  'xyz'.repeat(500),
  'aGVsbG8gd29ybGQ'.repeat(100),
]

describe('exact counts agree with js-tiktoken', () => {
  it.each(ENCODINGS.flatMap((e) => SAMPLES.map((s, i) => [e, i, s] as const)))('%s sample %i', (encoding, _i, text) => {
    expect(countTextTokens(text, encoding)).toBe(ref(text, encoding))
  })

  const pieces = fc.constantFrom(' ', '  ', '\n', '\r\n', '\t', 'a', 'ab', 'The', ' the', "'s", "'LL", '1', '123', '4567', '!', '?!', '/', '中', '日本', '😀', 'é', 'e\u0301', 'Ж', '<|endoftext|>', '\u00a0', 'x'.repeat(40))
  const texts = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.string({ unit: 'grapheme', maxLength: 300 }),
    fc.array(pieces, { maxLength: 200 }).map((parts) => parts.join('')),
  )

  it.each(ENCODINGS)('%s on generated text, never above UTF-8 bytes', (encoding) => {
    fc.assert(
      fc.property(texts, (text) => {
        const count = countTextTokens(text, encoding)
        expect(count).toBe(ref(text, encoding))
        expect(count).toBeLessThanOrEqual(utf8Bytes(text))
      }),
      { numRuns: 400 },
    )
  })

  it.each(ENCODINGS)('%s split for streaming: complete pieces and the rest add up, the rest counted as on its own', (encoding) => {
    fc.assert(
      fc.property(texts, (text) => {
        const { tokens, older, olderTokens, newer, newerTokens } = countCompletePieces(text, encoding)
        const rest = older + newer
        const restTokens = olderTokens + newerTokens
        expect(text.endsWith(rest)).toBe(true)
        expect(restTokens).toBe(countTextTokens(rest, encoding))
        expect(olderTokens).toBe(countTextTokens(older, encoding))
        expect(newerTokens).toBe(countTextTokens(newer, encoding))
        expect(tokens + restTokens).toBe(ref(text, encoding))
      }),
      { numRuns: 400 },
    )
  })
})

describe('byte bound', () => {
  it('counts UTF-8 bytes of strings and buffers', () => {
    expect(utf8Bytes('abc')).toBe(3)
    expect(utf8Bytes('é中😀')).toBe(2 + 3 + 4)
    expect(utf8Bytes(Buffer.from('é中😀'))).toBe(9)
  })

  const chatBodies = fc.record({
    model: fc.constant('gpt-4o'),
    messages: fc.array(
      fc.record({
        role: fc.constantFrom('system', 'user', 'assistant', 'tool'),
        content: fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.array(fc.record({ type: fc.constant('text'), text: fc.string({ unit: 'grapheme', maxLength: 100 }) }), { maxLength: 3 })),
        name: fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
      }),
      { maxLength: 20 },
    ),
  })

  it('bounds the exact chat count of any JSON body', () => {
    fc.assert(
      fc.property(chatBodies, (body) => {
        const raw = Buffer.from(JSON.stringify(body))
        expect(boundInputTokens(raw, body, 0)).toBeGreaterThanOrEqual(countChatTokens(body, 'gpt-4o'))
      }),
      { numRuns: 300 },
    )
  })

  it.each(['chat-tools.json', 'responses-items.json', 'embeddings-batch.json'])('bounds the exact count of %s', (name) => {
    const body = fixture(name)
    const raw = Buffer.from(JSON.stringify(body))
    const exact = Math.max(countChatTokens(body, 'gpt-4o'), countResponsesTokens(body, 'gpt-4o'), countEmbeddingTokens(body, 'text-embedding-3-small'))
    expect(boundInputTokens(raw, body, 0)).toBeGreaterThanOrEqual(exact)
  })

  it('adds media parts at the model rate, priming and adapter overhead', () => {
    const body = fixture('chat-tools.json')
    const raw = Buffer.from(JSON.stringify(body))
    expect(boundInputTokens(raw, body, 1600)).toBe(raw.length + 1600)
    expect(boundInputTokens(raw, body, 1600, PRIMING_TOKENS)).toBe(raw.length + 1600 + PRIMING_TOKENS)
  })
})

describe('mediaParts', () => {
  it.each([
    ['OpenAI chat', fixture('chat-tools.json'), 1],
    ['OpenAI responses', fixture('responses-items.json'), 2],
    ['OpenAI embeddings', fixture('embeddings-batch.json'), 0],
    [
      'OpenAI chat audio and file',
      { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAA', format: 'wav' } }, { type: 'file', file: { file_id: 'file-1' } }] }] },
      2,
    ],
    [
      'Anthropic',
      {
        messages: [
          { role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAA' } }, { type: 'document', source: { type: 'url', url: 'https://x/y.pdf' } }, { type: 'text', text: 'hi' }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: 'BBB' } }] }] },
        ],
      },
      3,
    ],
    [
      'Gemini',
      { contents: [{ role: 'user', parts: [{ text: 'hi' }, { inlineData: { mimeType: 'image/png', data: 'AAA' } }, { fileData: { mimeType: 'video/mp4', fileUri: 'gs://b/v' } }, { inline_data: { mime_type: 'audio/wav', data: 'CCC' } }] }] },
      3,
    ],
    [
      'Bedrock Converse',
      {
        messages: [
          {
            role: 'user',
            content: [
              { text: 'compare' },
              { image: { format: 'png', source: { bytes: 'AAA' } } },
              { document: { format: 'pdf', name: 'doc', source: { bytes: 'BBB' } } },
              { video: { format: 'mp4', source: { s3Location: { uri: 's3://b/v' } } } },
            ],
          },
        ],
      },
      3,
    ],
    ['Mistral', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: 'https://x/y.png' }, { type: 'document_url', document_url: 'https://x/y.pdf' }] }] }, 2],
    ['a tool schema with an "image" property', { tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { image: { type: 'string' } } } } }] }, 0],
    ['primitives', 'just a string', 0],
  ])('counts %s', (_name, body, expected) => {
    expect(mediaParts(body)).toBe(expected)
  })

  it('walks deep nesting without recursion', () => {
    let body: unknown = { type: 'image', source: {} }
    for (let i = 0; i < 200_000; i++) body = i % 2 === 0 ? [body] : { nested: body }
    expect(mediaParts(body)).toBe(1)
    expect(() => countChatTokens({ messages: [{ role: 'user', content: body }] }, 'gpt-4o')).not.toThrow()
  })

  it('gives up past its node budget, and the bound then assumes the densest media', () => {
    const body = { items: Array.from({ length: 100 }, () => ({ a: {} })) }
    expect(mediaParts(body, 50)).toBeNull()
    expect(mediaParts(body, 1000)).toBe(0)
    // One object referenced millions of times: more values than the walk visits, in little memory.
    const dense = { parts: new Array<object>(MAX_MEDIA_WALK_NODES).fill({}) }
    expect(boundInputTokens(Buffer.alloc(150), dense, 100)).toBe(150 + 10 * 100)
  })
})

describe('encodingForModel', () => {
  it.each([
    ['gpt-4o', 'o200k_base'],
    ['gpt-4o-mini-2024-07-18', 'o200k_base'],
    ['gpt-4.1-nano', 'o200k_base'],
    ['gpt-4.5-preview', 'o200k_base'],
    ['o1-pro', 'o200k_base'],
    ['o3', 'o200k_base'],
    ['gpt-5-mini', 'o200k_base'],
    ['some-future-model', 'o200k_base'],
    ['ft:gpt-4o-mini-2024-07-18:org::abc', 'o200k_base'],
    ['gpt-4', 'cl100k_base'],
    ['gpt-4-turbo-2024-04-09', 'cl100k_base'],
    ['gpt-4-0613', 'cl100k_base'],
    ['gpt-3.5-turbo', 'cl100k_base'],
    ['gpt-35-turbo', 'cl100k_base'],
    ['ft:gpt-3.5-turbo-0125:org::abc', 'cl100k_base'],
    ['text-embedding-3-small', 'cl100k_base'],
    ['text-embedding-ada-002', 'cl100k_base'],
  ])('%s uses %s', (model, encoding) => {
    expect(encodingForModel(model)).toBe(encoding)
  })

  it('preloads an encoder once', async () => {
    await preloadEncoding('o200k_base')
    await preloadEncoding('o200k_base')
    expect(countTextTokens('hello world', 'o200k_base')).toBe(2)
  })
})

const strings = (values: string[], encoding: Encoding = 'o200k_base'): number => values.reduce((sum, s) => sum + ref(s, encoding), 0)

describe('OpenAI request counters', () => {
  it('counts a chat body with tools, tool calls and a json_schema format', () => {
    const body = fixture('chat-tools.json')
    const f = body as { messages: Array<Record<string, unknown>>; tools: unknown; response_format: unknown }
    const m = f.messages as Array<{ content: unknown; tool_calls?: Array<{ function: { arguments: string } }> }>
    const expected =
      3 +
      (4 + strings(['system', m[0]!.content as string])) +
      (4 + strings(['user', 'ada', 'text', 'What is the weather in Zürich? Also describe this picture: 🌦️'])) +
      (4 + 8 + strings(['assistant', 'call_9f8e7d6c', 'function', 'get_weather', m[2]!.tool_calls![0]!.function.arguments])) +
      (4 + strings(['tool', 'call_9f8e7d6c', m[3]!.content as string])) +
      (4 + strings(['assistant', 'It is 7 °C with light rain in Zürich.'])) +
      16 +
      strings([JSON.stringify(f.tools), JSON.stringify(f.response_format)])
    expect(countChatTokens(body, 'gpt-4o')).toBe(expected)
  })

  it('counts a chat body with the model encoding', () => {
    const body = { messages: [{ role: 'user', content: '東京は日本の首都です。 Привет, мир!' }] }
    expect(countChatTokens(body, 'gpt-4')).toBe(3 + 4 + strings(['user', body.messages[0]!.content], 'cl100k_base'))
    expect(countChatTokens(body, 'gpt-4o')).toBe(3 + 4 + strings(['user', body.messages[0]!.content], 'o200k_base'))
  })

  it('counts a responses body with items, skipping media and bounding encrypted reasoning by bytes', () => {
    const body = fixture('responses-items.json')
    const f = body as { instructions: string; input: Array<Record<string, unknown>>; tools: unknown; text: { format: unknown } }
    const reasoning = f.input[1] as { encrypted_content: string }
    const call = f.input[2] as { arguments: string }
    const output = f.input[3] as { output: string }
    const expected =
      3 +
      (4 + ref(f.instructions)) +
      (4 + strings(['user', 'input_text', "Here is the quarterly report and the chart. Keep it under 100 words, s'il vous plaît."])) +
      (4 + strings(['reasoning', 'rs_123']) + reasoning.encrypted_content.length) +
      (4 + strings(['function_call', 'call_1', 'lookup_revenue', call.arguments])) +
      (4 + strings(['function_call_output', 'call_1', output.output])) +
      16 +
      strings([JSON.stringify(f.tools), JSON.stringify(f.text.format)])
    expect(countResponsesTokens(body, 'o4-mini')).toBe(expected)
    expect(countResponsesTokens({ input: 'Say hi', instructions: 'Be brief' }, 'gpt-5')).toBe(3 + 4 + ref('Be brief') + 4 + ref('Say hi'))
  })

  it('counts embeddings inputs: string, strings, token arrays', () => {
    const body = fixture('embeddings-batch.json')
    expect(countEmbeddingTokens(body, 'text-embedding-3-small')).toBe(strings(body.input as string[], 'cl100k_base'))
    expect(countEmbeddingTokens({ input: 'hello world' }, 'text-embedding-3-large')).toBe(ref('hello world', 'cl100k_base'))
    expect(countEmbeddingTokens({ input: [1, 2, 3, 4] }, 'text-embedding-3-small')).toBe(4)
    expect(countEmbeddingTokens({ input: [[1, 2], [3], []] }, 'text-embedding-3-small')).toBe(3)
    expect(countEmbeddingTokens({ input: [] }, 'text-embedding-3-small')).toBe(0)
  })
})

describe('early stop', () => {
  const words = 'The quick brown fox jumps over the lazy dog. 東京は日本の首都です。 '
  const big = words.repeat(Math.ceil(1_000_000 / words.length))

  it('stops a long text as soon as the count passes the limit', () => {
    const full = countTextTokens(big, 'o200k_base')
    const started = performance.now()
    const partial = countTextTokens(big, 'o200k_base', 1000)
    const elapsed = performance.now() - started
    expect(partial).toBeGreaterThan(1000)
    expect(partial).toBeLessThan(1010)
    expect(full).toBeGreaterThan(200_000)
    expect(elapsed).toBeLessThan(50)
  })

  it('stops the request counters too', () => {
    const chat = { messages: [{ role: 'user', content: big }, { role: 'user', content: big }] }
    const count = countChatTokens(chat, 'gpt-4o', 500)
    expect(count).toBeGreaterThan(500)
    expect(count).toBeLessThan(520)
    expect(countResponsesTokens({ input: big }, 'gpt-4o', 500)).toBeLessThan(520)
    expect(countEmbeddingTokens({ input: [big, big] }, 'text-embedding-3-small', 500)).toBeLessThan(520)
  })

  it('counts a pathological run without a break in well under a second', () => {
    const run = 'q'.repeat(1_000_000)
    const started = performance.now()
    expect(countTextTokens(run, 'o200k_base')).toBeLessThanOrEqual(run.length)
    expect(performance.now() - started).toBeLessThan(2000)
  })
})
