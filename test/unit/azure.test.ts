import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { byteCounter, type ByteCounter } from '../support/counting.js'
import { ProxyError } from '../../src/errors.js'
import { loadPricing } from '../../src/pricing/table.js'
import {
  createAzureAdapter,
  forwardableAzureQuery,
  isLegacyApiVersion,
  isSafeAzurePath,
  toLegacyChatBody,
} from '../../src/providers/azure.js'
import type { RequestFacts, RouteMatch, StreamParser, UpstreamCredential, Usage } from '../../src/providers/types.js'

const PROXY_KEY = `lp-${'k'.repeat(43)}`
const ENDPOINT = 'https://myres.openai.azure.com'
const adapter = createAzureAdapter({ endpoint: ENDPOINT, apiKey: null })

// Parser tests see what each parser counts through a byte counter; the real counter is tested in tokens tests.
let counter: ByteCounter = byteCounter()
const newParser = (...args: [RouteMatch]): StreamParser => adapter.createStreamParser(args[0], (counter = byteCounter()))
const CHAT: RouteMatch = { operation: 'chat', pathModel: 'my-gpt4o', pathStream: null }
const GPT4O_PRICE = loadPricing({ filePath: null }).lookup('openai', 'gpt-4o')!
const ENTRA_TOKEN = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2NvZ25pdGl2ZXNlcnZpY2VzIn0.c2lnbmF0dXJl'

