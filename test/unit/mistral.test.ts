import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import {
  ChatCompletionResponse$inboundSchema,
  CompletionEvent$inboundSchema,
  EmbeddingResponse$inboundSchema,
} from '@mistralai/mistralai/models/components'
import { describe, expect, it } from 'vitest'
import { byteCounter, type ByteCounter } from '../support/counting.js'
import { ProxyError } from '../../src/errors.js'
import { createMistralAdapter } from '../../src/providers/mistral.js'
import { DEFAULT_TOKEN_FACTOR } from '../../src/pricing/table.js'
import type { RequestFacts, RouteMatch, StreamParser, UpstreamCredential, Usage } from '../../src/providers/types.js'
import type { Price } from '../../src/pricing/types.js'
import { PRIMING_TOKENS } from '../../src/tokens/bound.js'

const PROXY_KEY = `lp-${'k'.repeat(43)}`
const BASE_URL = 'https://api.mistral.test'
const adapter = createMistralAdapter({ baseUrl: BASE_URL, apiKey: null })

// Parser tests see what each parser counts through a byte counter; the real counter is tested in tokens tests.
let counter: ByteCounter = byteCounter()
const newParser = (...args: [RouteMatch]): StreamParser => adapter.createStreamParser(args[0], (counter = byteCounter()))

