import fc from 'fast-check'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { ProxyError } from '../../src/errors.js'
import { appendMembers, lastMemberEnd, spliceMembers, topLevelMembers } from '../../src/http/json-members.js'
import { BIG_BODY_BYTES } from '../../src/http/raw-body.js'
import { createAnthropicAdapter } from '../../src/providers/anthropic.js'
import { createAzureAdapter } from '../../src/providers/azure.js'
import { createBedrockAdapter } from '../../src/providers/bedrock.js'
import { createGeminiAdapter } from '../../src/providers/gemini.js'
import { createMistralAdapter } from '../../src/providers/mistral.js'
import { createOpenAiAdapter } from '../../src/providers/openai.js'
import { fingerprintRequest } from '../../src/loop/fingerprint.js'
import { LOOP_SHAPES } from '../../src/loop/shapes/index.js'
import type { LoopShape } from '../../src/loop/types.js'
import type { ProviderAdapter, RouteMatch } from '../../src/providers/types.js'
import { assembleCountBody } from '../../src/proxy/count-body.js'
import { LAZY_MAX_MEMBERS, LAZY_MIN_BYTES, readLazyBody, readParsedBody, readRequestBody, SPLICE_MIN_BYTES, type RequestBody } from '../../src/proxy/request-body.js'
import { createTokenCounter } from '../../src/tokens/worker.js'

// Spied on (same behaviour), so a test can tell that a body was not walked for its members.
vi.mock('../../src/http/json-members.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/http/json-members.js')>()
  return { ...actual, topLevelMembers: vi.fn(actual.topLevelMembers) }
})

// A big body (1 MiB or more) is read in the counting worker: every fact the pipeline takes from it is the
// one the small path (everything on the event loop) takes from the same bytes, and the bytes forwarded
// after the adapter's edits read as the small path's re-serialized body.

const worker = createTokenCounter()
afterAll(() => worker.close())
type Reader = (raw: Buffer, shape: LoopShape | null) => Promise<RequestBody>
/** The big path (the worker reads a body of BIG_BODY_BYTES or more), and the small path (all on the event loop). */
// Both read in one promise here: a small body is read in the caller's turn (and refused by a throw).
const bigPath = async (raw: Buffer, shape: LoopShape | null, counter = worker): Promise<RequestBody> => readRequestBody(raw, shape, counter)
const smallPath: Reader = async (raw, shape) => readParsedBody(raw, shape)

const PAD = 'The quick brown fox jumps over the lazy dog, ünïcödé 🦊 and "quotes" \\ too. '.repeat(Math.ceil(BIG_BODY_BYTES / 70))
const image = { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }
const tools = [{ type: 'function', function: { name: 'search', parameters: { type: 'object' } } }]
const chat = (extra: Record<string, unknown>) => ({
  model: 'gpt-4o',
  stream: true,
  max_tokens: 900,
  messages: [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: [{ type: 'text', text: PAD }, image] },
    { role: 'assistant', content: 'ok' },
    ...Array.from({ length: 2000 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `step ${i}` })),
  ],
  tools,
  ...extra,
})

const cases: Array<[string, ProviderAdapter, string, Record<string, unknown>]> = [
  ['openai chat', createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null }), '/v1/chat/completions', chat({ n: 2 })],
  ['openai responses', createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null }), '/v1/responses', { model: 'gpt-4o', stream: true, instructions: 'be brief', max_output_tokens: 900, input: [{ role: 'user', content: [{ type: 'input_text', text: PAD }, { type: 'input_image', image_url: 'data:,' }] }] }],
  ['openai embeddings', createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null }), '/v1/embeddings', { model: 'text-embedding-3-small', input: [PAD, 'short'] }],
  ['azure chat', createAzureAdapter({ endpoint: 'http://u', apiKey: null }), '/openai/deployments/my-gpt4o/chat/completions', chat({ model: undefined })],
  ['mistral chat', createMistralAdapter({ baseUrl: 'http://u', apiKey: null }), '/v1/chat/completions', chat({ model: 'mistral-large-latest', safe_prompt: true })],
  [
    'anthropic messages',
    createAnthropicAdapter({ baseUrl: 'http://u', apiKey: null }),
    '/v1/messages',
    { model: 'claude-sonnet-4-5', max_tokens: 900, stream: true, system: 'be brief', tools: [{ name: 'search', input_schema: { type: 'object' } }], messages: [{ role: 'user', content: [{ type: 'text', text: PAD }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }, { role: 'assistant', content: 'ok' }, { role: 'user', content: 'go on' }] },
  ],
  [
    'gemini',
    createGeminiAdapter({ baseUrl: 'http://u', apiKey: null }),
    '/v1beta/models/gemini-2.5-flash:generateContent',
    { contents: [{ role: 'user', parts: [{ text: PAD }, { inlineData: { mimeType: 'image/png', data: 'AAAA' } }] }, { role: 'model', parts: [{ text: 'ok' }] }], systemInstruction: { parts: [{ text: 'be brief' }] }, generationConfig: { maxOutputTokens: 900, candidateCount: 1 } },
  ],
  [
    'bedrock converse',
    createBedrockAdapter({ baseUrl: 'http://u', apiKey: null, aws: null, region: 'us-east-1' }),
    '/model/amazon.nova-pro-v1:0/converse-stream',
    { messages: [{ role: 'user', content: [{ text: PAD }, { image: { format: 'png', source: { bytes: 'AAAA' } } }] }], system: [{ text: 'be brief' }], inferenceConfig: { maxTokens: 900 } },
  ],
  [
    'bedrock invoke',
    createBedrockAdapter({ baseUrl: 'http://u', apiKey: null, aws: null, region: 'us-east-1' }),
    '/model/anthropic.claude-sonnet-4-5-v1:0/invoke',
    { anthropic_version: 'bedrock-2023-05-31', max_tokens: 900, system: 'be brief', messages: [{ role: 'user', content: [{ type: 'text', text: PAD }] }, { role: 'assistant', content: 'ok' }] },
  ],
]

