import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { describe, expect, it } from 'vitest'
import { byteCounter, type ByteCounter } from '../support/counting.js'
import { ProxyError } from '../../src/errors.js'
import { createGeminiAdapter } from '../../src/providers/gemini.js'
import type { ErrorInfo, RouteMatch, StreamParser, UpstreamCredential } from '../../src/providers/types.js'
import { PRIMING_TOKENS } from '../../src/tokens/bound.js'
import { countRequest } from '../support/count-request.js'

const adapter = createGeminiAdapter({ baseUrl: 'https://generativelanguage.googleapis.com', apiKey: 'AIza-server-key' })

// Parser tests see what each parser counts through a byte counter; the real counter is tested in tokens tests.
let counter: ByteCounter = byteCounter()
const newParser = (...args: [RouteMatch]): StreamParser => adapter.createStreamParser(args[0], (counter = byteCounter()))
const LP_KEY = `lp-${'K'.repeat(43)}`
const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/gemini/${name}`, import.meta.url))
const json = (name: string): unknown => JSON.parse(fixture(name).toString('utf8'))

const GENERATE: RouteMatch = { operation: 'generateContent', pathModel: 'gemini-2.5-flash', pathStream: false }
const STREAM_SSE: RouteMatch = { operation: 'streamGenerateContent:sse', pathModel: 'gemini-2.5-flash', pathStream: true }
const STREAM_ARRAY: RouteMatch = { operation: 'streamGenerateContent', pathModel: 'gemini-2.0-flash', pathStream: true }
const EMBED: RouteMatch = { operation: 'embedContent', pathModel: 'gemini-embedding-001', pathStream: false }
const BUDGET: ErrorInfo = {
  status: 429,
  code: 'budget_exceeded',
  message: 'the daily budget cannot hold this request',
  details: { window: 'daily', limit_usd: 0.5, spent_usd: 0.49, resets_at: '2030-01-02T00:00:00.000Z' },
}

const q = (query: string): URLSearchParams => new URLSearchParams(query)

describe('routes', () => {
  it.each([
    ['POST', '/v1beta/models/gemini-2.5-flash:generateContent', '', GENERATE],
    ['POST', '/v1/models/gemini-2.5-flash:generateContent', 'alt=json', GENERATE],
    ['POST', '/v1alpha/models/gemini-2.5-flash:generateContent', '', GENERATE],
    ['POST', '/v1beta/models/gemini-2.5-flash:streamGenerateContent', 'alt=sse', STREAM_SSE],
    ['POST', '/v1beta/models/gemini-2.5-flash:streamGenerateContent', '$alt=sse&key=x', STREAM_SSE],
    ['POST', '/v1beta/models/gemini-2.0-flash:streamGenerateContent', '', STREAM_ARRAY],
    ['POST', '/v1beta/models/gemini-2.0-flash:streamGenerateContent', 'alt=json', STREAM_ARRAY],
    ['POST', '/v1beta/models/gemini-embedding-001:embedContent', '', EMBED],
    ['POST', '/v1beta/models/gemini-embedding-001:batchEmbedContents', '', { ...EMBED, operation: 'batchEmbedContents' }],
    ['POST', '/v1beta/tunedModels/my-model-7x2:generateContent', '', { ...GENERATE, pathModel: 'tunedModels/my-model-7x2' }],
    ['POST', '/v1beta/models/gemini-2.5-flash:countTokens', '', null],
    ['POST', '/v1beta/models/gemini-2.5-flash:batchGenerateContent', '', null],
    ['POST', '/v1beta/models/imagen-4.0-generate-001:predict', '', null],
    ['POST', '/v1beta/cachedContents', '', null],
    ['POST', '/upload/v1beta/files', '', null],
    ['POST', '/v2/models/gemini-2.5-flash:generateContent', '', null],
    ['POST', '/v1beta/models/gemini-2.5-flash:generateContent/extra', '', null],
    ['POST', '/v1beta/models/gemini-2.5-flash%3AgenerateContent', '', null],
    ['GET', '/v1beta/models/gemini-2.5-flash:generateContent', '', null],
  ])('%s %s?%s', (method, path, query, expected) => {
    expect(adapter.findRoute(method, path, q(query))).toEqual(expected)
  })

  it.each([
    ['alt=proto', '/v1beta/models/m:streamGenerateContent'],
    ['alt=media', '/v1beta/models/m:generateContent'],
    ['alt=sse', '/v1beta/models/m:generateContent'],
    ['alt=sse&alt=json', '/v1beta/models/m:streamGenerateContent'],
    ['alt=sse&$alt=proto', '/v1beta/models/m:streamGenerateContent'],
  ])('refuses %s on %s: its answer could not be metered', (query, path) => {
    expect(() => adapter.findRoute('POST', path, q(query))).toThrow(ProxyError)
  })

  it.each([
    ['GET', '/v1beta/models', true],
    ['GET', '/v1beta/models/gemini-2.5-flash', true],
    ['HEAD', '/v1/models', true],
    // Only model reads are free (issue 13: files, caches and batches are other tenants' data).
    ['GET', '/v1beta/files/abc-123', false],
    ['GET', '/v1beta/cachedContents', false],
    ['GET', '/v1beta/tunedModels', false],
    ['POST', '/v1beta/models/gemini-2.5-flash:countTokens', true],
    ['POST', '/v1/tunedModels/mine:countTokens', true],
    ['GET', '/v1beta/models/gemini-2.5-flash:generateContent', false],
    ['POST', '/v1beta/models/gemini-2.5-flash:generateContent', false],
    ['POST', '/v1beta/models', false],
    ['DELETE', '/v1beta/cachedContents/abc', false],
  ])('%s %s free: %s', (method, path, free) => {
    expect(adapter.isFree(method, path)).toBe(free)
  })
})

describe('keys and credentials', () => {
  it.each<[string, IncomingHttpHeaders, string, string | null]>([
    ['the x-goog-api-key header', { 'x-goog-api-key': LP_KEY }, '', LP_KEY],
    ['the key query parameter', {}, `key=${LP_KEY}`, LP_KEY],
    ['the lp- value when both are sent', { 'x-goog-api-key': 'AIza-real' }, `key=${LP_KEY}`, LP_KEY],
    ['the header when neither is an lp- key', { 'x-goog-api-key': 'AIza-a' }, 'key=AIza-b', 'AIza-a'],
    ['nothing', {}, 'key=', null],
  ])('reads the proxy key from %s', (_name, headers, query, expected) => {
    expect(adapter.readKey(headers, q(query))).toBe(expected)
  })

  it.each<[IncomingHttpHeaders, string, UpstreamCredential | null]>([
    [{ 'x-goog-api-key': 'AIza-header' }, 'key=AIza-query', { kind: 'apiKey', value: 'AIza-header' }],
    [{}, 'key=AIza-query', { kind: 'apiKey', value: 'AIza-query' }],
    [{}, '', null],
  ])('path auth reads the client credential from %j ?%s', (headers, query, expected) => {
    expect(adapter.readClientCredential(headers, q(query))).toEqual(expected)
  })

  it('has the server key as default credential', () => {
    expect(adapter.defaultCredential()).toEqual({ kind: 'apiKey', value: 'AIza-server-key' })
    expect(createGeminiAdapter({ baseUrl: 'http://x', apiKey: null }).defaultCredential()).toBeNull()
  })
})

describe('upstream request', () => {
  const credential: UpstreamCredential = { kind: 'apiKey', value: 'AIza-upstream' }
  const headers: IncomingHttpHeaders = {
    'x-goog-api-key': LP_KEY,
    authorization: `Bearer ${LP_KEY}`,
    'x-loopers-provider-key': 'AIza-upstream',
    'x-goog-fieldmask': 'candidates',
    'x-http-method-override': 'GET',
    'content-type': 'application/json',
    'x-goog-api-client': 'google-genai-sdk/2.32.0',
  }

  it.each([
    [GENERATE, '/v1beta/models/gemini-2.5-flash:generateContent', '', ''],
    [GENERATE, '/v1beta/models/gemini-2.5-flash:generateContent', `key=${LP_KEY}`, ''],
    [STREAM_SSE, '/v1beta/models/gemini-2.5-flash:streamGenerateContent', `alt=sse&key=${LP_KEY}`, '?alt=sse'],
    [STREAM_SSE, '/v1beta/models/gemini-2.5-flash:streamGenerateContent', `key=${LP_KEY}&alt=sse&%6Bey=${LP_KEY}&$key=x`, '?alt=sse'],
    [GENERATE, '/v1beta/models/gemini-2.5-flash:generateContent', 'fields=candidates&prettyPrint=false', '?prettyPrint=false'],
    [{ operation: 'free', pathModel: null, pathStream: null }, '/v1beta/models', `pageSize=5&key=${LP_KEY}&fields=models.name`, '?pageSize=5&fields=models.name'],
  ])('%j %s?%s', (route, path, query, expectedQuery) => {
    const upstream = adapter.buildUpstream({ route, path, query, headers, credential, body: Buffer.from('{}') })
    expect(upstream.url).toBe(`https://generativelanguage.googleapis.com${path}${expectedQuery}`)
    expect(upstream.headers['x-goog-api-key']).toBe('AIza-upstream')
    expect(upstream.headers['x-goog-api-client']).toBe('google-genai-sdk/2.32.0')
    expect(upstream.headers['accept-encoding']).toBe('identity')
    for (const gone of ['authorization', 'x-loopers-provider-key', 'x-goog-fieldmask', 'x-http-method-override']) {
      expect(upstream.headers[gone]).toBeUndefined()
    }
    expect(`${upstream.url} ${JSON.stringify(upstream.headers)}`).not.toContain('lp-')
  })

  it('sends no key when it has no credential, and never the proxy key', () => {
    const upstream = adapter.buildUpstream({ route: GENERATE, path: '/v1beta/models/m:generateContent', query: `key=${LP_KEY}`, headers, credential: null, body: Buffer.alloc(0) })
    expect(upstream.headers['x-goog-api-key']).toBeUndefined()
    expect(upstream.url).not.toContain('lp-')
  })
})

