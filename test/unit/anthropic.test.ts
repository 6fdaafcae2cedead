import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import Anthropic from '@anthropic-ai/sdk'
import { Stream } from '@anthropic-ai/sdk/core/streaming'
import { describe, expect, it } from 'vitest'
import { byteCounter, type ByteCounter } from '../support/counting.js'
import { ProxyError } from '../../src/errors.js'
import { elementsOf } from '../../src/http/json-elements.js'
import { createAnthropicAdapter, TOOL_USE_PROMPT_TOKENS, toolOverheadTokens } from '../../src/providers/anthropic.js'
import type { ErrorInfo, RequestFacts, RouteMatch, StreamParser, UpstreamCredential, Usage } from '../../src/providers/types.js'
import { countRequest } from '../support/count-request.js'

const PROXY_KEY = `lp-${'k'.repeat(43)}`
const OTHER_PROXY_KEY = `lp-${'z'.repeat(43)}`
const adapter = createAnthropicAdapter({ baseUrl: 'https://api.anthropic.test', apiKey: null })

// Parser tests see what each parser counts through a byte counter; the real counter is tested in tokens tests.
let counter: ByteCounter = byteCounter()
const newParser = (...args: [RouteMatch]): StreamParser => adapter.createStreamParser(args[0], (counter = byteCounter()))
const MESSAGES: RouteMatch = { operation: 'messages', pathModel: null, pathStream: null }