const pick = (body: Record<string, unknown>, fields: string[]) => Object.fromEntries(fields.filter((f) => body[f] !== undefined).map((f) => [f, body[f]]))
/** The count requests the adapters built from parsed values before they were assembled from member spans. */
const OBJECT_BUILT_COUNT: Record<string, (body: Record<string, unknown>) => unknown> = {
  'anthropic messages': (body) => pick(body, ['model', 'messages', 'system', 'tools', 'tool_choice', 'thinking', 'mcp_servers']),
  gemini: (body) => ({ generateContentRequest: { model: 'models/gemini-2.5-flash', ...pick(body, ['contents', 'systemInstruction', 'system_instruction', 'tools', 'toolConfig', 'tool_config']) } }),
  'bedrock converse': (body) => ({ input: { converse: pick(body, ['messages', 'system', 'toolConfig', 'additionalModelRequestFields']) } }),
  'bedrock invoke': (body) => ({ input: { invokeModel: { body: Buffer.from(JSON.stringify(body)).toString('base64') } } }),
}

/** The largest string `JSON.parse` was given while `run` ran: a big body's large members must not be parsed here. */
async function largestParse<T>(run: () => Promise<T>): Promise<{ result: T; chars: number }> {
  const spy = vi.spyOn(JSON, 'parse')
  try {
    const result = await run()
    return { result, chars: Math.max(0, ...spy.mock.calls.map(([text]) => String(text).length)) }
  } finally {
    spy.mockRestore()
  }
}

/** Everything the pipeline takes from a body, in order, then the bytes it forwards after lowering the cap to 50. */
async function facts(adapter: ProviderAdapter, route: RouteMatch, path: string, raw: Buffer, reader: Reader) {
  const read = await reader(raw, adapter.loopShape?.(route) ?? null)
  const body = read.json
  // Every decision before forwarding, the count request included, reads only small members on the event loop.
  const { result: seen, chars: parsedChars } = await largestParse(async () => {
    const described = adapter.describe(route, body)
    const scan = await read.scan()
    const how = adapter.exactInput(route, path, body, described.model, undefined, scan)
    return {
      described,
      hides: adapter.hidesReasoning?.(route, body, false) ?? null,
      referenced: adapter.referencedInput?.(route, body, {}) ?? null,
      scan,
      bound: adapter.boundInputTokens(route, body, raw, 258, scan),
      fingerprint: read.fingerprint(),
      exact: JSON.stringify(how),
      countRequest: how?.kind === 'endpoint' ? await assembleCountBody(how.body, read) : null,
    }
  })
  const countRequest = seen.countRequest === null ? null : (JSON.parse(seen.countRequest.toString('utf8')) as unknown)
  const changed = adapter.prepareBody(route, body, seen.described, 50)
  return { seen: { ...seen, countRequest }, parsedChars, changed, forwarded: JSON.parse((changed ? await read.edited() : raw).toString('utf8')) as unknown, read }
}