describe('request facts', () => {
  it.each([
    ['no generationConfig', GENERATE, {}, { model: 'gemini-2.5-flash', stream: false, maxOutputTokens: null, choices: 1 }],
    ['a cap', GENERATE, { generationConfig: { maxOutputTokens: 300 } }, { model: 'gemini-2.5-flash', stream: false, maxOutputTokens: 300, choices: 1 }],
    ['a cap per candidate', STREAM_SSE, { generationConfig: { maxOutputTokens: 300, candidateCount: 3 } }, { model: 'gemini-2.5-flash', stream: true, maxOutputTokens: 900, choices: 3 }],
    ['snake_case fields', STREAM_ARRAY, { generation_config: { max_output_tokens: 50, candidate_count: 2 } }, { model: 'gemini-2.0-flash', stream: true, maxOutputTokens: 100, choices: 2 }],
    ['protobuf zero defaults', GENERATE, { generationConfig: { maxOutputTokens: 0, candidateCount: 0 } }, { model: 'gemini-2.5-flash', stream: false, maxOutputTokens: null, choices: 1 }],
    ['candidates without a cap', GENERATE, { generationConfig: { candidateCount: 4 } }, { model: 'gemini-2.5-flash', stream: false, maxOutputTokens: null, choices: 4 }],
    ['an embedding', EMBED, { content: { parts: [{ text: 'x' }] } }, { model: 'gemini-embedding-001', stream: false, maxOutputTokens: 0, choices: 1 }],
  ])('%s', (_name, route, body, facts) => {
    expect(adapter.describe(route, body)).toEqual(facts)
  })

  it.each([
    ['a string cap', { generationConfig: { maxOutputTokens: '9' } }],
    ['a fractional cap', { generationConfig: { maxOutputTokens: 1.5 } }],
    ['a negative candidate count', { generationConfig: { candidateCount: -1 } }],
    ['a non-object config', { generationConfig: 'fast' }],
    ['both config spellings', { generationConfig: {}, generation_config: {} }],
    ['both cap spellings', { generationConfig: { maxOutputTokens: 5, max_output_tokens: 500 } }],
  ])('refuses %s', (_name, body) => {
    expect(() => adapter.describe(GENERATE, body)).toThrow(ProxyError)
  })
})

