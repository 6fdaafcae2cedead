import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { byteCounter, type ByteCounter } from '../support/counting.js'
import { ProxyError } from '../../src/errors.js'
import { createOpenAiAdapter } from '../../src/providers/openai.js'
import type { RouteMatch, StreamParser } from '../../src/providers/types.js'
import { createSseFramer } from '../../src/stream/sse.js'

const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/openai/${name}`, import.meta.url))
const adapter = createOpenAiAdapter({ baseUrl: 'https://api.openai.test', apiKey: 'sk-server' })

// Parser tests see what each parser counts through a byte counter; the real counter is tested in tokens tests.
let counter: ByteCounter = byteCounter()
const newParser = (...args: [RouteMatch]): StreamParser => adapter.createStreamParser(args[0], (counter = byteCounter()))
const chat = adapter.findRoute('POST', '/v1/chat/completions') as RouteMatch
const responses = adapter.findRoute('POST', '/v1/responses') as RouteMatch
const embeddings = adapter.findRoute('POST', '/v1/embeddings') as RouteMatch

const CHAT_TEXT = ['Bonjour', ' 👋', ' — ça', ' va', '?', 'get_weather', '{"city":"Paris"}']
const RESPONSES_TEXT = ['Hello', ', ', 'wörld', '!']
const bytesOf = (parts: string[]): number => parts.reduce((n, p) => n + Buffer.byteLength(p), 0)

/** Feeds `bytes` in the given pieces; returns what the parser passed on and the parser itself. */
function feed(route: RouteMatch, pieces: Buffer[]): { out: Buffer; parser: StreamParser } {
  const parser = newParser(route)
  const out = [...pieces.map((p) => parser.push(p)), parser.flush()]
  return { out: Buffer.concat(out), parser }
}

describe.each([
  ['chat-stream.sse', chat, CHAT_TEXT, { inputTokens: 16, cachedInputTokens: 3, outputTokens: 9 }],
  ['chat-stream-crlf.sse', chat, CHAT_TEXT, { inputTokens: 16, cachedInputTokens: 3, outputTokens: 9 }],
  ['responses-stream.sse', responses, RESPONSES_TEXT, { inputTokens: 20, cachedInputTokens: 5, outputTokens: 6 }],
])('stream parser on %s', (name, route, text, usage) => {
  const bytes = fixture(name)

  it('split at every byte boundary: forwards the bytes unchanged, reads usage and counts every delta', () => {
    for (let at = 0; at <= bytes.length; at++) {
      const { out, parser } = feed(route, [bytes.subarray(0, at), bytes.subarray(at)])
      expect(out.equals(bytes)).toBe(true)
      expect(parser.reported()).toEqual(usage)
      expect(counter.tokens()).toBe(bytesOf(text))
    }
  })

  it('one byte at a time', () => {
    const { out, parser } = feed(route, [...bytes].map((b) => Buffer.from([b])))
    expect(out.equals(bytes)).toBe(true)
    expect(parser.reported()).toEqual(usage)
    expect(counter.text()).toBe(text.join(''))
  })

  it('never passes on part of an event: every piece it returns ends at an event boundary', () => {
    const parser = newParser(route)
    for (let at = 0; at < bytes.length; at += 7) {
      const ready = parser.push(bytes.subarray(at, at + 7))
      // An event ends with a blank line: two line ends (the LF of a last CRLF may come with the next read).
      if (ready.length > 0) expect(ready.subarray(-2).toString()).toMatch(/^[\r\n]{2}$/)
    }
  })
})

describe('SSE framer, event by event', () => {
  it('yields each event of a read separately and has parsed exactly that far when it does', () => {
    const seen: string[] = []
    const framer = createSseFramer((data) => seen.push(data))
    const counts: number[] = []
    const frames: string[] = []
    for (const frame of framer.frames(Buffer.from('data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: part'))) {
      frames.push(frame.toString())
      counts.push(seen.length)
    }
    expect(frames).toEqual(['data: a\n\n', 'data: b\r\n\r\n', 'data: c\r\r'])
    expect(counts).toEqual([1, 2, 3])
    expect([...framer.frames(Buffer.from('ial\n\n'))].map(String)).toEqual(['data: partial\n\n'])
    expect(seen).toEqual(['a', 'b', 'c', 'partial'])
  })

  it('leaves events it was not asked for unparsed until the next call', () => {
    const seen: string[] = []
    const framer = createSseFramer((data) => seen.push(data))
    const iterator = framer.frames(Buffer.from('data: 1\n\ndata: 2\n\n'))
    expect(iterator.next().value?.toString()).toBe('data: 1\n\n')
    expect(seen).toEqual(['1'])
    expect([...framer.frames(Buffer.alloc(0))].map(String)).toEqual(['data: 2\n\n'])
    expect(seen).toEqual(['1', '2'])
  })

  it('decodes as one decoder over the whole stream: a byte order mark dropped only at the start, a half character at the end held back', () => {
    const seen: string[] = []
    const framer = createSseFramer((data) => seen.push(data))
    const bom = Buffer.from([0xef, 0xbb, 0xbf])
    const e = Buffer.from('é')
    const reads = [bom, Buffer.from('data: a'), e.subarray(0, 1), e.subarray(1), Buffer.from('\n\n'), bom, Buffer.from('data: b\n\ndata: c'), e.subarray(0, 1)]
    const out = [...reads.map((read) => framer.push(read)), framer.flush()]
    expect(Buffer.concat(out)).toEqual(Buffer.concat(reads))
    // A mark after the start is part of the next line's field name, so that event is not a data event.
    expect(seen).toEqual(['aé', 'c'])
  })

  it('keeps a CRLF pair split across reads inside one stream of bytes', () => {
    const framer = createSseFramer(() => undefined)
    const out = [framer.push(Buffer.from('data: x\r\n\r')), framer.push(Buffer.from('\ndata: y\n\n')), framer.flush()]
    expect(Buffer.concat(out).toString()).toBe('data: x\r\n\r\ndata: y\n\n')
  })
})

describe('chat stream parser, chunk by chunk', () => {
  const head = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":'
  const chunk = (delta: string, index = 0, tail = ''): string => `${head}[{"index":${index},"delta":${delta},"finish_reason":null}]${tail}}`
  // Nearly every chunk repeats the last one's shape with other content (read without a full parse); these vary
  // everything around that: escapes, text JSON.parse refuses, several choices, constant counted fields, a
  // `content` key outside the delta, usage and errors.
  const hello = [chunk('{"role":"assistant","content":"","refusal":null}'), chunk('{"content":"Hello"}'), chunk('{"content":" wörld 👋"}')]
  const streams: Array<[string, string[]]> = [
    ['escapes', [...hello, chunk('{"content":"say \\"hi\\"\\n"}'), chunk('{"content":"\\u00e9\\ud83d\\udc4b \\\\"}'), chunk('{"content":"a\\/b"}')]],
    ['text JSON.parse refuses', [...hello, chunk('{"content":"raw\nline"}'), chunk('{"content":"ctl\u0001"}'), chunk('{"content":"not"'), chunk('{"content":"x"}')]],
    ['not one string in the slot', [...hello, chunk('{"content":"a","content":"b"}'), chunk('{"content":12}'), chunk('{"content":null}'), chunk('{"content":""}'), chunk('{"content":"y"}')]],
    ['duplicate keys, the last one read', [...hello, chunk('{"content":"a","content":"b"}'), chunk('{"content":"a","content":"c"}'), chunk('{"content":"a","content":"d"}')]],
    ['two choices interleaved', [...hello, chunk('{"content":"c0"}', 0), chunk('{"content":"c1"}', 1), chunk('{"content":"c0 again"}', 0), chunk('{"content":"c1 again"}', 1), chunk('{"content":"c0 more"}', 0), chunk('{"content":"c1 more"}', 1), chunk('{"content":"c0 end"}', 0)]],
    ['a constant counted field beside the content', [...hello, chunk('{"content":"y","refusal":"no"}'), chunk('{"content":"z","refusal":"no"}'), chunk('{"content":"w","refusal":"no"}')]],
    ['the last content key outside the delta', [...hello, chunk('{"content":"q"}', 0, ',"x":{"content":"meta"}'), chunk('{"content":"r"}', 0, ',"x":{"content":"more"}'), chunk('{"content":"s"}', 0, ',"x":{"content":"more"}')]],
    ['the slot in a refusal', [...hello, chunk('{"refusal":"I"}'), chunk('{"refusal":" cannot"}'), chunk('{"refusal":" help"}')]],
    ['usage and errors in shapes that repeat', [...hello, chunk('{"content":"u"}', 0, ',"usage":{"prompt_tokens":5,"completion_tokens":7}'), chunk('{"content":"v"}', 0, ',"usage":{"prompt_tokens":5,"completion_tokens":8}'), chunk('{"content":"w"}'), chunk('{"content":"v2"}', 0, ',"error":{"message":"late"}'), chunk('{"content":"v3"}', 0, ',"error":{"message":"late"}')]],
  ]

  /** What each chunk counts and reports when parsed whole (content and refusal are the fields used above). */
  function reference(data: string[]): { texts: Array<[string, number]>; usage: unknown } {
    const texts: Array<[string, number]> = []
    let usage: unknown = {}
    for (const text of data) {
      let parsed: { choices?: Array<{ index: number; delta: Record<string, unknown> }>; usage?: { prompt_tokens: number; completion_tokens: number } }
      try {
        parsed = JSON.parse(text) as typeof parsed
      } catch {
        continue
      }
      for (const choice of parsed.choices ?? []) {
        for (const field of ['content', 'refusal']) {
          const value = choice.delta[field]
          if (typeof value === 'string' && value.length > 0) texts.push([value, choice.index])
        }
      }
      if (parsed.usage !== undefined) usage = { inputTokens: parsed.usage.prompt_tokens, cachedInputTokens: 0, outputTokens: parsed.usage.completion_tokens }
    }
    return { texts, usage }
  }

  it.each(streams)('%s: counts and reports every chunk as a full parse of each does, one event per read or split anywhere', (_name, chunks) => {
    const stream = Buffer.from(chunks.map((data) => `data: ${data}\n\n`).join(''))
    const expected = reference(chunks)
    const splits = [chunks.map((data) => Buffer.from(`data: ${data}\n\n`)), [stream], [stream.subarray(0, 700), stream.subarray(700)]]
    for (const reads of splits) {
      const texts: Array<[string, number]> = []
      const counter = { ...byteCounter(), add: (text: unknown, context = 0) => void (typeof text === 'string' && text.length > 0 && texts.push([text, context])) }
      const parser = adapter.createStreamParser(chat, counter)
      const out = Buffer.concat([...reads.map((read) => parser.push(read)), parser.flush()])
      expect(out.equals(stream)).toBe(true)
      expect(texts).toEqual(expected.texts)
      expect(parser.reported()).toEqual(expected.usage)
    }
  })
})

describe('OpenAI adapter', () => {
  it.each([
    ['POST', '/v1/chat/completions', 'chat'],
    ['POST', '/v1/responses', 'responses'],
    ['POST', '/v1/embeddings', 'embeddings'],
    ['POST', '/v1/images/generations', null],
    ['POST', '/v1/chat/completions/x', null],
    ['GET', '/v1/chat/completions', null],
  ])('%s %s is metered as %s', (method, path, operation) => {
    expect(adapter.findRoute(method, path)?.operation ?? null).toBe(operation)
  })

  it.each([
    [chat, { model: 'gpt-4o', messages: [] }, { model: 'gpt-4o', stream: false, maxOutputTokens: null, choices: 1 }],
    [chat, { model: 'gpt-4o', stream: true, max_tokens: 50, n: 3 }, { model: 'gpt-4o', stream: true, maxOutputTokens: 150, choices: 3 }],
    [chat, { model: 'o3', max_completion_tokens: 70, max_tokens: 10 }, { model: 'o3', stream: false, maxOutputTokens: 70, choices: 1 }],
    [responses, { model: 'gpt-4.1', input: 'x', max_output_tokens: 99, stream: true }, { model: 'gpt-4.1', stream: true, maxOutputTokens: 99, choices: 1 }],
    [embeddings, { model: 'text-embedding-3-small', input: 'x' }, { model: 'text-embedding-3-small', stream: false, maxOutputTokens: 0, choices: 1 }],
  ])('describes %o %o', (route, body, facts) => {
    expect(adapter.describe(route, body)).toEqual(facts)
  })

  it.each([
    [chat, { messages: [] }],
    [chat, { model: 'gpt-4o', max_tokens: '9' }],
    [chat, { model: 'gpt-4o', stream: 'yes' }],
    [responses, { model: 'gpt-4o', background: true }],
  ])('refuses a body it cannot meter: %o', (route, body) => {
    expect(() => adapter.describe(route, body)).toThrow(ProxyError)
  })

  it('forces usage on chat streams and lowers the cap per choice, in the field the client used', () => {
    const body: Record<string, unknown> = { model: 'gpt-4o', stream: true, n: 2, max_tokens: 500, stream_options: { include_obfuscation: false } }
    expect(adapter.prepareBody(chat, body, adapter.describe(chat, body), 300)).toBe(true)
    expect(body).toMatchObject({ max_tokens: 150, stream_options: { include_obfuscation: false, include_usage: true } })
    const plain: Record<string, unknown> = { model: 'gpt-4o' }
    expect(adapter.prepareBody(chat, plain, adapter.describe(chat, plain), null)).toBe(false)
  })

  it('builds the upstream request with the upstream key only', () => {
    const upstream = adapter.buildUpstream({
      route: chat,
      path: '/v1/chat/completions',
      query: 'a=1',
      headers: { authorization: 'Bearer lp-x', 'x-loopers-provider-key': 'sk-up', 'openai-organization': 'org', 'accept-encoding': 'gzip', host: 'h' },
      credential: { kind: 'apiKey', value: 'sk-up' },
      body: Buffer.from('{}'),
    })
    expect(upstream.url).toBe('https://api.openai.test/v1/chat/completions?a=1')
    expect(upstream.headers).toEqual({ authorization: 'Bearer sk-up', 'openai-organization': 'org', 'accept-encoding': 'identity' })
  })

  it('reads usage from responses, with cached tokens apart', () => {
    expect(adapter.usageFromBody(chat, { usage: { prompt_tokens: 10, completion_tokens: 4, prompt_tokens_details: { cached_tokens: 6 } } })).toEqual({
      inputTokens: 4,
      cachedInputTokens: 6,
      outputTokens: 4,
    })
    expect(adapter.usageFromBody(responses, { usage: { input_tokens: 8, output_tokens: 3 } })).toEqual({ inputTokens: 8, cachedInputTokens: 0, outputTokens: 3 })
    expect(adapter.usageFromBody(chat, { id: 'x' })).toBeNull()
  })

  it('renders errors and cutoff frames in OpenAI shape', () => {
    const error = { status: 429, code: 'budget_exceeded', message: 'no budget', details: { window: 'daily' } }
    expect(adapter.errorBody(error)).toEqual({ error: { message: 'no budget', type: 'budget_exceeded', param: null, code: 'budget_exceeded', window: 'daily' } })
    expect(adapter.cutoffFrame(chat, error).toString()).toMatch(/^data: \{"error":\{.*"code":"budget_exceeded".*\}\}\n\ndata: \[DONE\]\n\n$/)
    expect(adapter.cutoffFrame(responses, error).toString()).toMatch(/^event: error\ndata: \{"type":"error","code":"budget_exceeded".*"error":\{/)
  })
})