describe('big request bodies', () => {
  it.each(cases)('%s: the facts and the forwarded body are the small path’s', async (_name, adapter, path, body) => {
    const raw = Buffer.from(JSON.stringify(body))
    expect(raw.length).toBeGreaterThanOrEqual(BIG_BODY_BYTES)
    const route = adapter.findRoute('POST', path, new URLSearchParams('api-version=2024-10-21')) as RouteMatch
    const big = await facts(adapter, route, path, raw, bigPath)
    const small = await facts(adapter, route, path, raw, smallPath)
    // The big path ran (its large members parse on first read), and found a conversation where the route has one.
    expect(Object.values(Object.getOwnPropertyDescriptors(big.read.json)).some((d) => d.get !== undefined)).toBe(true)
    expect(Object.values(Object.getOwnPropertyDescriptors(small.read.json)).some((d) => d.get !== undefined)).toBe(false)
    if (adapter.loopShape?.(route)) expect(big.seen.fingerprint).not.toBeNull()
    expect(big.parsedChars).toBeLessThanOrEqual(64 * 1024)
    expect(big.seen).toEqual(small.seen)
    // A count endpoint gets what it got when the request was built from parsed values.
    expect(big.seen.countRequest).toEqual(OBJECT_BUILT_COUNT[_name]?.(body) ?? null)
    expect(big.changed).toBe(small.changed)
    expect(big.forwarded).toEqual(small.forwarded)
    // The big path forwards the client's bytes with only the edited members spliced in.
    if (big.changed) expect(Buffer.from(JSON.stringify(big.forwarded)).length).toBeLessThan(raw.length + 200)
  }, 60_000)

  it('Azure under a legacy api-version: the big body is rewritten by splicing its small members, as the small path rewrites it', async () => {
    const adapter = createAzureAdapter({ endpoint: 'http://u', apiKey: null })
    const path = '/openai/deployments/my-gpt4o/chat/completions'
    const body = chat({ model: undefined, stream_options: { include_usage: false }, max_completion_tokens: 900, max_tokens: undefined })
    const raw = Buffer.from(JSON.stringify(body))
    const sent = async (reader: Reader) => {
      const route = adapter.findRoute('POST', path, new URLSearchParams('api-version=2024-06-01')) as RouteMatch
      const read = await reader(raw, adapter.loopShape?.(route) ?? null)
      return largestParse(async () => {
        expect(adapter.prepareBody(route, read.json, adapter.describe(route, read.json), 50)).toBe(true)
        const edited = await read.edited()
        return adapter.buildUpstream({ route, path, query: 'api-version=2024-06-01', headers: {}, credential: null, body: edited }).body
      })
    }
    const [big, small] = [await sent(bigPath), await sent(smallPath)]
    expect(big.chars).toBeLessThanOrEqual(64 * 1024)
    const forwarded = JSON.parse(big.result.toString('utf8')) as Record<string, unknown>
    expect(forwarded).toEqual(JSON.parse(small.result.toString('utf8')))
    expect(forwarded).not.toHaveProperty('stream_options')
    expect(forwarded).not.toHaveProperty('max_completion_tokens')
    expect(forwarded.max_tokens).toBe(50)
    expect(big.result.length).toBeLessThan(raw.length)
  }, 60_000)

  it('reads a small body in the caller\'s turn, without a promise', () => {
    const read = readParsedBody(Buffer.from('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'), null)
    expect(read).not.toBeInstanceOf(Promise)
    expect((read as RequestBody).json.model).toBe('gpt-4o')
    expect(() => readParsedBody(Buffer.from('{"model":"a","model":"b"}'), null)).toThrow(/appears twice/)
  })

  it('refuses a repeated key at any depth, invalid JSON and a body that is not an object, as the small path does', async () => {
    const shape = createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null }).loopShape?.({ operation: 'chat', pathModel: null, pathStream: null }) ?? null
    const bodies = [
      `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"${'x'.repeat(BIG_BODY_BYTES)}","type":"input_file"}]}]}`,
      `{"model":"m","stream":false,"messages":[{"role":"user","content":"${'x'.repeat(BIG_BODY_BYTES)}"}],"str\\u0065am":true}`,
      `{"model":"m","messages":[{"role":"user","content":"${'x'.repeat(BIG_BODY_BYTES)}"}]`,
      `[{"model":"m","messages":[{"role":"user","content":"${'x'.repeat(BIG_BODY_BYTES)}"}]}]`,
    ]
    for (const text of bodies) {
      const raw = Buffer.from(text)
      const refusal = (reader: Reader) => reader(raw, shape).then(() => null, (error: unknown) => error)
      const [big, small] = [await refusal(bigPath), await refusal(smallPath)]
      expect(big).toBeInstanceOf(ProxyError)
      expect((big as ProxyError).message).toBe((small as ProxyError).message)
    }
  }, 60_000)

  it('parses large members on the event loop only when they are read, and forwards an unedited body as it came', async () => {
    const raw = Buffer.from(JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: PAD }], max_tokens: 10 }))
    const read = await readRequestBody(raw, null, worker)
    expect(Object.keys(read.json)).toEqual(['model', 'messages', 'max_tokens'])
    expect(Object.getOwnPropertyDescriptor(read.json, 'messages')?.get).toBeTypeOf('function')
    expect(Object.getOwnPropertyDescriptor(read.json, 'model')?.value).toBe('gpt-4o')
    expect(await read.edited()).toBe(raw)
    read.json.max_tokens = 5
    expect((await read.edited()).toString('utf8')).toBe(raw.toString('utf8').replace('"max_tokens":10', '"max_tokens":5'))
  }, 60_000)

  it('a big body the worker has no room for waits for room, then is refused as retryable: never parsed on the event loop', async () => {
    const raw = Buffer.from(JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: PAD }], max_tokens: 10 }))
    // Queues with room for one big body, each filled by a count of it (the worker builds an encoder first).
    const fill = (counter: ReturnType<typeof createTokenCounter>) => counter.count({ counter: 'chat', model: 'gpt-4o', factor: 1, raw, limit: Number.MAX_SAFE_INTEGER })
    const refusing = createTokenCounter({ maxPendingBytes: raw.length, maxRoomWaitMs: 100 })
    const waiting = createTokenCounter({ maxPendingBytes: raw.length, maxRoomWaitMs: 30_000 })
    try {
      void fill(refusing)
      const started = performance.now()
      const { result: refusal, chars } = await largestParse(() => bigPath(raw, null, refusing).then(() => null, (error: unknown) => error))
      expect(performance.now() - started).toBeGreaterThanOrEqual(95)
      expect(refusal).toBeInstanceOf(ProxyError)
      expect(refusal).toMatchObject({ code: 'budget_unavailable', status: 503, retryAfterSeconds: 1 })
      expect(chars).toBeLessThanOrEqual(64 * 1024)
      // Once the count leaves the queue, a waiting body gets its room and is read by the worker.
      const order: string[] = []
      const counted = fill(waiting).then((c) => {
        order.push('count')
        return c
      })
      const read = await bigPath(raw, null, waiting).then((r) => {
        order.push('read')
        return r
      })
      expect(await counted).not.toBeNull()
      expect(order).toEqual(['count', 'read'])
      expect(Object.getOwnPropertyDescriptor(read.json, 'messages')?.get).toBeTypeOf('function')
    } finally {
      await Promise.all([refusing.close(), waiting.close()])
    }
  }, 60_000)
})