describe('input bound', () => {
  const bound = (route: RouteMatch, body: Record<string, unknown>): number =>
    adapter.boundInputTokens(route, body, Buffer.from(JSON.stringify(body)), 4200)
  const bytes = (body: unknown): number => Buffer.byteLength(JSON.stringify(body))
  const text = { contents: [{ role: 'user', parts: [{ text: 'héllo' }] }] }
  const CONTEXT = 2_097_152

  it.each([
    ['text: bytes only (no tools, no tool prompt)', GENERATE, text, bytes(text)],
    ['function declarations add the tool prompt', GENERATE, { ...text, tools: [{ functionDeclarations: [{ name: 'f' }] }] }, bytes({ ...text, tools: [{ functionDeclarations: [{ name: 'f' }] }] }) + PRIMING_TOKENS],
    ['an inline image', GENERATE, { contents: [{ parts: [{ inlineData: { mimeType: 'image/png', data: 'AAAA' } }] }] }, bytes({ contents: [{ parts: [{ inlineData: { mimeType: 'image/png', data: 'AAAA' } }] }] }) + 4200],
    ['a cached context', GENERATE, { ...text, cachedContent: 'cachedContents/abc' }, bytes({ ...text, cachedContent: 'cachedContents/abc' }) + CONTEXT],
    ['a continued generation', GENERATE, { continuationToken: 'tok' }, bytes({ continuationToken: 'tok' }) + CONTEXT],
    ['a built-in search tool', GENERATE, { ...text, tools: [{ googleSearch: {} }] }, bytes({ ...text, tools: [{ googleSearch: {} }] }) + PRIMING_TOKENS + CONTEXT],
    ['an uploaded file', GENERATE, { contents: [{ parts: [{ file_data: { file_uri: 'https://f/1' } }] }] }, bytes({ contents: [{ parts: [{ file_data: { file_uri: 'https://f/1' } }] }] }) + 4200 + CONTEXT],
    ['an embedding: bytes only', EMBED, { content: { parts: [{ text: 'héllo' }] } }, bytes({ content: { parts: [{ text: 'héllo' }] } })],
  ])('%s', (_name, route, body, expected) => {
    expect(bound(route, body)).toBe(expected)
  })

  it('counts exactly at the free countTokens endpoint of the same API version, except for content beyond the body', async () => {
    const path = '/v1beta/models/gemini-2.5-flash:generateContent'
    const body = { ...text, generationConfig: { maxOutputTokens: 5 } }
    const how = adapter.exactInput(GENERATE, path, body, 'gemini-2.5-flash')
    expect(how).toMatchObject({ kind: 'endpoint', path: '/v1beta/models/gemini-2.5-flash:countTokens' })
    if (how?.kind !== 'endpoint') throw new Error('endpoint expected')
    expect(await countRequest(how.body, body)).toEqual({ generateContentRequest: { model: 'models/gemini-2.5-flash', contents: text.contents } })
    expect(how.read({ totalTokens: 9 })).toBe(9)
    expect(adapter.exactInput(GENERATE, path, { ...text, cachedContent: 'cachedContents/abc' }, 'gemini-2.5-flash')).toBeNull()
  })
})