function raw(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/anthropic/${name}`, import.meta.url))
}
function json(name: string): Record<string, unknown> {
  return JSON.parse(raw(name).toString('utf8')) as Record<string, unknown>
}
function facts(maxOutputTokens: number): RequestFacts {
  return { model: 'claude-test', stream: false, maxOutputTokens, choices: 1 }
}

describe('routes', () => {
  it.each([
    ['POST', '/v1/messages', 'messages', false],
    ['POST', '/v1/messages/count_tokens', null, true],
    ['GET', '/v1/models', null, true],
    ['GET', '/v1/models/claude-sonnet-4-5', null, true],
    ['HEAD', '/v1/models', null, true],
    ['POST', '/v1/messages/batches', null, false],
    ['POST', '/v1/complete', null, false],
    ['POST', '/v1/files', null, false],
    ['DELETE', '/v1/files/file_1', null, false],
    ['PUT', '/v1/messages', null, false],
    ['POST', '/v1/messages/', null, false],
  ])('%s %s → route %s, free %s', (method, path, operation, free) => {
    expect(adapter.findRoute(method, path)?.operation ?? null).toBe(operation)
    expect(adapter.isFree(method, path)).toBe(free)
  })

  it('a metered route takes model and stream from the body', () => {
    expect(adapter.findRoute('POST', '/v1/messages')).toEqual(MESSAGES)
  })
})

describe('the proxy key and the client credential', () => {
  it.each<[string, IncomingHttpHeaders, string | null, UpstreamCredential | null]>([
    ['x-api-key (SDK 0.x)', { 'x-api-key': PROXY_KEY }, PROXY_KEY, null],
    ['Bearer (SDK 1.x)', { authorization: `Bearer ${PROXY_KEY}` }, PROXY_KEY, null],
    ['lp- bearer beside a real x-api-key', { 'x-api-key': 'sk-ant-real', authorization: `Bearer ${PROXY_KEY}` }, PROXY_KEY, { kind: 'apiKey', value: 'sk-ant-real' }],
    ['lp- x-api-key beside a real bearer', { 'x-api-key': PROXY_KEY, authorization: 'Bearer sk-ant-oat-token' }, PROXY_KEY, { kind: 'apiKey', value: 'sk-ant-oat-token' }],
    ['a real key only (path auth)', { 'x-api-key': 'sk-ant-real' }, 'sk-ant-real', { kind: 'apiKey', value: 'sk-ant-real' }],
    ['a real bearer only (path auth, SDK 1.x)', { authorization: 'Bearer sk-ant-real' }, 'sk-ant-real', { kind: 'apiKey', value: 'sk-ant-real' }],
    ['basic auth is no key', { authorization: 'Basic dXNlcjpwYXNz' }, null, null],
    ['nothing', {}, null, null],
    ['blank x-api-key', { 'x-api-key': '  ' }, null, null],
  ])('%s', (_name, headers, key, credential) => {
    expect(adapter.readKey(headers, new URLSearchParams())).toBe(key)
    expect(adapter.readClientCredential(headers, new URLSearchParams())).toEqual(credential)
  })

  it('the server credential comes from configuration', () => {
    expect(adapter.defaultCredential()).toBeNull()
    expect(createAnthropicAdapter({ baseUrl: 'https://x', apiKey: 'sk-ant-server' }).defaultCredential()).toEqual({ kind: 'apiKey', value: 'sk-ant-server' })
  })
})

describe('request facts', () => {
  it.each<[string, Record<string, unknown>, RequestFacts]>([
    ['plain', { model: 'claude-sonnet-4-5', max_tokens: 1024, messages: [] }, { model: 'claude-sonnet-4-5', stream: false, maxOutputTokens: 1024, choices: 1 }],
    ['streamed', { model: 'claude-haiku-4-5', max_tokens: 64, stream: true, messages: [] }, { model: 'claude-haiku-4-5', stream: true, maxOutputTokens: 64, choices: 1 }],
    ['stream false', { model: 'm', max_tokens: 1, stream: false }, { model: 'm', stream: false, maxOutputTokens: 1, choices: 1 }],
    ['cache pre-warming generates nothing', { model: 'm', max_tokens: 0, messages: [] }, { model: 'm', stream: false, maxOutputTokens: 0, choices: 1 }],
    [
      'thinking is inside max_tokens',
      { model: 'claude-opus-4-5', max_tokens: 16000, thinking: { type: 'enabled', budget_tokens: 10000 } },
      { model: 'claude-opus-4-5', stream: false, maxOutputTokens: 16000, choices: 1 },
    ],
  ])('%s', (_name, body, expected) => {
    expect(adapter.describe(MESSAGES, body)).toEqual(expected)
  })

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['no max_tokens', { model: 'claude-sonnet-4-5', messages: [] }, /max_tokens/],
    ['negative max_tokens', { model: 'claude-sonnet-4-5', max_tokens: -1 }, /max_tokens/],
    ['null max_tokens', { model: 'claude-sonnet-4-5', max_tokens: null }, /max_tokens/],
    ['max_tokens as text', { model: 'claude-sonnet-4-5', max_tokens: '100' }, /max_tokens/],
    ['fractional max_tokens', { model: 'claude-sonnet-4-5', max_tokens: 10.5 }, /max_tokens/],
    ['no model', { max_tokens: 10 }, /model/],
    ['stream as text', { model: 'm', max_tokens: 10, stream: 'yes' }, /stream/],
  ])('refuses %s with invalid_request', (_name, body, message) => {
    const error = (() => {
      try {
        adapter.describe(MESSAGES, body)
      } catch (e) {
        return e
      }
      return null
    })()
    expect(error).toBeInstanceOf(ProxyError)
    expect((error as ProxyError).code).toBe('invalid_request')
    expect((error as ProxyError).message).toMatch(message)
  })
})

describe('input bound', () => {
  it('adds the tool-use system prompt and the published overhead of each Anthropic-defined tool; client tools add none', () => {
    const body = json('request-tools.json')
    const bytes = raw('request-tools.json')
    // bash 245 + text editor 700 + computer use 735 + 499 + web search allowance 1024.
    expect(toolOverheadTokens(elementsOf(body, 'tools'))).toBe(245 + 700 + 1234 + 1024)
    expect(adapter.boundInputTokens(MESSAGES, body, bytes, 2000)).toBe(bytes.length + TOOL_USE_PROMPT_TOKENS + 3203)
  })

  it('prices each image and document part, inline or referenced, at tokensPerMedia', () => {
    const body = json('request-media.json')
    const bytes = raw('request-media.json')
    // No tools: no tool-use prompt, and no "priming" either (the JSON outweighs the message delimiters).
    expect(adapter.boundInputTokens(MESSAGES, body, bytes, 1500)).toBe(bytes.length + 3 * 1500)
  })

  it.each([[undefined], [[]], ['tools'], [[{ name: 'x', input_schema: {} }, null, 3]]])('no overhead for tools %j', (tools) => {
    expect(toolOverheadTokens(elementsOf({ tools }, 'tools'))).toBe(0)
  })

  it('counts exactly at the free count_tokens endpoint, sending only the fields it accepts', async () => {
    const body = { model: 'm', max_tokens: 1, stream: true, system: 's', messages: [{ role: 'user', content: 'hi' }], tools: [{ name: 'f', input_schema: {} }] }
    const how = adapter.exactInput(MESSAGES, '/v1/messages', body, 'm')
    expect(how).toMatchObject({ kind: 'endpoint', path: '/v1/messages/count_tokens' })
    if (how?.kind !== 'endpoint') throw new Error('endpoint expected')
    const sent = await countRequest(how.body, body)
    expect(sent).toEqual({ model: 'm', system: 's', messages: body.messages, tools: body.tools })
    expect(Object.keys(sent as object).sort()).toEqual(['messages', 'model', 'system', 'tools'])
    expect(how.read({ input_tokens: 42 })).toBe(42)
    expect(how.read({ error: {} })).toBeNull()
  })

  it('keeps the bound when a server tool fetches content the count cannot see', () => {
    expect(adapter.exactInput(MESSAGES, '/v1/messages', { model: 'm', messages: [], tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'm')).toBeNull()
  })
})

describe('prepareBody', () => {
  it.each<[string, Record<string, unknown>, number | null, Record<string, unknown>, boolean]>([
    ['no cap asked: untouched', { max_tokens: 500 }, null, { max_tokens: 500 }, false],
    ['lowers max_tokens', { max_tokens: 500 }, 120, { max_tokens: 120 }, true],
    ['never below 1', { max_tokens: 500 }, 0, { max_tokens: 1 }, true],
    ['the same cap: untouched', { max_tokens: 120 }, 120, { max_tokens: 120 }, false],
    ['never raised', { max_tokens: 0 }, 5, { max_tokens: 0 }, false],
    [
      'shrinks a thinking budget that no longer fits under max_tokens',
      { max_tokens: 20000, thinking: { type: 'enabled', budget_tokens: 16000 } },
      5000,
      { max_tokens: 5000, thinking: { type: 'enabled', budget_tokens: 4999 } },
      true,
    ],
    [
      'keeps a thinking budget that still fits',
      { max_tokens: 20000, thinking: { type: 'enabled', budget_tokens: 2000 } },
      5000,
      { max_tokens: 5000, thinking: { type: 'enabled', budget_tokens: 2000 } },
      true,
    ],
    [
      'leaves thinking for the upstream to refuse when no valid budget fits',
      { max_tokens: 20000, thinking: { type: 'enabled', budget_tokens: 16000 } },
      900,
      { max_tokens: 900, thinking: { type: 'enabled', budget_tokens: 16000 } },
      true,
    ],
  ])('%s', (_name, body, cap, expected, changed) => {
    expect(adapter.prepareBody(MESSAGES, body, facts(Number(body.max_tokens)), cap)).toBe(changed)
    expect(body).toEqual(expected)
  })
})

describe('upstream request', () => {
  const base = { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'anthropic-beta': 'prompt-caching-2024-07-31,interleaved-thinking-2025-05-14' }
  it.each<[string, IncomingHttpHeaders, UpstreamCredential | null, string, Record<string, string | undefined>]>([
    [
      'SDK 1.x header auth: the provider key goes as x-api-key',
      { ...base, authorization: `Bearer ${PROXY_KEY}`, 'x-loopers-provider-key': 'sk-ant-provider' },
      { kind: 'apiKey', value: 'sk-ant-provider' },
      '',
      { 'x-api-key': 'sk-ant-provider', authorization: undefined },
    ],
    [
      'SDK 0.x header auth',
      { ...base, 'x-api-key': PROXY_KEY },
      { kind: 'apiKey', value: 'sk-ant-server' },
      'beta=true',
      { 'x-api-key': 'sk-ant-server', authorization: undefined },
    ],
    [
      'path auth with a bearer token: forwarded as the bearer it came as',
      { ...base, authorization: 'Bearer sk-ant-oat01-token' },
      { kind: 'apiKey', value: 'sk-ant-oat01-token' },
      '',
      { authorization: 'Bearer sk-ant-oat01-token', 'x-api-key': undefined },
    ],
    [
      'path auth with x-api-key',
      { ...base, 'x-api-key': 'sk-ant-real' },
      { kind: 'apiKey', value: 'sk-ant-real' },
      '',
      { 'x-api-key': 'sk-ant-real', authorization: undefined },
    ],
    ['no credential', { ...base, 'x-api-key': PROXY_KEY }, null, '', { 'x-api-key': undefined, authorization: undefined }],
    [
      'a proxy key is never a credential',
      { ...base, authorization: `Bearer ${PROXY_KEY}` },
      { kind: 'apiKey', value: OTHER_PROXY_KEY },
      `key=${OTHER_PROXY_KEY}&beta=true`,
      { 'x-api-key': undefined, authorization: undefined },
    ],
  ])('%s', (_name, headers, credential, query, auth) => {
    const upstream = adapter.buildUpstream({ route: MESSAGES, path: '/v1/messages', query, headers, credential, body: Buffer.from('{}') })
    expect(upstream.url).toBe(`https://api.anthropic.test/v1/messages${query.includes('beta=true') ? '?beta=true' : ''}`)
    for (const [name, value] of Object.entries(auth)) expect(upstream.headers[name]).toBe(value)
    expect(upstream.headers['anthropic-version']).toBe('2023-06-01')
    expect(upstream.headers['anthropic-beta']).toBe(base['anthropic-beta'])
    expect(upstream.headers['accept-encoding']).toBe('identity')
    expect(Object.keys(upstream.headers).filter((h) => h.startsWith('x-loopers-'))).toEqual([])
    expect(JSON.stringify(upstream)).not.toContain('lp-')
  })
})