// Issue 12: a body of SPLICE_MIN_BYTES or more that the adapter edits is forwarded as its own bytes with the
// edited members spliced in, not re-serialized whole; what the provider reads is the same.
describe('edited bodies under 1 MiB', () => {
  const MID = 'a step of an agent, "quoted" \\ and ünïcödé. '.repeat(Math.ceil(SPLICE_MIN_BYTES / 40))
  const midCases = cases.map(([name, adapter, path, body]) => [name, adapter, path, JSON.parse(JSON.stringify(body).replaceAll(JSON.stringify(PAD).slice(1, -1), JSON.stringify(MID).slice(1, -1)))] as const)

  it.each(midCases)('%s: what is forwarded reads as the re-serialized body, and keeps the client\'s bytes', async (_name, adapter, path, body) => {
    const raw = Buffer.from(JSON.stringify(body))
    expect(raw.length).toBeGreaterThanOrEqual(SPLICE_MIN_BYTES)
    expect(raw.length).toBeLessThan(BIG_BODY_BYTES)
    const route = adapter.findRoute('POST', path, new URLSearchParams('api-version=2024-10-21')) as RouteMatch
    const sent = async (editable: boolean) => {
      const read = await smallPath(raw, adapter.loopShape?.(route) ?? null)
      const described = adapter.describe(route, read.json)
      // What the pipeline reads before forwarding (the walk, the fingerprint) leaves nothing marked as edited.
      await read.scan()
      read.fingerprint()
      const changed = adapter.prepareBody(route, editable ? read.editable() : read.json, described, 50)
      return { changed, bytes: changed ? await read.edited() : raw }
    }
    const [spliced, whole] = [await sent(true), await sent(false)]
    expect(spliced.changed).toBe(whole.changed)
    expect(JSON.parse(spliced.bytes.toString('utf8'))).toEqual(JSON.parse(whole.bytes.toString('utf8')))
    // The large members are the client's bytes, unparsed and unserialized.
    const large = JSON.stringify(MID).slice(1, -1)
    expect(spliced.bytes.toString('utf8')).toContain(large)
    if (spliced.changed) expect(spliced.bytes.length).toBeLessThan(raw.length + 100)
  })

  it('keeps every byte the client chose outside the edited members, and edits an object in place or anew', async () => {
    const text = `{ "model" : "gpt-4o", "stream": true, "messages": [ {"role":"user","content":"caf\\u00e9 ${'x'.repeat(SPLICE_MIN_BYTES)}"} ],\n "temperature": 1.0e0, "stream_options": {"include_usage": false, "x": 1} }`
    const adapter = createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null })
    const route = adapter.findRoute('POST', '/v1/chat/completions', new URLSearchParams()) as RouteMatch
    const read = readParsedBody(Buffer.from(text), adapter.loopShape?.(route) ?? null) as RequestBody
    const described = adapter.describe(route, read.json)
    expect(adapter.prepareBody(route, read.editable(), described, null)).toBe(true)
    const sent = (await read.edited()).toString('utf8')
    expect(sent).toBe(text.replace('{"include_usage": false, "x": 1}', '{"include_usage":true,"x":1}'))
    // An object edited in place (Bedrock writes its cap into inferenceConfig) is serialized anew too.
    const bedrock = createBedrockAdapter({ baseUrl: 'http://u', apiKey: null, aws: null, region: 'us-east-1' })
    const converse = bedrock.findRoute('POST', '/model/amazon.nova-pro-v1:0/converse', new URLSearchParams()) as RouteMatch
    const nova = `{"messages":[{"role":"user","content":[{"text":"${'y'.repeat(SPLICE_MIN_BYTES)}"}]}], "inferenceConfig": {"maxTokens": 900,"topP":1.0}}`
    const novaRead = readParsedBody(Buffer.from(nova), bedrock.loopShape?.(converse) ?? null) as RequestBody
    expect(bedrock.prepareBody(converse, novaRead.editable(), bedrock.describe(converse, novaRead.json), 50)).toBe(true)
    expect((await novaRead.edited()).toString('utf8')).toBe(nova.replace('{"maxTokens": 900,"topP":1.0}', '{"maxTokens":50,"topP":1}'))
    // Members removed (Azure under a legacy api-version), a member added.
    const azure = createAzureAdapter({ endpoint: 'http://u', apiKey: null })
    const legacy = azure.findRoute('POST', '/openai/deployments/d/chat/completions', new URLSearchParams('api-version=2024-06-01')) as RouteMatch
    const old = `{"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":900,"messages":[{"role":"user","content":"${'w'.repeat(SPLICE_MIN_BYTES)}"}]}`
    const oldRead = readParsedBody(Buffer.from(old), azure.loopShape?.(legacy) ?? null) as RequestBody
    expect(azure.prepareBody(legacy, oldRead.editable(), azure.describe(legacy, oldRead.json), 50)).toBe(true)
    expect((await oldRead.edited()).toString('utf8')).toBe(`{"stream":true,"messages":[{"role":"user","content":"${'w'.repeat(SPLICE_MIN_BYTES)}"}],"max_tokens":50}`)
  })

  it('adds a stream\'s include_usage after the last member without walking the body, byte for byte as the splice adds it', async () => {
    const adapter = createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null })
    const route = adapter.findRoute('POST', '/v1/chat/completions', new URLSearchParams()) as RouteMatch
    const long = 'x'.repeat(SPLICE_MIN_BYTES)
    // Last values of every kind (a string ending in a brace, an empty object and array, literals, a number), spaces around the braces.
    const lasts = ['"ends with {"', '{}', '[]', 'true', 'null', '-1.5e3', '{"a":[1,{"b":"}"}]}', '"\\\\"']
    for (const last of lasts) {
      for (const [open, close] of [['{', '}'], [' \n{ ', ' \r\n}\t ']]) {
        const text = `${open}"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"${long}"}], "last" : ${last}${close}`
        const raw = Buffer.from(text)
        const read = readParsedBody(raw, adapter.loopShape?.(route) ?? null) as RequestBody
        expect(adapter.prepareBody(route, read.editable(), adapter.describe(route, read.json), null)).toBe(true)
        vi.mocked(topLevelMembers).mockClear()
        const sent = await read.edited()
        expect(topLevelMembers).not.toHaveBeenCalled()
        expect(sent.toString('utf8')).toBe((await spliceMembers(raw, topLevelMembers(raw), [{ key: 'stream_options', json: '{"include_usage":true}' }])).toString('utf8'))
        expect(JSON.parse(sent.toString('utf8'))).toEqual({ ...JSON.parse(text), stream_options: { include_usage: true } })
      }
    }
    // An empty object has no last member; a member the body had, once touched, is spliced in its place.
    expect(lastMemberEnd(Buffer.from(' { \n} '))).toBe(-1)
    expect((await appendMembers(Buffer.from('{"a":1 }'), lastMemberEnd(Buffer.from('{"a":1 }')), [{ key: 'b', json: '2' }])).toString()).toBe('{"a":1,"b":2 }')
    const had = readParsedBody(Buffer.from(`{"model":"gpt-4o","stream":true,"stream_options":{"x":1},"messages":[{"role":"user","content":"${long}"}]}`), null) as RequestBody
    expect(adapter.prepareBody(route, had.editable(), adapter.describe(route, had.json), null)).toBe(true)
    vi.mocked(topLevelMembers).mockClear()
    expect((await had.edited()).toString('utf8')).toBe(`{"model":"gpt-4o","stream":true,"stream_options":{"x":1,"include_usage":true},"messages":[{"role":"user","content":"${long}"}]}`)
    expect(topLevelMembers).toHaveBeenCalledTimes(1)
  })

  it('forwards a body edited to what it was as it came, and re-serializes a small one as before', async () => {
    const raw = Buffer.from(`{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"${'z'.repeat(SPLICE_MIN_BYTES)}"}]}`)
    const read = readParsedBody(raw, null) as RequestBody
    read.editable().max_tokens = 10
    expect((await read.edited()).toString('utf8')).toBe(raw.toString('utf8'))
    // A body whose members were only read (scalars) is forwarded as it came.
    const unread = readParsedBody(raw, null) as RequestBody
    expect(unread.editable().max_tokens).toBe(10)
    expect(await unread.edited()).toBe(raw)
    const small = readParsedBody(Buffer.from('{ "model": "gpt-4o", "max_tokens": 10 }'), null) as RequestBody
    small.editable().max_tokens = 5
    expect((await small.edited()).toString('utf8')).toBe('{"model":"gpt-4o","max_tokens":5}')
  })
})