describe('prepareBody', () => {
  const facts = (choices: number) => ({ model: 'm', stream: false, maxOutputTokens: null, choices })

  it.each([
    ['creates generationConfig', {}, 1, 120, { generationConfig: { maxOutputTokens: 120 } }],
    ['lowers per candidate', { generationConfig: { maxOutputTokens: 1000, candidateCount: 3, temperature: 0 } }, 3, 100, { generationConfig: { maxOutputTokens: 33, candidateCount: 3, temperature: 0 } }],
    ['keeps the snake_case spelling', { generation_config: { max_output_tokens: 1000 } }, 1, 64, { generation_config: { max_output_tokens: 64 } }],
    ['never goes below one token', { generationConfig: { candidateCount: 4 } }, 4, 2, { generationConfig: { candidateCount: 4, maxOutputTokens: 1 } }],
  ])('%s', (_name, body: Record<string, unknown>, choices, cap, expected) => {
    expect(adapter.prepareBody(GENERATE, body, facts(choices), cap)).toBe(true)
    expect(body).toEqual(expected)
  })

  it('leaves the body alone without a cap, and embeddings always', () => {
    const body = { generationConfig: { maxOutputTokens: 9 } }
    expect(adapter.prepareBody(STREAM_SSE, body, facts(1), null)).toBe(false)
    expect(adapter.prepareBody(EMBED, body, facts(1), 5)).toBe(false)
    expect(body).toEqual({ generationConfig: { maxOutputTokens: 9 } })
  })
})