describe('usage of a complete message', () => {
  it.each<[string, unknown, Usage | null]>([
    ['cache reads and writes priced apart', json('message-cache.json'), { inputTokens: 12, cachedInputTokens: 1800, cacheWriteTokens: 2048, outputTokens: 6 }],
    ['no cache fields', json('message-tool-use.json'), { inputTokens: 472, outputTokens: 89 }],
    ['null cache fields stay unreported', { usage: { input_tokens: 5, cache_read_input_tokens: null, output_tokens: 2 } }, { inputTokens: 5, outputTokens: 2 }],
    ['no usage', { type: 'message', content: [] }, null],
    ['an error body', json('error-overloaded.json'), null],
    ['not JSON', null, null],
  ])('%s', (_name, body, expected) => {
    expect(adapter.usageFromBody(MESSAGES, body)).toEqual(expected)
  })
})

interface StreamCase {
  file: string
  reported: Usage
  estimate: number
}

// Estimates: UTF-8 bytes of text, thinking, redacted thinking, tool names, partial JSON and cited text, plus 16 per block.
const STREAMS: StreamCase[] = [
  { file: 'stream-text.sse', reported: { inputTokens: 25, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 12 }, estimate: 34 },
  { file: 'stream-tool-use.sse', reported: { inputTokens: 472, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 89 }, estimate: 136 },
  { file: 'stream-thinking.sse', reported: { inputTokens: 85, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 312 }, estimate: 198 },
  // Server tool results are input: the final message_delta restates the cumulative input.
  { file: 'stream-web-search.sse', reported: { inputTokens: 10682, cachedInputTokens: 0, cacheWriteTokens: 0, outputTokens: 510 }, estimate: 177 },
  { file: 'stream-cache-crlf.sse', reported: { inputTokens: 21, cachedInputTokens: 20480, cacheWriteTokens: 1552, outputTokens: 9 }, estimate: 26 },
  { file: 'stream-overloaded.sse', reported: { inputTokens: 30 }, estimate: 14 },
]