function raw(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/azure/${name}`, import.meta.url))
}
function json(name: string): unknown {
  return JSON.parse(raw(name).toString('utf8')) as unknown
}

function route(method: string, path: string): RouteMatch {
  const found = adapter.findRoute(method, path)
  if (found === null) throw new Error(`no route for ${method} ${path}`)
  return found
}

describe('routes', () => {
  it.each<[string, string, string | null, string | null, boolean]>([
    ['POST', '/openai/deployments/my-gpt4o/chat/completions', 'chat', 'my-gpt4o', false],
    ['POST', '/openai/deployments/my-embed/embeddings', 'embeddings', 'my-embed', false],
    ['POST', '/openai/deployments/gpt-4.1_mini/responses', 'responses', 'gpt-4.1_mini', false],
    ['POST', '/openai/v1/chat/completions', 'chat', null, false],
    ['POST', '/openai/v1/responses', 'responses', null, false],
    ['POST', '/openai/v1/embeddings', 'embeddings', null, false],
    ['POST', '/openai/responses', 'responses', null, false],
    ['GET', '/openai/models', null, null, true],
    ['GET', '/openai/v1/models', null, null, true],
    // Only model reads are free (issue 13: any other GET could read another tenant's data with the server key).
    ['HEAD', '/openai/deployments/my-gpt4o', null, null, false],
    ['GET', '/openai/models/gpt-4o', null, null, true],
    ['GET', '/openai/files/file-1/content', null, null, false],
    ['GET', '/models', null, null, false],
    ['POST', '/openai/deployments/my-gpt4o/completions', null, null, false],
    ['POST', '/openai/deployments/my-gpt4o/audio/speech', null, null, false],
    ['POST', '/openai/deployments/my-gpt4o/chat/completions/', null, null, false],
    ['POST', '/openai/deployments/../chat/completions', null, null, false],
    ['POST', '/openai/deployments/./chat/completions', null, null, false],
    ['POST', '/openai/deployments/%2e%2e/chat/completions', null, null, false],
    ['POST', '/openai/deployments/x@evil.example/chat/completions', null, null, false],
    ['POST', '/openai/deployments/a%2Fb/chat/completions', null, null, false],
    ['POST', `/openai/deployments/${'d'.repeat(65)}/chat/completions`, null, null, false],
    ['POST', '/openai/deployments/my-gpt4o/../../v1/chat/completions', null, null, false],
    ['PUT', '/openai/v1/chat/completions', null, null, false],
    ['POST', '/v1/chat/completions', null, null, false],
  ])('%s %s → route %s, deployment %s, free %s', (method, path, operation, deployment, free) => {
    const found = adapter.findRoute(method, path)
    expect(found?.operation ?? null).toBe(operation)
    expect(found?.pathModel ?? null).toBe(deployment)
    expect(adapter.isFree(method, path)).toBe(free)
  })
})

describe('the proxy key and the client credential', () => {
  it.each<[string, IncomingHttpHeaders, string | null, UpstreamCredential | null]>([
    ['api-key (AzureOpenAI)', { 'api-key': PROXY_KEY }, PROXY_KEY, null],
    ['Bearer (OpenAI SDK on the v1 API)', { authorization: `Bearer ${PROXY_KEY}` }, PROXY_KEY, null],
    ['lp- bearer beside a real api-key', { 'api-key': 'azure-real-key', authorization: `Bearer ${PROXY_KEY}` }, PROXY_KEY, { kind: 'apiKey', value: 'azure-real-key' }],
    ['a real api-key only (path auth)', { 'api-key': 'azure-real-key' }, 'azure-real-key', { kind: 'apiKey', value: 'azure-real-key' }],
    ['an Entra token only (path auth)', { authorization: `Bearer ${ENTRA_TOKEN}` }, ENTRA_TOKEN, { kind: 'apiKey', value: ENTRA_TOKEN }],
    ['blank api-key', { 'api-key': ' ' }, null, null],
    ['nothing', {}, null, null],
  ])('%s', (_name, headers, key, credential) => {
    expect(adapter.readKey(headers, new URLSearchParams())).toBe(key)
    expect(adapter.readClientCredential(headers, new URLSearchParams())).toEqual(credential)
  })

  it('the server credential comes from configuration', () => {
    expect(adapter.defaultCredential()).toBeNull()
    expect(createAzureAdapter({ endpoint: ENDPOINT, apiKey: 'azure-server' }).defaultCredential()).toEqual({ kind: 'apiKey', value: 'azure-server' })
  })
})

describe('request facts', () => {
  it.each<[string, string, Record<string, unknown>, RequestFacts]>([
    ['deployment names the model', '/openai/deployments/my-gpt4o/chat/completions', { model: 'gpt-4o', messages: [] }, { model: 'my-gpt4o', stream: false, maxOutputTokens: null, choices: 1 }],
    ['deployment without a body model', '/openai/deployments/my-gpt4o/chat/completions', { messages: [], stream: true, max_tokens: 50, n: 2 }, { model: 'my-gpt4o', stream: true, maxOutputTokens: 100, choices: 2 }],
    ['v1 API: body model', '/openai/v1/chat/completions', { model: 'dep-1', messages: [], max_completion_tokens: 64 }, { model: 'dep-1', stream: false, maxOutputTokens: 64, choices: 1 }],
    ['responses through the SDK', '/openai/responses', { model: 'dep-2', input: 'hi', stream: true, max_output_tokens: 30 }, { model: 'dep-2', stream: true, maxOutputTokens: 30, choices: 1 }],
    ['embeddings', '/openai/deployments/my-embed/embeddings', { input: 'x' }, { model: 'my-embed', stream: false, maxOutputTokens: 0, choices: 1 }],
  ])('%s', (_name, path, body, facts) => {
    expect(adapter.describe(route('POST', path), body)).toEqual(facts)
  })

  it('refuses a v1 request without a model, and every request when no endpoint is configured', () => {
    expect(() => adapter.describe(route('POST', '/openai/v1/chat/completions'), { messages: [] })).toThrow(ProxyError)
    const unconfigured = createAzureAdapter({ endpoint: null, apiKey: 'k' })
    const error = (() => {
      try {
        unconfigured.describe(CHAT, { messages: [] })
      } catch (e) {
        return e
      }
      return null
    })()
    expect(error).toBeInstanceOf(ProxyError)
    expect((error as ProxyError).code).toBe('invalid_request')
    expect((error as ProxyError).message).toContain('LOOPERS_AZURE_ENDPOINT')
    expect(() =>
      unconfigured.buildUpstream({ route: CHAT, path: '/openai/models', query: '', headers: {}, credential: null, body: Buffer.alloc(0) }),
    ).toThrow(/LOOPERS_AZURE_ENDPOINT/)
  })

  it('counts exactly with both encodings (a deployment name does not say which one its model uses)', () => {
    const body = { messages: [{ role: 'user', content: 'hi' }] }
    const path = '/openai/deployments/my-gpt4o/chat/completions'
    const both = { kind: 'local', counter: 'chat', model: 'my-gpt4o', factor: 1, anyEncoding: true }
    expect(adapter.exactInput(CHAT, path, body, 'my-gpt4o')).toEqual(both)
    expect(adapter.exactInput(CHAT, path, body, 'my-gpt4o', GPT4O_PRICE)).toEqual(both)
  })

  it('counts as the OpenAI model its price entry names, with that model\'s encoding only', () => {
    const body = { messages: [{ role: 'user', content: 'hi' }] }
    const path = '/openai/deployments/my-gpt4o/chat/completions'
    expect(adapter.exactInput(CHAT, path, body, 'my-gpt4o', { ...GPT4O_PRICE, model: 'gpt-4o' })).toEqual({ kind: 'local', counter: 'chat', model: 'gpt-4o', factor: 1 })
  })

  it('says how to price an unpriced deployment, both ways', () => {
    const hint = adapter.unpricedHint?.('my-dep') ?? ''
    expect(hint).toContain('LOOPERS_AZURE_DEPLOYMENTS=my-dep=gpt-4o')
    expect(hint).toContain('{"azure": {"my-dep": {"model": "gpt-4o"}}}')
  })

  it('bounds input by body bytes and media parts', () => {
    const body = { messages: [{ role: 'user', content: [{ type: 'text', text: 'see' }, { type: 'image_url', image_url: { url: 'data:x' } }] }] }
    const bytes = Buffer.from(JSON.stringify(body))
    expect(adapter.boundInputTokens(CHAT, body, bytes, 500)).toBe(bytes.length + 500)
  })
})

describe('the upstream request', () => {
  const headers: IncomingHttpHeaders = {
    'api-key': PROXY_KEY,
    authorization: `Bearer ${PROXY_KEY}`,
    'x-loopers-provider-key': 'azure-real-key',
    'x-loopers-session-id': 's1',
    'content-type': 'application/json',
    'accept-encoding': 'gzip',
    host: 'evil.example',
    'x-ms-client-request-id': 'abc',
  }

  it.each<[string, string, string, UpstreamCredential, Record<string, string | undefined>]>([
    [
      'api key into api-key',
      '/openai/deployments/my-gpt4o/chat/completions',
      'api-version=2024-10-21',
      { kind: 'apiKey', value: 'azure-real-key' },
      { 'api-key': 'azure-real-key', authorization: undefined },
    ],
    [
      'Entra token as Bearer',
      '/openai/v1/chat/completions',
      'api-version=preview',
      { kind: 'apiKey', value: ENTRA_TOKEN },
      { 'api-key': undefined, authorization: `Bearer ${ENTRA_TOKEN}` },
    ],
  ])('%s', (_name, path, query, credential, expected) => {
    const upstream = adapter.buildUpstream({ route: route('POST', path), path, query, headers, credential, body: Buffer.from('{}') })
    expect(upstream.url).toBe(`${ENDPOINT}${path}?${query}`)
    expect(upstream.headers['api-key']).toBe(expected['api-key'])
    expect(upstream.headers.authorization).toBe(expected.authorization)
    expect(upstream.headers['accept-encoding']).toBe('identity')
    expect(upstream.headers['x-ms-client-request-id']).toBe('abc')
    expect(upstream.headers.host).toBeUndefined()
    expect(Object.keys(upstream.headers).filter((h) => h.startsWith('x-loopers-'))).toEqual([])
    expect(JSON.stringify(upstream)).not.toContain(PROXY_KEY)
  })

  it('connects only to the configured endpoint, whatever the path says', () => {
    for (const path of ['/openai/@evil.example/models', '/openai//evil.example/models', '/openai/http:/evil.example/models']) {
      const upstream = adapter.buildUpstream({ route: CHAT, path, query: '', headers, credential: null, body: Buffer.alloc(0) })
      expect(new URL(upstream.url).origin).toBe(ENDPOINT)
    }
    for (const path of ['/openai/../evil', '/openai/%2E%2E/x', '/openai/a%2fb', '/openai/a\\b', '/evil', '/openai/%zz']) {
      expect(() => adapter.buildUpstream({ route: CHAT, path, query: '', headers, credential: null, body: Buffer.alloc(0) })).toThrow(ProxyError)
    }
  })

  it.each([
    ['api-version=2024-10-21', '?api-version=2024-10-21'],
    ['api-version=2024-10-21&api-key=secret', '?api-version=2024-10-21'],
    ['API-KEY=secret&api-version=preview', '?api-version=preview'],
    ['subscription-key=s&access_token=t&sig=x&code=c&api-version=v', '?api-version=v'],
    [`api-version=1&x=${PROXY_KEY}`, '?api-version=1'],
    [`api-version=1&x=${encodeURIComponent(PROXY_KEY)}`, '?api-version=1'],
    ['api%2Dkey=secret&a=b%20c', '?a=b%20c'],
    ['', ''],
    ['&&', ''],
    ['bad=%zz&api-version=1', '?api-version=1'],
  ])('query %s → %s', (query, forwarded) => {
    expect(forwardableAzureQuery(query)).toBe(forwarded)
  })

  it.each([
    ['/openai/deployments/d/chat/completions', true],
    ['/openai/v1/models', true],
    ['/openai/..', false],
    ['/openai/x/%2e%2E/y', false],
    ['/openai/x%5Cy', false],
    ['/other/models', false],
  ])('safe path %s → %s', (path, safe) => {
    expect(isSafeAzurePath(path)).toBe(safe)
  })
})

describe('api-version differences', () => {
  it.each([
    ['api-version=2023-05-15', true],
    ['api-version=2024-06-01', true],
    ['api-version=2024-08-01-preview', true],
    ['api-version=2024-09-01-preview', false],
    ['api-version=2024-10-21', false],
    ['api-version=2025-04-01-preview', false],
    ['api-version=preview', false],
    ['api-version=latest', false],
    ['', false],
  ])('%s legacy → %s', (query, legacy) => {
    expect(isLegacyApiVersion(query)).toBe(legacy)
  })

  it('a legacy api-version gets max_tokens and no stream_options; a modern one gets the body as prepared', () => {
    const path = '/openai/deployments/my-gpt4o/chat/completions'
    // What reaches the upstream for `body` sent with `query`: the route as matched, the body as prepared (cap `cap`).
    const send = (query: string, body: Record<string, unknown>, cap: number | null) => {
      const matched = adapter.findRoute('POST', path, new URLSearchParams(query)) as RouteMatch
      const changed = adapter.prepareBody(matched, body, adapter.describe(matched, body), cap)
      const upstream = adapter.buildUpstream({ route: matched, path, query, headers: {}, credential: null, body: Buffer.from(JSON.stringify(body)) })
      return { changed, sent: JSON.parse(upstream.body.toString()) as Record<string, unknown> }
    }
    expect(send('api-version=2024-06-01', { messages: [], stream: true }, 300)).toEqual({ changed: true, sent: { messages: [], stream: true, max_tokens: 300 } })
    expect(send('api-version=2024-10-21', { messages: [], stream: true }, 300)).toEqual({
      changed: true,
      sent: { messages: [], stream: true, stream_options: { include_usage: true }, max_completion_tokens: 300 },
    })
    expect(send('api-version=2024-02-01', { messages: [], max_tokens: 500, max_completion_tokens: 200 }, null)).toEqual({ changed: true, sent: { messages: [], max_tokens: 200 } })
    // A client's own stream_options is removed too: a legacy version refuses it.
    expect(send('api-version=2024-02-01', { messages: [], stream_options: { include_usage: true } }, null)).toEqual({ changed: true, sent: { messages: [] } })
  })

  it('leaves bodies without those fields unchanged, and other operations alone', () => {
    const legacy = new URLSearchParams('api-version=2023-05-15')
    const chat = adapter.findRoute('POST', '/openai/deployments/my-gpt4o/chat/completions', legacy) as RouteMatch
    for (const body of [{ messages: [], max_tokens: 5 }, { messages: [{ role: 'user', content: 'what is "stream_options"?' }] }]) {
      const before = JSON.stringify(body)
      expect(adapter.prepareBody(chat, body, adapter.describe(chat, body), null)).toBe(false)
      expect(JSON.stringify(body)).toBe(before)
    }
    const embeddingsRoute = adapter.findRoute('POST', '/openai/deployments/my-embed/embeddings', legacy) as RouteMatch
    const embeddings = { input: 'x', max_completion_tokens: 3 }
    expect(adapter.prepareBody(embeddingsRoute, embeddings, adapter.describe(embeddingsRoute, embeddings), null)).toBe(false)
    expect(embeddings).toEqual({ input: 'x', max_completion_tokens: 3 })
    // Routes matched without a query, or under a modern version, keep what the client sent.
    const modern = adapter.findRoute('POST', '/openai/deployments/my-gpt4o/chat/completions', new URLSearchParams('api-version=2024-10-21')) as RouteMatch
    const kept = { messages: [], max_completion_tokens: 9 }
    expect(adapter.prepareBody(modern, kept, adapter.describe(modern, kept), null)).toBe(false)
    expect(toLegacyChatBody({ messages: [] })).toBe(false)
  })
})

describe('usage', () => {
  it.each<[string, string, Usage]>([
    ['chat (cached prompt tokens are inside prompt_tokens)', 'chat.json', { inputTokens: 176, cachedInputTokens: 1024, outputTokens: 9 }],
    ['embeddings', 'embeddings.json', { inputTokens: 8, cachedInputTokens: 0, outputTokens: 0 }],
  ])('%s', (_name, file, usage) => {
    expect(adapter.usageFromBody(CHAT, json(file))).toEqual(usage)
  })

  it('responses', () => {
    expect(adapter.usageFromBody(route('POST', '/openai/responses'), json('responses.json'))).toEqual({ inputTokens: 20, cachedInputTokens: 0, outputTokens: 11 })
  })

  it('a prompt refused by the content filter bills its input; other errors bill nothing', () => {
    expect(adapter.errorBillsInput?.(CHAT, 400, json('content-filter-error.json'))).toBe(true)
    expect(adapter.errorBillsInput?.(CHAT, 429, json('rate-limit-error.json'))).toBe(false)
    expect(adapter.errorBillsInput?.(CHAT, 400, { error: { code: 'invalid_request' } })).toBe(false)
    expect(adapter.errorBillsInput?.(CHAT, 400, null)).toBe(false)
  })
})

/** Feeds `bytes` split at `at` (and in one piece when `at` is 0); returns the forwarded bytes and the parser. */
function feed(bytes: Buffer, at: number): { out: Buffer; parser: StreamParser } {
  const parser = newParser(CHAT)
  const parts = at === 0 ? [bytes] : [bytes.subarray(0, at), bytes.subarray(at)]
  const out = Buffer.concat([...parts.map((part) => parser.push(part)), parser.flush()])
  return { out, parser }
}

describe('stream parser on Azure streams, split at every byte', () => {
  it.each<[string, Usage, number, string]>([
    [
      'chat-stream.sse',
      { inputTokens: 243, cachedInputTokens: 1280, outputTokens: 14 },
      51,
      'Bonjour! Voilà un café ☕ et des 日本語 🙂.',
    ],
    ['chat-stream-tools.sse', { inputTokens: 88, cachedInputTokens: 0, outputTokens: 17 }, 29, 'get_weather{"city":"Zürich"}'],
    ['chat-stream-filtered.sse', {}, 27, "Hey Jude, don't make it bad"],
  ])('%s', (file, usage, estimated, text) => {
    const bytes = raw(file)
    for (let at = 0; at < bytes.length; at++) {
      const { out, parser } = feed(bytes, at)
      expect(out.equals(bytes)).toBe(true)
      expect(parser.reported()).toEqual(usage)
      expect(counter.tokens()).toBe(estimated)
      expect(counter.text()).toBe(text)
    }
  })

  it('forwards whole events only', () => {
    const bytes = raw('chat-stream.sse')
    const parser = newParser(CHAT)
    const firstEvent = bytes.indexOf('\n\n') + 2
    expect(parser.push(bytes.subarray(0, firstEvent - 1)).length).toBe(0)
    expect(parser.push(bytes.subarray(firstEvent - 1, firstEvent + 5)).toString()).toBe(bytes.subarray(0, firstEvent).toString())
  })
})

describe('errors', () => {
  it('renders OpenAI-shaped errors with the code inside', () => {
    const info = { status: 429, code: 'budget_exceeded', message: 'no budget', details: { window: 'daily', limit_usd: 1 } }
    expect(adapter.errorBody(info)).toEqual({ error: { message: 'no budget', type: 'budget_exceeded', param: null, code: 'budget_exceeded', window: 'daily', limit_usd: 1 } })
    const frame = adapter.cutoffFrame(CHAT, info).toString()
    expect(frame.endsWith('data: [DONE]\n\n')).toBe(true)
    const event = JSON.parse(frame.split('\n\n')[0]!.slice('data: '.length)) as { error: { code: string } }
    expect(event.error.code).toBe('budget_exceeded')
  })
})

describe('pricing by deployment', () => {
  const fallbackPrices = fileURLToPath(new URL('../fixtures/azure/fallback-prices.json', import.meta.url))
  const testPrices = fileURLToPath(new URL('../fixtures/pricing/test-prices.json', import.meta.url))

  it('prices a deployment by name, else by the azure _fallback entry, else not at all', () => {
    const withFallback = loadPricing({ filePath: fallbackPrices })
    expect(withFallback.lookup('azure', 'prod-gpt4o')?.inputPer1M).toBe(2_500_000)
    expect(withFallback.lookup('azure', 'any-other-deployment')?.inputPer1M).toBe(5_000_000)
    const without = loadPricing({ filePath: testPrices })
    expect(without.lookup('azure', 'my-gpt4o')?.inputPer1M).toBe(1_000_000)
    expect(without.lookup('azure', 'any-other-deployment')).toBeNull()
  })
})
