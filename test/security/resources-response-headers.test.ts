import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestKey } from '../support/e2e.js'
import { startFakeServer, type FakeServer } from '../support/fake-server.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 13, finding 9: upstream response headers were relayed wholesale, handing every key holder the
// server-held account's organisation and project ids. Only what SDKs need is relayed.
const ACCOUNT_HEADERS = {
  'openai-organization': 'org-secret-123',
  'openai-project': 'proj_secret_456',
  'anthropic-organization-id': 'a1b2c3-org',
  'set-cookie': '__cf_bm=tracking; path=/',
  'cf-ray': '8f00-IAD',
  'x-envoy-upstream-service-time': '12',
  'x-loopers-budget-remaining-usd': '999999',
}
const SDK_HEADERS = {
  'x-request-id': 'req_123',
  'request-id': 'req_anthropic_1',
  'x-ratelimit-remaining-requests': '99',
  'anthropic-ratelimit-tokens-remaining': '1000',
  'retry-after-ms': '10',
  'x-should-retry': 'false',
  'openai-processing-ms': '42',
  'x-amzn-bedrock-input-token-count': '12',
}

let redis: TestRedis
let upstream: FakeServer
let proxy: TestProxy
let key: string

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFakeServer((req, res, raw) => {
    const headers = { ...ACCOUNT_HEADERS, ...SDK_HEADERS }
    const path = (req.url ?? '').split('?')[0]
    // Only its own two paths answer, so nothing else mistakes this fake for a proxy (e.g. its /health).
    if (path !== '/v1/models' && path !== '/v1/chat/completions') {
      res.writeHead(404)
      return void res.end()
    }
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json', ...headers })
      return void res.end(JSON.stringify({ object: 'list', data: [] }))
    }
    const body = JSON.parse(raw.toString('utf8')) as { stream?: boolean; model?: string }
    if (raw.toString('utf8').includes('please-fail')) {
      res.writeHead(429, { 'content-type': 'application/json', ...headers })
      return void res.end('{"error":{"message":"slow down","type":"rate_limit","param":null,"code":"rate_limited"}}')
    }
    const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream', ...headers })
      const chunk = { id: 'c', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [{ index: 0, delta: { content: 'hi' }, finish_reason: 'stop' }] }
      res.write(`data: ${JSON.stringify(chunk)}\n\n`)
      res.write(`data: ${JSON.stringify({ ...chunk, choices: [], usage })}\n\n`)
      return void res.end('data: [DONE]\n\n')
    }
    // A provider that names no content type: the client still gets one (as Fastify typed a Buffer) and the length.
    res.writeHead(200, raw.toString('utf8').includes('no-content-type') ? headers : { 'content-type': 'application/json', ...headers })
    res.end(
      JSON.stringify({
        id: 'c',
        object: 'chat.completion',
        created: 1,
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi', refusal: null }, finish_reason: 'stop', logprobs: null }],
        usage,
      }),
    )
  })
  proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_OPENAI_API_KEY: 'sk-upstream' })
  ;({ key } = await createTestKey(proxy, 'headers', ['openai'], { daily: 1_000_000 }))
})

afterAll(async () => {
  await proxy?.close()
  await upstream?.close()
  await redis?.stop()
})

function expectOnlySdkHeaders(headers: Headers): void {
  for (const name of Object.keys(ACCOUNT_HEADERS)) {
    if (name === 'x-loopers-budget-remaining-usd') expect(headers.get(name)).not.toBe(ACCOUNT_HEADERS[name])
    else expect(headers.get(name)).toBeNull()
  }
  for (const [name, value] of Object.entries(SDK_HEADERS)) expect(headers.get(name)).toBe(value)
}

function post(body: Record<string, unknown>): Promise<Response> {
  return fetch(`${proxy.url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

const messages = [{ role: 'user', content: 'hi' }]

describe('upstream response headers: account identifiers stay behind the proxy', () => {
  it.each([
    ['a non-streamed answer', { model: 'gpt-test', messages }, 200],
    ['a stream', { model: 'gpt-test', messages, stream: true }, 200],
    ['an upstream error', { model: 'gpt-test', messages: [{ role: 'user', content: 'please-fail' }] }, 429],
  ] as const)('%s relays only what SDKs read', async (_name, body, status) => {
    const response = await post(body)
    await response.arrayBuffer()
    expect(response.status).toBe(status)
    expectOnlySdkHeaders(response.headers)
  })

  it.each([
    ['a non-streamed answer', 'hi', 200, 'application/json'],
    ['an answer without a content type', 'no-content-type', 200, 'application/octet-stream'],
    ['an upstream error', 'please-fail', 429, 'application/json'],
  ] as const)('%s is sent whole: its exact length, a content type, not chunked', async (_name, content, status, type) => {
    const response = await post({ model: 'gpt-test', messages: [{ role: 'user', content }] })
    const bytes = Buffer.from(await response.arrayBuffer())
    expect(response.status).toBe(status)
    expect(response.headers.get('content-length')).toBe(String(bytes.length))
    expect(response.headers.get('transfer-encoding')).toBeNull()
    expect(response.headers.get('content-type')).toBe(type)
    expect(bytes.length).toBeGreaterThan(20)
  })

  it('a free model list relays only what SDKs read', async () => {
    const response = await fetch(`${proxy.url}/openai/v1/models`, { headers: { authorization: `Bearer ${key}` } })
    await response.arrayBuffer()
    expect(response.status).toBe(200)
    expectOnlySdkHeaders(response.headers)
  })

  it('the OpenAI SDK still sees its request id and content', async () => {
    const client = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/openai/v1`, maxRetries: 0 })
    const { data, request_id } = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }).withResponse()
    expect(request_id).toBe('req_123')
    expect(data.choices[0]?.message.content).toBe('hi')
  })
})