function feed(parser: StreamParser, chunks: Buffer[]): Buffer {
  const out: Buffer[] = []
  for (const chunk of chunks) out.push(parser.push(chunk))
  out.push(parser.flush())
  return Buffer.concat(out)
}

describe('stream parser', () => {
  it.each(STREAMS)('$file split at every byte boundary', ({ file, reported, estimate }) => {
    const bytes = raw(file)
    for (let cut = 0; cut <= bytes.length; cut++) {
      const parser = newParser(MESSAGES)
      const forwarded = feed(parser, [bytes.subarray(0, cut), bytes.subarray(cut)])
      expect(forwarded.equals(bytes)).toBe(true)
      expect(parser.reported()).toEqual(reported)
      expect(counter.tokens()).toBe(estimate)
      // The reported total replaces the count once message_delta brings it.
      expect(parser.outputTokens()).toBe(reported.outputTokens ?? estimate)
      // The meter's bound is the count's (this counter's bound is its count) or the reported total.
      expect(parser.outputBound()).toBe(reported.outputTokens ?? estimate)
    }
  })

  it.each(STREAMS)('$file fed one byte at a time forwards whole events only', ({ file, reported, estimate }) => {
    const bytes = raw(file)
    const parser = newParser(MESSAGES)
    const released: Buffer[] = []
    for (let i = 0; i < bytes.length; i++) {
      const ready = parser.push(bytes.subarray(i, i + 1))
      if (ready.length > 0) {
        // Every release ends on an event boundary, a blank line; the LF of a CRLF that ended one may come alone.
        expect(/((\r\n|\r|\n)(\r\n|\r|\n)|^\n)$/.test(ready.toString('utf8'))).toBe(true)
        released.push(ready)
      }
    }
    released.push(parser.flush())
    expect(Buffer.concat(released).equals(bytes)).toBe(true)
    expect(parser.reported()).toEqual(reported)
    expect(counter.tokens()).toBe(estimate)
  })

  it('reports input from message_start at once and output only from message_delta', () => {
    const bytes = raw('stream-text.sse').toString('utf8')
    const parser = newParser(MESSAGES)
    const firstDelta = bytes.indexOf('event: content_block_delta')
    parser.push(Buffer.from(bytes.slice(0, firstDelta)))
    // message_start's output_tokens (1) is a placeholder and must not stand in for the count.
    expect(parser.reported()).toEqual({ inputTokens: 25, cachedInputTokens: 0, cacheWriteTokens: 0 })
    expect(counter.tokens()).toBe(2)
    expect(parser.outputTokens()).toBe(2)
    expect(parser.outputBound()).toBe(2)
    parser.push(Buffer.from(bytes.slice(firstDelta, bytes.indexOf('event: message_delta'))))
    expect(parser.reported().outputTokens).toBeUndefined()
    expect(counter.tokens()).toBe(34)
  })

  // Nearly every text delta repeats the last event's shape with other text (read without a full parse); these
  // vary everything around that: escapes, text JSON.parse refuses, block indexes, event types, other delta types.
  it('counts every event as a full parse of each does, whatever repeats', () => {
    const delta = (d: string, index = 0): [string, string] => ['content_block_delta', `{"type":"content_block_delta","index":${index},"delta":${d}}`]
    const text = (t: string, index = 0): [string, string] => delta(`{"type":"text_delta","text":${t}}`, index)
    const events: Array<[string, string]> = [
      ['content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'],
      text('"Hello"'),
      text('" wörld 👋"'),
      text('"say \\"hi\\"\\n\\u00e9"'),
      text('"raw\nline"'),
      text('"a","text":"b"'),
      text('12'),
      ['ping', '{"type": "ping"}'],
      text('"after ping"'),
      text('"next"'),
      ['error', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"in an error event"}}'],
      text('"block 1"', 1),
      text('"block 1 again"', 1),
      delta('{"type":"thinking_delta","thinking":"hmm"}', 2),
      delta('{"type":"thinking_delta","thinking":"hmm more"}', 2),
      delta('{"type":"compaction_delta","text":"x","extra":"y"}', 3),
      delta('{"type":"compaction_delta","text":"z","extra":"y"}', 3),
      delta('{"type":"signature_delta","signature":"s1","text":"t1"}', 4),
      delta('{"type":"signature_delta","signature":"s2","text":"t2"}', 4),
      text('"last"'),
      text('"last too"'),
    ]
    const expected: string[] = []
    for (const [, data] of events) {
      let parsed: { delta?: Record<string, unknown> }
      try {
        parsed = JSON.parse(data) as typeof parsed
      } catch {
        continue
      }
      const d = parsed.delta ?? {}
      const strings = d.type === 'text_delta' ? [d.text] : d.type === 'thinking_delta' ? [d.thinking] : d.type === 'signature_delta' ? [] : Object.entries(d).filter(([k]) => k !== 'type').map(([, v]) => v)
      for (const value of strings) if (typeof value === 'string' && value.length > 0) expected.push(value)
    }
    const stream = events.map(([event, data]) => `event: ${event}\ndata: ${data}\n\n`)
    for (const reads of [stream, [stream.join('')]]) {
      const parser = newParser(MESSAGES)
      const out = Buffer.concat([...reads.map((read) => parser.push(Buffer.from(read))), parser.flush()])
      expect(out.toString()).toBe(stream.join(''))
      expect(counter.texts).toEqual(expected)
    }
  })

  it('counts every string of a delta type it does not know', () => {
    const parser = newParser(MESSAGES)
    const event = { type: 'content_block_delta', index: 0, delta: { type: 'compaction_delta', content: 'summary é' } }
    parser.push(Buffer.from(`event: content_block_delta\ndata: ${JSON.stringify(event)}\n\n`))
    expect(counter.tokens()).toBe(10)
  })
})