// Issue 12: a body of LAZY_MIN_BYTES up to 1 MiB is not parsed whole: its validating scan refuses what JSON.parse
// and the key scan refuse, each top-level member is parsed when first read, and the fingerprint parses only the
// conversation items it hashes. Every fact, refusal and forwarded byte is the whole-parse path's (readParsedBody).
describe('lazily read bodies (LAZY_MIN_BYTES up to 1 MiB)', () => {
  const lazyPath: Reader = async (raw, shape) => readLazyBody(raw, shape)
  const LONG = 'a step of an agent, "quoted" \\ and ünïcödé 🦊. '.repeat(Math.ceil((2 * LAZY_MIN_BYTES) / 40))
  const lazyCases = cases.map(([name, adapter, path, body]) => [name, adapter, path, JSON.parse(JSON.stringify(body).replaceAll(JSON.stringify(PAD).slice(1, -1), JSON.stringify(LONG).slice(1, -1)))] as const)
  // An agent's step: instructions, tools, then tool calls and results, no media (nothing for the walk to find).
  const agent = {
    model: 'gpt-4o',
    messages: [
      { role: 'system', content: `You are a coding agent. ${LONG.slice(0, 2000)}` },
      { role: 'user', content: 'fix the failing test' },
      ...Array.from({ length: 40 }, (_, i) =>
        i % 2 === 0
          ? { role: 'assistant', content: null, tool_calls: [{ id: `call_${i}`, type: 'function', function: { name: 'read_file', arguments: `{"path":"src/f${i}.ts"}` } }] }
          : { role: 'tool', tool_call_id: `call_${i - 1}`, content: `export const f${i} = () => ${i}\n${LONG.slice(0, 600)}` },
      ),
    ],
    tools: Array.from({ length: 12 }, (_, i) => ({ type: 'function', function: { name: `tool_${i}`, description: LONG.slice(0, 300), parameters: { type: 'object', properties: { path: { type: 'string' } } } } })),
    max_tokens: 4096,
  }
  const openai = createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null })
  const chatRoute = openai.findRoute('POST', '/v1/chat/completions', new URLSearchParams()) as RouteMatch
  const chatShape = openai.loopShape?.(chatRoute) ?? null

  it('reads bodies from LAZY_MIN_BYTES up to BIG_BODY_BYTES lazily, smaller ones whole', async () => {
    const sized = (bytes: number) => Buffer.from(JSON.stringify({ model: 'gpt-4o', pad: 'x'.repeat(bytes - 27) }))
    expect(sized(LAZY_MIN_BYTES).length).toBe(LAZY_MIN_BYTES)
    const getters = async (raw: Buffer) => Object.values(Object.getOwnPropertyDescriptors((await readRequestBody(raw, null, worker)).json)).some((d) => d.get !== undefined)
    expect(await getters(sized(LAZY_MIN_BYTES - 1))).toBe(false)
    expect(await getters(sized(LAZY_MIN_BYTES))).toBe(true)
    expect(await getters(sized(BIG_BODY_BYTES - 1))).toBe(true)
  }, 60_000)

  it(`parses a body of more than LAZY_MAX_MEMBERS top-level members whole (defining each would hold the loop longer), with the same facts and refusals`, async () => {
    const dense = (count: number, extra = '') =>
      Buffer.from(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],${Array.from({ length: count - 2 }, (_, i) => `"k${i}":"${'v'.repeat(300)}"`).join(',')}${extra}}`)
    const getters = (json: object) => Object.values(Object.getOwnPropertyDescriptors(json)).some((d) => d.get !== undefined)
    const atLimit = await readRequestBody(dense(LAZY_MAX_MEMBERS), null, worker)
    expect(atLimit.raw.length).toBeGreaterThanOrEqual(LAZY_MIN_BYTES)
    expect(getters(atLimit.json)).toBe(true)
    const over = dense(LAZY_MAX_MEMBERS + 1)
    const read = await readRequestBody(over, chatShape, worker)
    expect(getters(read.json)).toBe(false)
    expect(read.json).toEqual(JSON.parse(over.toString()))
    const whole = await readParsedBody(over, chatShape)
    expect(read.fingerprint()).toEqual(whole.fingerprint())
    expect(await read.scan()).toEqual(await whole.scan())
    // The scan's verdicts still hold: a repeated key is refused, as is a body that is not JSON.
    await expect(async () => readRequestBody(dense(LAZY_MAX_MEMBERS + 1, ',"k0":"again"'), null, worker)).rejects.toThrow(/appears twice/)
    await expect(async () => readRequestBody(dense(LAZY_MAX_MEMBERS + 1, ',"k0":tru'), null, worker)).rejects.toThrow(/not valid JSON/)
  })

  it.each(lazyCases)('%s: the facts and the forwarded body are the whole-parse path\'s', async (_name, adapter, path, body) => {
    const raw = Buffer.from(JSON.stringify(body))
    expect(raw.length).toBeGreaterThanOrEqual(LAZY_MIN_BYTES)
    const route = adapter.findRoute('POST', path, new URLSearchParams('api-version=2024-10-21')) as RouteMatch
    const [lazy, whole] = [await facts(adapter, route, path, raw, lazyPath), await facts(adapter, route, path, raw, smallPath)]
    expect(Object.values(Object.getOwnPropertyDescriptors(lazy.read.json)).some((d) => d.get !== undefined)).toBe(true)
    expect(lazy.seen).toEqual(whole.seen)
    expect(lazy.changed).toBe(whole.changed)
    expect(lazy.forwarded).toEqual(whole.forwarded)
    // Edited through editable(), as the pipeline edits: the same bytes, byte for byte.
    const sent = async (reader: Reader) => {
      const read = await reader(raw, adapter.loopShape?.(route) ?? null)
      const described = adapter.describe(route, read.json)
      await read.scan()
      read.fingerprint()
      const changed = adapter.prepareBody(route, read.editable(), described, 50)
      const members = Object.keys(body).map((key) => read.member(key))
      return { changed, bytes: changed ? await read.edited() : raw, members }
    }
    const [lazySent, wholeSent] = [await sent(lazyPath), await sent(smallPath)]
    expect(lazySent.changed).toBe(wholeSent.changed)
    expect(lazySent.bytes.equals(wholeSent.bytes)).toBe(true)
    expect(lazySent.members).toEqual(wholeSent.members)
  })

  it('parses only the small members and the conversation items the fingerprint hashes, and forwards the same bytes', async () => {
    for (const stream of [false, true]) {
      const raw = Buffer.from(JSON.stringify({ ...agent, stream }))
      const [lazy, whole] = [await facts(openai, chatRoute, '/v1/chat/completions', raw, lazyPath), await facts(openai, chatRoute, '/v1/chat/completions', raw, smallPath)]
      expect(lazy.seen.fingerprint).not.toBeNull()
      expect(lazy.seen).toEqual(whole.seen)
      expect(lazy.forwarded).toEqual(whole.forwarded)
      // No read before forwarding parsed the conversation whole (the OpenAI adapter reads `tools` for hosted tools).
      const longest = Math.max(...agent.messages.map((m) => JSON.stringify(m).length))
      expect(lazy.parsedChars).toBeLessThanOrEqual(Math.max(longest, JSON.stringify(agent.tools).length))
      const read = (await lazyPath(raw, chatShape)) as RequestBody
      const { chars } = await largestParse(async () => {
        openai.describe(chatRoute, read.json)
        await read.scan()
        return read.fingerprint()
      })
      expect(chars).toBeLessThanOrEqual(longest)
      // The body keeps its conversation unread, behind its accessor.
      expect(Object.getOwnPropertyDescriptor(read.json, 'messages')?.get).toBeTypeOf('function')
      expect(Object.getOwnPropertyDescriptor(read.json, 'tools')?.get).toBeTypeOf('function')
      // Once the conversation was read whole (an exact count), the fingerprint reads it from there: the same value.
      const fingerprint = read.fingerprint()
      expect((read.json.messages as unknown[]).length).toBe(agent.messages.length)
      expect(read.fingerprint()).toEqual(fingerprint)
    }
  })

  it('fingerprints without parsing a large member the conversation shape does not read', async () => {
    const longest = Math.max(...agent.messages.map((m) => JSON.stringify(m).length))
    const schema = { type: 'object', properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`field_${i}`, { type: 'string', description: `the ${i}th field` }])) }
    const body = { ...agent, response_format: { type: 'json_schema', json_schema: { name: 'answer', schema } } }
    expect(JSON.stringify(body.response_format).length).toBeGreaterThan(2 * longest)
    const read = (await lazyPath(Buffer.from(JSON.stringify(body)), chatShape)) as RequestBody
    const { result, chars } = await largestParse(async () => read.fingerprint())
    expect(chars).toBeLessThanOrEqual(longest)
    expect(result).toEqual((await smallPath(Buffer.from(JSON.stringify(body)), chatShape)).fingerprint())
  })

  it('gives bodies of one shape the same accessors (one hidden class), and reads any number of distinct members', async () => {
    const [a, b] = [await lazyPath(Buffer.from(JSON.stringify({ ...agent, stream: true })), chatShape), await lazyPath(Buffer.from(JSON.stringify(agent)), chatShape)]
    for (const key of ['messages', 'tools']) expect(Object.getOwnPropertyDescriptor(a.json, key)?.get).toBe(Object.getOwnPropertyDescriptor(b.json, key)?.get)
    // Client-chosen names past the shared accessors get their own: 600 distinct names over three bodies (one body of
    // more than LAZY_MAX_MEMBERS members is parsed whole).
    for (let body = 0; body < 3; body++) {
      const many = Object.fromEntries(Array.from({ length: 200 }, (_, j) => [`member_${body * 200 + j}_${'k'.repeat(j % 7)}`, { i: j, pad: 'p'.repeat(300) }]))
      const raw = Buffer.from(JSON.stringify(many))
      const [lazy, whole] = [await lazyPath(raw, chatShape), await smallPath(raw, chatShape)]
      expect(Object.values(Object.getOwnPropertyDescriptors(lazy.json)).every((d) => d.get !== undefined)).toBe(true)
      expect({ ...lazy.json }).toEqual(whole.json)
      expect(JSON.stringify(lazy.json)).toBe(JSON.stringify(whole.json))
    }
  })

  it('keeps the providers\' large members on shared accessors after clients have sent hundreds of made-up names', async () => {
    vi.resetModules()
    const fresh = await import('../../src/proxy/lazy-members.js')
    const { topLevelMembers: members } = await vi.importActual<typeof import('../../src/http/json-members.js')>('../../src/http/json-members.js')
    const lazyObject = (text: string) => {
      const json = {}
      fresh.defineMembers(json, Buffer.from(text), members(Buffer.from(text)), () => false, new Set())
      return json
    }
    for (let i = 0; i < 400; i++) lazyObject(`{"made_up_${i}":"x"}`)
    const [a, b] = [lazyObject('{"messages":[1],"tools":[2],"contents":[3]}'), lazyObject('{"messages":[4],"tools":[5],"contents":[6]}')]
    for (const key of ['messages', 'tools', 'contents']) expect(Object.getOwnPropertyDescriptor(a, key)?.get).toBe(Object.getOwnPropertyDescriptor(b, key)?.get)
    expect(JSON.stringify([a, b])).toBe('[{"messages":[1],"tools":[2],"contents":[3]},{"messages":[4],"tools":[5],"contents":[6]}]')
    // Past them, a made-up name gets a pair of its own.
    const [c, d] = [lazyObject('{"made_up_999":1}'), lazyObject('{"made_up_999":2}')]
    expect(Object.getOwnPropertyDescriptor(c, 'made_up_999')?.get).not.toBe(Object.getOwnPropertyDescriptor(d, 'made_up_999')?.get)
  })

  it('keeps a `__proto__` member an own member, small or large, as JSON.parse does: never the body\'s prototype', async () => {
    const hidden = { messages: [{ role: 'user', content: 'not the conversation' }] }
    for (const proto of [JSON.stringify(hidden), JSON.stringify({ ...hidden, pad: 'p'.repeat(400) })]) {
      const text = `{"__proto__":${proto},${JSON.stringify(agent).slice(1)}`
      const [lazy, whole] = [await lazyPath(Buffer.from(text), chatShape), await smallPath(Buffer.from(text), chatShape)]
      expect(Object.getPrototypeOf(lazy.json)).toBe(Object.prototype)
      expect(Object.hasOwn(lazy.json, '__proto__')).toBe(true)
      expect(lazy.fingerprint()).toEqual(whole.fingerprint())
      expect(JSON.stringify(lazy.json)).toBe(JSON.stringify(whole.json))
    }
    // A body whose only conversation is under `__proto__` has none.
    const only = Buffer.from(`{"model":"gpt-4o","__proto__":${JSON.stringify({ ...hidden, pad: 'p'.repeat(LAZY_MIN_BYTES) })}}`)
    expect((await lazyPath(only, chatShape)).fingerprint()).toBeNull()
    expect((await smallPath(only, chatShape)).fingerprint()).toBeNull()
  })

  it('fingerprints random conversations of every wire shape as the whole-parse path does', async () => {
    const part = fc.oneof(
      fc.string(),
      fc.record({ type: fc.constantFrom('text', 'tool_use', 'tool_result', 'function_call', 'input_text', 'thinking'), text: fc.string(), id: fc.string(), name: fc.string(), input: fc.jsonValue() }, { requiredKeys: ['type'] }),
    )
    const item = fc.record(
      {
        role: fc.constantFrom('user', 'assistant', 'tool', 'system', 'model', 'developer'),
        type: fc.constantFrom('message', 'function_call', 'function_call_output', 'reasoning', 'item_reference', 'custom_tool_call'),
        content: fc.oneof(fc.string(), fc.array(part, { maxLength: 3 }), fc.constant(null)),
        parts: fc.array(part, { maxLength: 3 }),
        tool_calls: fc.array(fc.record({ id: fc.string(), type: fc.constant('function'), function: fc.record({ name: fc.string(), arguments: fc.string() }) }), { maxLength: 2 }),
        name: fc.string(),
        id: fc.string(),
      },
      { requiredKeys: [] },
    )
    const conversation = fc.array(fc.oneof({ weight: 8, arbitrary: item }, fc.string(), fc.integer(), fc.constant(null)), { maxLength: 40 })
    const members = fc.record(
      {
        messages: conversation,
        input: fc.oneof(conversation, fc.string()),
        contents: fc.oneof(conversation, item),
        system: fc.oneof(fc.string(), fc.array(part, { maxLength: 3 })),
        instructions: fc.string(),
        prompt: fc.string(),
        systemInstruction: fc.record({ parts: fc.array(part, { maxLength: 3 }) }),
        conversation: fc.oneof(fc.string(), fc.record({ id: fc.string() })),
        cachedContent: fc.string(),
      },
      { requiredKeys: [] },
    )
    await fc.assert(
      fc.asyncProperty(members, fc.boolean(), async (body, padFirst) => {
        const pad = { pad: 'p'.repeat(LAZY_MIN_BYTES) }
        const raw = Buffer.from(JSON.stringify(padFirst ? { ...pad, ...body } : { ...body, ...pad }))
        for (const shape of Object.values(LOOP_SHAPES)) {
          const lazy = await lazyPath(raw, shape)
          expect(lazy.fingerprint()).toEqual(fingerprintRequest(shape, JSON.parse(raw.toString('utf8')) as Record<string, unknown>))
        }
      }),
      { numRuns: 400, seed: 12 },
    )
  })

  it('splices an edited member in from the spans its scan found, without walking the body again: the whole-parse path\'s bytes', async () => {
    const text = `{ "model" : "gpt-4o", "stream": true, "stream_options": {"x": 1.0}, "messages": [ {"role":"user","content":"caf\\u00e9 ${'x'.repeat(LAZY_MIN_BYTES)}"} ],\n "max_tokens": 1e3 }`
    const sent = async (reader: Reader) => {
      const read = await reader(Buffer.from(text), chatShape)
      expect(openai.prepareBody(chatRoute, read.editable(), openai.describe(chatRoute, read.json), 50)).toBe(true)
      vi.mocked(topLevelMembers).mockClear()
      const bytes = await read.edited()
      return { bytes: bytes.toString('utf8'), walked: vi.mocked(topLevelMembers).mock.calls.length }
    }
    const [lazy, whole] = [await sent(lazyPath), await sent(smallPath)]
    expect(lazy.bytes).toBe(whole.bytes)
    expect(lazy.bytes).toBe(text.replace('{"x": 1.0}', '{"x":1,"include_usage":true}').replace('1e3', '50'))
    expect(whole.walked).toBe(1)
    expect(lazy.walked).toBe(0)
  })

  it('refuses what the whole-parse path refuses, with the same error, in one slice or many', async () => {
    const x = 'x'.repeat(LAZY_MIN_BYTES)
    const bodies = [
      `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"${x}","type":"input_file"}]}]}`,
      `{"model":"m","stream":false,"messages":[{"role":"user","content":"${x}"}],"str\\u0065am":true}`,
      `{"model":"m","messages":[{"role":"user","content":"${x}"}]`,
      `[{"model":"m","messages":[{"role":"user","content":"${x}"}]}]`,
      `"${x}"`,
      `{"model":"m","messages":[{"role":"user","content":"${x}\u0001"}]}`,
      `{"model":"m","messages":[{"role":"user","content":"${x}\\x"}]}`,
      `{"model":"m","a":1,"a":[1,{"b":"${x}"}],}`,
      `\ufeff{"model":"m","messages":"${x}"}`,
      `{"model":"m","messages":"${x}"} {}`,
      `{"model":"m","messages":"${'y'.repeat(BIG_BODY_BYTES / 2)}","n":01}`,
      `{"model":"m","messages":"${'y'.repeat(BIG_BODY_BYTES / 2)}","a":1,"a":2}`,
    ]
    const mutated = Buffer.from(JSON.stringify(agent))
    for (let i = 0; i < 400; i++) {
      const at = (i * 7919) % mutated.length
      const copy = Buffer.from(mutated)
      copy[at] = [0x22, 0x5c, 0x2c, 0x7d, 0x00, 0x0a, 0x30, 0x80][i % 8] as number
      bodies.push(copy.toString('latin1'))
    }
    let refused = 0
    for (const text of bodies) {
      const raw = text.startsWith('\ufeff') ? Buffer.from(text) : Buffer.from(text, text.length === Buffer.byteLength(text) ? 'utf8' : 'latin1')
      const outcome = (reader: Reader) => reader(raw, chatShape).then((read) => read.fingerprint(), (error: unknown) => (error instanceof ProxyError ? error.message : error))
      const [lazy, whole] = [await outcome(lazyPath), await outcome(smallPath)]
      expect(lazy, text.slice(0, 80)).toEqual(whole)
      if (typeof whole === 'string') refused++
    }
    expect(refused).toBeGreaterThan(bodies.length / 2)
  }, 60_000)
})