function raw(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/mistral/${name}`, import.meta.url))
}
function json(name: string): unknown {
  return JSON.parse(raw(name).toString('utf8')) as unknown
}
function route(path: string): RouteMatch {
  const found = adapter.findRoute('POST', path)
  if (found === null) throw new Error(`no route for ${path}`)
  return found
}
const CHAT = route('/v1/chat/completions')
const FIM = route('/v1/fim/completions')
const EMBEDDINGS = route('/v1/embeddings')

/** The `data:` payloads of an SSE fixture. */
function dataEvents(bytes: Buffer): string[] {
  return bytes
    .toString('utf8')
    .split(/\r?\n\r?\n/)
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length))
}

describe('routes', () => {
  it.each<[string, string, string | null, boolean]>([
    ['POST', '/v1/chat/completions', 'chat', false],
    ['POST', '/v1/embeddings', 'embeddings', false],
    ['POST', '/v1/fim/completions', 'fim', false],
    ['GET', '/v1/models', null, true],
    ['HEAD', '/v1/models', null, true],
    ['POST', '/v1/agents/completions', null, false],
    ['POST', '/v1/ocr', null, false],
    ['POST', '/v1/conversations', null, false],
    ['POST', '/v1/chat/completions/', null, false],
    ['PUT', '/v1/chat/completions', null, false],
  ])('%s %s → route %s, free %s', (method, path, operation, free) => {
    expect(adapter.findRoute(method, path)?.operation ?? null).toBe(operation)
    expect(adapter.isFree(method, path)).toBe(free)
  })

  it('the body names the model; embeddings never stream', () => {
    expect(CHAT).toEqual({ operation: 'chat', pathModel: null, pathStream: null })
    expect(EMBEDDINGS).toEqual({ operation: 'embeddings', pathModel: null, pathStream: false })
  })
})

describe('the proxy key and the client credential', () => {
  it.each<[string, IncomingHttpHeaders, string | null, UpstreamCredential | null]>([
    ['Bearer proxy key', { authorization: `Bearer ${PROXY_KEY}` }, PROXY_KEY, null],
    ['a real key (path auth)', { authorization: 'Bearer mistral-real' }, 'mistral-real', { kind: 'apiKey', value: 'mistral-real' }],
    ['basic auth is no key', { authorization: 'Basic dXNlcjpwYXNz' }, null, null],
    ['nothing', {}, null, null],
  ])('%s', (_name, headers, key, credential) => {
    expect(adapter.readKey(headers, new URLSearchParams())).toBe(key)
    expect(adapter.readClientCredential(headers, new URLSearchParams())).toEqual(credential)
  })

  it('the server credential comes from configuration', () => {
    expect(adapter.defaultCredential()).toBeNull()
    expect(createMistralAdapter({ baseUrl: BASE_URL, apiKey: 'server-key' }).defaultCredential()).toEqual({ kind: 'apiKey', value: 'server-key' })
  })
})

describe('request facts', () => {
  it.each<[string, RouteMatch, Record<string, unknown>, RequestFacts]>([
    ['chat', CHAT, { model: 'mistral-small-latest', messages: [] }, { model: 'mistral-small-latest', stream: false, maxOutputTokens: null, choices: 1 }],
    ['streamed chat with n', CHAT, { model: 'm', messages: [], stream: true, max_tokens: 40, n: 3 }, { model: 'm', stream: true, maxOutputTokens: 120, choices: 3 }],
    ['fim', FIM, { model: 'codestral-latest', prompt: 'def f(', suffix: ')', max_tokens: 64, stream: true }, { model: 'codestral-latest', stream: true, maxOutputTokens: 64, choices: 1 }],
    ['embeddings', EMBEDDINGS, { model: 'mistral-embed', input: ['a', 'b'] }, { model: 'mistral-embed', stream: false, maxOutputTokens: 0, choices: 1 }],
  ])('%s', (_name, match, body, facts) => {
    expect(adapter.describe(match, body)).toEqual(facts)
  })

  it('refuses bodies it cannot meter', () => {
    expect(() => adapter.describe(CHAT, { messages: [] })).toThrow(ProxyError)
    expect(() => adapter.describe(CHAT, { model: 'm', max_tokens: -1 })).toThrow(ProxyError)
    expect(() => adapter.describe(FIM, { model: 'm', stream: 'yes' })).toThrow(ProxyError)
  })

  it.each<[string, RouteMatch, Record<string, unknown>, number]>([
    ['a plain chat', CHAT, { model: 'mistral-small-latest', messages: [{ role: 'user', content: 'hi' }] }, 0],
    ['safe_prompt prepends a safety prompt', CHAT, { model: 'mistral-small-latest', messages: [], safe_prompt: true }, PRIMING_TOKENS],
    ['Magistral gets its reasoning prompt by default', CHAT, { model: 'magistral-medium-latest', messages: [] }, PRIMING_TOKENS],
    ['prompt_mode reasoning', CHAT, { model: 'mistral-medium-latest', messages: [], prompt_mode: 'reasoning' }, PRIMING_TOKENS],
    ['fim adds nothing', FIM, { model: 'codestral-latest', prompt: 'x', safe_prompt: true }, 0],
    ['embeddings add nothing', EMBEDDINGS, { model: 'mistral-embed', input: 'x' }, 0],
  ])('input bound: %s', (_name, match, body, overhead) => {
    const bytes = Buffer.from(JSON.stringify(body))
    expect(adapter.boundInputTokens(match, body, bytes, 4200)).toBe(bytes.length + overhead)
  })

  it('estimates input as o200k × a factor (tiktoken is not Mistral’s tokenizer), bounds input by bytes and media parts', () => {
    const body = { model: 'pixtral-12b', messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: 'https://x/y.png' }] }] }
    const bytes = Buffer.from(JSON.stringify(body))
    expect(adapter.exactInput(CHAT, '/v1/chat/completions', body, 'pixtral-12b')).toEqual({ kind: 'local', counter: 'chat', model: 'o200k', factor: DEFAULT_TOKEN_FACTOR.mistral })
    // One factor per model: the pricing entry's, for input as for output.
    const price = { tokenizer: { encoding: 'o200k_base', factor: 1.4 } } as unknown as Price
    expect(adapter.exactInput(CHAT, '/v1/chat/completions', body, 'pixtral-12b', price)).toMatchObject({ factor: 1.4 })
    expect(adapter.exactInput(FIM, '/v1/fim/completions', { model: 'codestral-latest', prompt: 'x' }, 'codestral-latest')).toBeNull()
    expect(adapter.boundInputTokens(CHAT, body, bytes, 4200)).toBe(bytes.length + 4200)
  })
})

describe('prepared bodies', () => {
  it.each<[string, RouteMatch, Record<string, unknown>, number | null, Record<string, unknown>, boolean]>([
    ['a stream gets no stream_options (Mistral refuses it, usage comes unasked)', CHAT, { model: 'm', stream: true }, null, { model: 'm', stream: true }, false],
    ['the cap goes into max_tokens', CHAT, { model: 'm', stream: true }, 300, { model: 'm', stream: true, max_tokens: 300 }, true],
    ['lowered per choice', CHAT, { model: 'm', n: 3, max_tokens: 900 }, 300, { model: 'm', n: 3, max_tokens: 100 }, true],
    ['fim', FIM, { model: 'codestral-latest', prompt: 'x', max_tokens: 500 }, 64, { model: 'codestral-latest', prompt: 'x', max_tokens: 64 }, true],
    ['embeddings untouched', EMBEDDINGS, { model: 'e', input: 'x' }, 0, { model: 'e', input: 'x' }, false],
  ])('%s', (_name, match, body, cap, expected, changed) => {
    expect(adapter.prepareBody(match, body, adapter.describe(match, body), cap)).toBe(changed)
    expect(body).toEqual(expected)
  })
})

describe('the upstream request', () => {
  it('injects the credential as Bearer, forwards the path and query, drops the proxy key and control headers', () => {
    const headers: IncomingHttpHeaders = {
      authorization: `Bearer ${PROXY_KEY}`,
      'x-loopers-provider-key': 'mistral-real',
      'content-type': 'application/json',
      'accept-encoding': 'gzip, br',
      'user-agent': 'speakeasy-sdk/typescript 2.7.0',
    }
    const upstream = adapter.buildUpstream({
      route: CHAT,
      path: '/v1/chat/completions',
      query: 'x=1',
      headers,
      credential: { kind: 'apiKey', value: 'mistral-real' },
      body: Buffer.from('{"model":"m"}'),
    })
    expect(upstream.url).toBe(`${BASE_URL}/v1/chat/completions?x=1`)
    expect(upstream.headers.authorization).toBe('Bearer mistral-real')
    expect(upstream.headers['accept-encoding']).toBe('identity')
    expect(upstream.headers['user-agent']).toBe('speakeasy-sdk/typescript 2.7.0')
    expect(Object.keys(upstream.headers).filter((h) => h.startsWith('x-loopers-'))).toEqual([])
    expect(JSON.stringify(upstream)).not.toContain(PROXY_KEY)
    expect(upstream.body.toString()).toBe('{"model":"m"}')
  })
})

describe('usage', () => {
  it.each<[string, RouteMatch, string, Usage]>([
    ['chat', CHAT, 'chat.json', { inputTokens: 10, cachedInputTokens: 0, outputTokens: 13 }],
    ['embeddings', EMBEDDINGS, 'embeddings.json', { inputTokens: 15, cachedInputTokens: 0, outputTokens: 0 }],
  ])('%s', (_name, match, file, usage) => {
    expect(adapter.usageFromBody(match, json(file))).toEqual(usage)
  })

  it('the fixtures are what the Mistral SDK accepts', () => {
    expect(() => ChatCompletionResponse$inboundSchema.parse(json('chat.json'))).not.toThrow()
    expect(() => EmbeddingResponse$inboundSchema.parse(json('embeddings.json'))).not.toThrow()
    for (const file of ['chat-stream.sse', 'magistral-stream.sse', 'tool-stream.sse', 'fim-stream.sse']) {
      for (const data of dataEvents(raw(file)).filter((d) => d !== '[DONE]')) {
        expect(() => CompletionEvent$inboundSchema.parse({ data })).not.toThrow()
      }
    }
  })
})

function feed(match: RouteMatch, bytes: Buffer, at: number): { out: Buffer; parser: StreamParser } {
  const parser = newParser(match)
  const parts = at === 0 ? [bytes] : [bytes.subarray(0, at), bytes.subarray(at)]
  const out = Buffer.concat([...parts.map((part) => parser.push(part)), parser.flush()])
  return { out, parser }
}

describe('stream parser on Mistral streams, split at every byte', () => {
  it.each<[string, RouteMatch, Usage, number, string]>([
    ['chat-stream.sse', CHAT, { inputTokens: 10, cachedInputTokens: 0, outputTokens: 18 }, 58, 'Le ciel est bleu à cause de la diffusion Rayleigh ☀️.'],
    ['magistral-stream.sse', CHAT, { inputTokens: 35, cachedInputTokens: 0, outputTokens: 25 }, 42, 'The user asks for 2+2. That is 4.2 + 2 = 4'],
    ['tool-stream.sse (CRLF)', CHAT, { inputTokens: 91, cachedInputTokens: 0, outputTokens: 26 }, 50, 'retrieve_payment_status{"transaction_id": "T1001"}'],
    ['fim-stream.sse', FIM, { inputTokens: 17, cachedInputTokens: 0, outputTokens: 23 }, 67, '\n    if n <= 1:\n        return n\n    return fib(n - 1) + fib(n - 2)'],
  ])('%s', (name, match, usage, estimated, text) => {
    const bytes = raw(name.split(' ')[0]!)
    for (let at = 0; at < bytes.length; at++) {
      const { out, parser } = feed(match, bytes, at)
      expect(out.equals(bytes)).toBe(true)
      expect(parser.reported()).toEqual(usage)
      expect(counter.tokens()).toBe(estimated)
      expect(counter.text()).toBe(text)
    }
  })

  it('counts object-valued tool arguments', () => {
    const parser = newParser(CHAT)
    const chunk = { id: 'x', model: 'm', choices: [{ index: 0, delta: { tool_calls: [{ function: { name: 'f', arguments: { a: 1 } } }] }, finish_reason: null }] }
    parser.push(Buffer.from(`data: ${JSON.stringify(chunk)}\n\n`))
    expect(counter.tokens()).toBe('f'.length + '{"a":1}'.length)
  })
})

describe('errors', () => {
  const info = { status: 429, code: 'budget_exceeded', message: 'the daily budget cannot hold this request', details: { window: 'daily', limit_usd: 0.5 } }

  it('renders Mistral’s error object', () => {
    expect(adapter.errorBody(info)).toEqual({
      object: 'error',
      message: 'the daily budget cannot hold this request',
      type: 'budget_exceeded',
      param: null,
      code: 'budget_exceeded',
      window: 'daily',
      limit_usd: 0.5,
    })
  })

  it('the cutoff frame is an event the Mistral SDK refuses and the parser forwards as it is', () => {
    const frame = adapter.cutoffFrame(CHAT, info)
    const [data] = dataEvents(frame)
    expect(() => CompletionEvent$inboundSchema.parse({ data })).toThrow()
    const event = JSON.parse(data!) as Record<string, unknown>
    expect(event).toMatchObject({ object: 'error', code: 'budget_exceeded', error: { code: 'budget_exceeded', message: info.message } })
    const parser = newParser(CHAT)
    expect(parser.push(frame).equals(frame)).toBe(true)
  })
})