describe('errors in Anthropic shape', () => {
  const budget: ErrorInfo = {
    status: 429,
    code: 'budget_exceeded',
    message: 'daily budget exceeded',
    details: { window: 'daily', limit_usd: 1, spent_usd: 0.99, resets_at: '2030-01-02T00:00:00.000Z' },
  }

  it.each<[ErrorInfo, unknown]>([
    [
      budget,
      {
        type: 'error',
        error: {
          type: 'budget_exceeded',
          message: 'daily budget exceeded',
          window: 'daily',
          limit_usd: 1,
          spent_usd: 0.99,
          resets_at: '2030-01-02T00:00:00.000Z',
          details: { error_code: 'budget_exceeded', window: 'daily', limit_usd: 1, spent_usd: 0.99, resets_at: '2030-01-02T00:00:00.000Z' },
        },
      },
    ],
    [
      { status: 401, code: 'invalid_key', message: 'unknown key' },
      { type: 'error', error: { type: 'invalid_key', message: 'unknown key', details: { error_code: 'invalid_key' } } },
    ],
  ])('error body for $code', (info, expected) => {
    expect(adapter.errorBody(info)).toEqual(expected)
  })

  it('a cut stream raises the SDK APIError after the events before it', async () => {
    const before = raw('stream-text.sse').toString('utf8')
    const head = before.slice(0, before.indexOf('event: content_block_stop'))
    const body = Buffer.concat([Buffer.from(head), adapter.cutoffFrame(MESSAGES, budget)])
    const stream = Stream.fromSSEResponse<Anthropic.RawMessageStreamEvent>(new Response(body), new AbortController())
    let text = ''
    const error = await (async () => {
      for await (const event of stream) {
        if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text
      }
    })().catch((e: unknown) => e)
    expect(text).toBe('Hello! How can I help you today?')
    expect(error).toBeInstanceOf(Anthropic.APIError)
    const api = error as InstanceType<typeof Anthropic.APIError>
    expect(api.type).toBe('budget_exceeded')
    expect(api.errorCode).toBe('budget_exceeded')
    expect(api.apiMessage).toBe('daily budget exceeded')
    expect(api.message).toContain('daily budget exceeded')
    expect(api.details).toMatchObject({ window: 'daily', limit_usd: 1 })
  })

  it('the cutoff frame is one whole SSE event the stream parser forwards as it is', () => {
    const frame = adapter.cutoffFrame(MESSAGES, budget)
    expect(frame.toString('utf8')).toMatch(/^event: error\ndata: \{.*\}\n\n$/)
    const parser = newParser(MESSAGES)
    expect(parser.push(frame).equals(frame)).toBe(true)
  })
})