describe('usage of complete answers', () => {
  it.each([
    // 2100 prompt - 2048 cached + 25 tool-use prompt; 8 candidates + 138 thoughts.
    ['thinking, cache and tool use', GENERATE, json('generate-content.json'), { inputTokens: 77, cachedInputTokens: 2048, outputTokens: 146 }],
    ['a blocked prompt', GENERATE, json('generate-content-blocked.json'), { inputTokens: 14, cachedInputTokens: 0, outputTokens: 0 }],
    ['an embedding (no usage reported)', EMBED, json('embed-content.json'), null],
    ['not JSON', GENERATE, null, null],
  ])('%s', (_name, route, body, usage) => {
    expect(adapter.usageFromBody(route, body)).toEqual(usage)
  })
})

/** Feeds `bytes` split at `at`, then flushes; returns the forwarded bytes. */
function feed(parser: StreamParser, bytes: Buffer, at: number): Buffer {
  return Buffer.concat([parser.push(bytes.subarray(0, at)), parser.push(bytes.subarray(at)), parser.flush()])
}

const b = (s: string): number => Buffer.byteLength(s)

describe('stream parsers, fed fixtures split at every byte boundary', () => {
  it.each([
    ['SSE text with CRLF events', STREAM_SSE, 'stream-text.sse', { inputTokens: 9, cachedInputTokens: 0, outputTokens: 15 + 28 }, b('Bonjour, ') + b('le café ☕ est prêt — ') + b('🎉 voilà.')],
    [
      'SSE thought summaries, function call and code execution',
      STREAM_SSE,
      'stream-tools.sse',
      { inputTokens: 1200 - 1024 + 30, cachedInputTokens: 1024, outputTokens: 36 + 40 },
      b('**Planning the lookup**\nThe user wants the weather in Zürich.') +
        8 + b('get_weather') + b('{"city":"Zürich","unit":"celsius"}') +
        8 + b('print(21 * 2)') + 8 + b('42\n') + b('It is 21 °C.'),
    ],
    ['SSE error event', STREAM_SSE, 'stream-error.sse', { inputTokens: 5, cachedInputTokens: 0, outputTokens: 2 }, b('Partial ')],
    [
      'JSON array',
      STREAM_ARRAY,
      'stream-array.json',
      { inputTokens: 7, cachedInputTokens: 0, outputTokens: 33 },
      b('Arrays end with ] and objects with } — "quoted" \\ and [brackets] {braces} ünïcödé') + 8 + b('lookup') + b('{"q":"}]\\"["}') + b(' done.'),
    ],
    ['JSON array with an error element', STREAM_ARRAY, 'stream-array-error.json', { inputTokens: 5, cachedInputTokens: 0, outputTokens: 2 }, b('Partial ')],
  ])('%s', (_name, route, name, usage, estimated) => {
    const bytes = fixture(name)
    for (let at = 0; at <= bytes.length; at++) {
      const parser = newParser(route)
      expect(feed(parser, bytes, at).equals(bytes), `split at ${at}`).toBe(true)
      expect(parser.reported(), `split at ${at}`).toEqual(usage)
      expect(counter.tokens(), `split at ${at}`).toBe(estimated)
      // The meter's bound is the count itself here (each usage report reads the count anyway).
      expect(parser.outputBound(), `split at ${at}`).toBe(parser.outputTokens())
    }
  })

  it('reports usage fields only once the stream reported them', () => {
    const parser = newParser(STREAM_SSE)
    expect(parser.reported()).toEqual({})
    parser.push(Buffer.from('data: {"candidates":[{"content":{"parts":[{"text":"ab"}]}}],"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4}}\n\n'))
    expect(parser.reported()).toEqual({ inputTokens: 4, cachedInputTokens: 0 })
    expect(counter.tokens()).toBe(2)
    parser.push(Buffer.from('data: {"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"iVBO"}}]}}]}\n\n'))
    expect(parser.reported()).toEqual({ inputTokens: 4, cachedInputTokens: 0 })
    expect(counter.tokens()).toBe(2 + 4200)
  })

  it('counts every byte of a streamed body that is not a JSON array', () => {
    const parser = newParser(STREAM_ARRAY)
    const body = Buffer.from('<html>oops</html>')
    expect(parser.push(body).equals(body)).toBe(true)
    expect(counter.tokens()).toBe(body.length)
  })
})

