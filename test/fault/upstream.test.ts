import OpenAI from 'openai'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { preloadEncoding } from '../../src/tokens/tiktoken.js'
import { daily, expectCountedInput, settleCalls, summaries, chargedMicros } from '../support/fault-checks.js'
import { DELTA_TEXT, startFaultUpstream, type FaultUpstream } from '../support/fault-upstream.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Upstream faults the e2e suite does not cover: silence past the timeout, 4xx pass-through, a socket
// destroyed before any header, and silence in the middle of a stream.
let redis: TestRedis
let upstream: FaultUpstream
let proxy: TestProxy
let key: string
let hash: string

const TIMEOUT_MS = 300

function chat(stream: boolean): string {
  return JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], ...(stream ? { stream: true } : {}) })
}

function post(body: string): Promise<Response> {
  return fetch(`${proxy.url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-up' },
    body,
  })
}

beforeAll(async () => {
  // The proxy runs in this process and counts output with o200k: built first, so no stream here meets the byte fallback.
  await preloadEncoding('o200k_base')
  redis = await startRedis()
  upstream = await startFaultUpstream()
  proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS), LOG_LEVEL: 'info' })
})

afterAll(async () => {
  await proxy?.close()
  await upstream?.close()
  await redis?.stop()
})

beforeEach(async () => {
  upstream.plan = {}
  upstream.exchanges.length = 0
  const created = await proxy.admin.createKey('upstream-faults', ['openai'], { unlimited: true })
  key = created.key
  hash = created.record.hash
  await proxy.admin.setBudget(hash, { limits: { daily: 1_000_000 } })
})

describe('an upstream that never answers', () => {
  it.each([
    ['non-streamed', false],
    ['streamed', true],
  ])('%s: 504 upstream_timeout after the timeout, upstream connection closed, full refund', async (_name, stream) => {
    upstream.plan = { mode: 'hang' }
    const settles = await settleCalls(proxy.server.adminUrl)
    const started = Date.now()
    const response = await post(chat(stream))
    const elapsed = Date.now() - started
    expect(response.status).toBe(504)
    expect(response.headers.get('x-loopers-error-code')).toBe('upstream_timeout')
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('upstream_timeout')
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 50)
    expect(elapsed).toBeLessThan(5_000)
    expect(upstream.exchanges).toHaveLength(1)
    await eventually(() => upstream.last().clientAborted, 'the proxy closes the silent upstream connection')
    expect(await daily(proxy.admin, hash)).toEqual({ spent: 0, held: 0 })
    expect((await settleCalls(proxy.server.adminUrl)) - settles).toBe(1)
  })
})

describe('upstream 4xx answers pass through unchanged', () => {
  const cases: Array<{ status: number; headers: Record<string, string>; body: string }> = [
    {
      status: 400,
      headers: { 'x-request-id': 'req_400' },
      body: '{"error":{"message":"Invalid value for messages[0].role","type":"invalid_request_error","param":"messages","code":"invalid_value"}}',
    },
    {
      status: 429,
      headers: { 'retry-after': '7', 'x-ratelimit-remaining-requests': '0', 'x-request-id': 'req_429' },
      body: '{"error":{"message":"Rate limit reached for gpt-test","type":"requests","param":null,"code":"rate_limit_exceeded"}}\n',
    },
  ]
  it.each(cases.flatMap((c) => [{ ...c, stream: false }, { ...c, stream: true }]))(
    '$status (stream: $stream): status, body bytes and provider headers relayed; everything refunded',
    async ({ status, headers, body, stream }) => {
      upstream.plan = { mode: 'fail', fail: { status, headers, body } }
      const response = await post(chat(stream))
      expect(response.status).toBe(status)
      expect(await response.text()).toBe(body)
      for (const [name, value] of Object.entries(headers)) expect(response.headers.get(name)).toBe(value)
      expect(response.headers.get('content-type')).toBe('application/json')
      // The provider's error, not one the proxy produced.
      expect(response.headers.get('x-loopers-error-code')).toBeNull()
      expect(upstream.exchanges).toHaveLength(1)
      expect(await daily(proxy.admin, hash)).toEqual({ spent: 0, held: 0 })
      expect(summaries(proxy, hash).at(-1)).toMatchObject({ outcome: 'upstream_error', status })
    },
  )

  it('the SDK raises its typed errors for them', async () => {
    const sdk = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    const request = (): Promise<unknown> =>
      sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)
    upstream.plan = { mode: 'fail', fail: cases[0]! }
    const bad = await request()
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError)
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('invalid_value')
    upstream.plan = { mode: 'fail', fail: cases[1]! }
    const limited = await request()
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
    expect((limited as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('rate_limit_exceeded')
    expect(await daily(proxy.admin, hash)).toEqual({ spent: 0, held: 0 })
  })
})

describe('an upstream that resets the connection before any header', () => {
  it.each([
    ['non-streamed', false],
    ['streamed', true],
  ])('%s: 502 upstream_unreachable and a full refund', async (_name, stream) => {
    upstream.plan = { mode: 'destroy' }
    const settles = await settleCalls(proxy.server.adminUrl)
    const response = await post(chat(stream))
    expect(response.status).toBe(502)
    expect(response.headers.get('x-loopers-error-code')).toBe('upstream_unreachable')
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('upstream_unreachable')
    // Never retried: a POST may have been billed.
    expect(upstream.exchanges).toHaveLength(1)
    expect(await daily(proxy.admin, hash)).toEqual({ spent: 0, held: 0 })
    expect((await settleCalls(proxy.server.adminUrl)) - settles).toBe(1)
    // The proxy is not poisoned: the next request is answered.
    upstream.plan = {}
    expect((await post(chat(false))).status).toBe(200)
  })
})

describe('an upstream that falls silent mid-stream', () => {
  it('cuts the stream with an error event after the timeout, closes the upstream, charges what was counted', async () => {
    upstream.plan = { chunks: 3, stallAt: 'usage', stallMs: 10_000 }
    const settles = await settleCalls(proxy.server.adminUrl)
    const sdk = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    let text = ''
    const error = await (async () => {
      const stream = await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect(['upstream_timeout', 'upstream_unreachable']).toContain((error as InstanceType<typeof OpenAI.APIError>).code)
    expect(text).toBe(DELTA_TEXT.repeat(3))
    await eventually(() => upstream.last().clientAborted, 'upstream closed')
    await eventually(async () => (await daily(proxy.admin, hash)).held === 0, 'settlement')
    // The summary line is written once settlement has returned, a moment after the store shows it.
    await eventually(() => summaries(proxy, hash).length > 0, 'summary line')
    const summary = summaries(proxy, hash).at(-1)!
    // No usage arrived: the input counted as the upstream billed the prompt, plus the output counted in o200k
    // tokens, exactly what the upstream billed for the deltas it wrote ("tok tok tok " is four: "tok", " tok", " tok", " ").
    const input = expectCountedInput(summary, upstream.last())
    const output = upstream.last().outputTokensWritten
    expect(output).toBe(4)
    expect((await daily(proxy.admin, hash)).spent).toBe(input + output)
    expect(chargedMicros(summary)).toBe(input + output)
    expect((await settleCalls(proxy.server.adminUrl)) - settles).toBe(1)
  })
})