describe('errors and cutoff frames', () => {
  it.each([
    [400, 'invalid_request', 'INVALID_ARGUMENT'],
    [401, 'invalid_key', 'UNAUTHENTICATED'],
    [403, 'provider_not_allowed', 'PERMISSION_DENIED'],
    [404, 'not_found', 'NOT_FOUND'],
    [413, 'payload_too_large', 'INVALID_ARGUMENT'],
    [429, 'session_steps_exceeded', 'RESOURCE_EXHAUSTED'],
    [502, 'upstream_unreachable', 'UNAVAILABLE'],
    [503, 'budget_unavailable', 'UNAVAILABLE'],
    [504, 'upstream_timeout', 'DEADLINE_EXCEEDED'],
  ])('%d %s is %s with the code as the ErrorInfo reason', (status, code, googleStatus) => {
    expect(adapter.errorBody({ status, code, message: 'm' })).toEqual({
      error: {
        code: status,
        message: 'm',
        status: googleStatus,
        details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: code, domain: 'loopers', metadata: {} }],
      },
    })
  })

  it('puts budget details in the ErrorInfo metadata as strings', () => {
    const body = adapter.errorBody({ ...BUDGET, details: { ...BUDGET.details, window: null } }) as { error: { details: Array<{ metadata: unknown }> } }
    expect(body.error.details[0]?.metadata).toEqual({ limit_usd: '0.5', spent_usd: '0.49', resets_at: '2030-01-02T00:00:00.000Z' })
  })

  it('ends an SSE stream with a data event carrying the error object and its numeric code', () => {
    const frame = adapter.cutoffFrame(STREAM_SSE, BUDGET).toString('utf8')
    expect(frame.startsWith('data: ')).toBe(true)
    expect(frame.endsWith('\n\n')).toBe(true)
    const error = (JSON.parse(frame.slice('data: '.length)) as { error: Record<string, unknown> }).error
    expect(error).toMatchObject({ code: 429, status: 'RESOURCE_EXHAUSTED', message: BUDGET.message })
    expect(newParser(STREAM_SSE).cutoffFrame).toBeUndefined()
  })

  it('keeps a cut JSON array well-formed whatever the client already has', () => {
    const bytes = fixture('stream-array.json')
    const parser = newParser(STREAM_ARRAY)
    // The client may have every prefix of frames the parser returned, fed here in awkward pieces.
    const cuts = [0]
    let forwarded = 0
    for (let at = 0; at < bytes.length; at += 97) {
      forwarded += parser.push(bytes.subarray(at, at + 97)).length
      if (forwarded !== cuts[cuts.length - 1]) cuts.push(forwarded)
    }
    expect(cuts.length).toBeGreaterThanOrEqual(4)
    for (const cut of cuts) {
      const frame = parser.cutoffFrame?.(BUDGET, cut)
      expect(frame).toBeDefined()
      const text = bytes.subarray(0, cut).toString('utf8') + frame!.toString('utf8')
      const array = JSON.parse(text) as Array<Record<string, unknown>>
      if (cut === bytes.length) {
        // The array was complete: nothing can follow it.
        expect(frame!.length).toBe(0)
        continue
      }
      expect(array[array.length - 1]).toEqual(adapter.errorBody(BUDGET))
    }
  })
})
