import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { daily, expectCountedInput, settleCalls, summaries, chargedMicros } from '../support/fault-checks.js'
import { DELTA_TEXT } from '../support/fault-upstream.js'
import { eventually } from '../support/proxy.js'
import { useFaultStack } from '../support/fault-stack.js'

// Upstream faults the e2e suite does not cover: silence past the timeout, 4xx pass-through, a socket
// destroyed before any header, and silence in the middle of a stream.
const TIMEOUT_MS = 300

const stack = useFaultStack({ name: 'upstream-faults', env: { LOOPERS_UPSTREAM_TIMEOUT_MS: String(TIMEOUT_MS), LOG_LEVEL: 'info' } })

function chat(stream: boolean): string {
  return JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], ...(stream ? { stream: true } : {}) })
}

function post(body: string): Promise<Response> {
  return fetch(`${stack.proxy.url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.key}`, 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-up' },
    body,
  })
}

describe('an upstream that never answers', () => {
  it.each([
    ['non-streamed', false],
    ['streamed', true],
  ])('%s: 504 upstream_timeout after the timeout, upstream connection closed, full refund', async (_name, stream) => {
    stack.upstream.plan = { mode: 'hang' }
    const settles = await settleCalls(stack.proxy.server.adminUrl)
    const started = Date.now()
    const response = await post(chat(stream))
    const elapsed = Date.now() - started
    expect(response.status).toBe(504)
    expect(response.headers.get('x-loopers-error-code')).toBe('upstream_timeout')
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('upstream_timeout')
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 50)
    expect(elapsed).toBeLessThan(5_000)
    expect(stack.upstream.exchanges).toHaveLength(1)
    await eventually(() => stack.upstream.last().clientAborted, 'the proxy closes the silent upstream connection')
    expect(await daily(stack.proxy.admin, stack.hash)).toEqual({ spent: 0, held: 0 })
    expect((await settleCalls(stack.proxy.server.adminUrl)) - settles).toBe(1)
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
      stack.upstream.plan = { mode: 'fail', fail: { status, headers, body } }
      const response = await post(chat(stream))
      expect(response.status).toBe(status)
      expect(await response.text()).toBe(body)
      for (const [name, value] of Object.entries(headers)) expect(response.headers.get(name)).toBe(value)
      expect(response.headers.get('content-type')).toBe('application/json')
      // The provider's error, not one the proxy produced.
      expect(response.headers.get('x-loopers-error-code')).toBeNull()
      expect(stack.upstream.exchanges).toHaveLength(1)
      expect(await daily(stack.proxy.admin, stack.hash)).toEqual({ spent: 0, held: 0 })
      expect(summaries(stack.proxy, stack.hash).at(-1)).toMatchObject({ outcome: 'upstream_error', status })
    },
  )

  it('the SDK raises its typed errors for them', async () => {
    const sdk = new OpenAI({ apiKey: stack.key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    const request = (): Promise<unknown> =>
      sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)
    stack.upstream.plan = { mode: 'fail', fail: cases[0]! }
    const bad = await request()
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError)
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('invalid_value')
    stack.upstream.plan = { mode: 'fail', fail: cases[1]! }
    const limited = await request()
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
    expect((limited as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('rate_limit_exceeded')
    expect(await daily(stack.proxy.admin, stack.hash)).toEqual({ spent: 0, held: 0 })
  })

  it('an error body past 1 MiB is not held: the status goes out with an empty body, everything refunded', async () => {
    stack.upstream.plan = { mode: 'fail', fail: { status: 400, headers: {}, body: `{"error":{"message":"${'x'.repeat(2 * 1024 * 1024)}"}}` } }
    const response = await post(chat(false))
    expect(response.status).toBe(400)
    expect(await response.text()).toBe('')
    expect(response.headers.get('x-loopers-error-code')).toBeNull()
    expect(await daily(stack.proxy.admin, stack.hash)).toEqual({ spent: 0, held: 0 })
    expect(summaries(stack.proxy, stack.hash).at(-1)).toMatchObject({ outcome: 'upstream_error', status: 400 })
  })
})

describe('an upstream that resets the connection before any header', () => {
  it.each([
    ['non-streamed', false],
    ['streamed', true],
  ])('%s: 502 upstream_unreachable and a full refund', async (_name, stream) => {
    stack.upstream.plan = { mode: 'destroy' }
    const settles = await settleCalls(stack.proxy.server.adminUrl)
    const response = await post(chat(stream))
    expect(response.status).toBe(502)
    expect(response.headers.get('x-loopers-error-code')).toBe('upstream_unreachable')
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('upstream_unreachable')
    // Never retried: a POST may have been billed.
    expect(stack.upstream.exchanges).toHaveLength(1)
    expect(await daily(stack.proxy.admin, stack.hash)).toEqual({ spent: 0, held: 0 })
    expect((await settleCalls(stack.proxy.server.adminUrl)) - settles).toBe(1)
    // The proxy is not poisoned: the next request is answered.
    stack.upstream.plan = {}
    expect((await post(chat(false))).status).toBe(200)
  })
})

describe('an upstream that falls silent mid-stream', () => {
  it('cuts the stream with an error event after the timeout, closes the upstream, charges what was counted', async () => {
    stack.upstream.plan = { chunks: 3, stallAt: 'usage', stallMs: 10_000 }
    const settles = await settleCalls(stack.proxy.server.adminUrl)
    const sdk = new OpenAI({ apiKey: stack.key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    let text = ''
    const error = await (async () => {
      const stream = await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect(['upstream_timeout', 'upstream_unreachable']).toContain((error as InstanceType<typeof OpenAI.APIError>).code)
    expect(text).toBe(DELTA_TEXT.repeat(3))
    await eventually(() => stack.upstream.last().clientAborted, 'upstream closed')
    await eventually(async () => (await daily(stack.proxy.admin, stack.hash)).held === 0, 'settlement')
    // The summary line is written once settlement has returned, a moment after the store shows it.
    await eventually(() => summaries(stack.proxy, stack.hash).length > 0, 'summary line')
    const summary = summaries(stack.proxy, stack.hash).at(-1)!
    // No usage arrived: the input counted as the upstream billed the prompt, plus the output counted in o200k
    // tokens, exactly what the upstream billed for the deltas it wrote ("tok tok tok " is four: "tok", " tok", " tok", " ").
    const input = expectCountedInput(summary, stack.upstream.last())
    const output = stack.upstream.last().outputTokensWritten
    expect(output).toBe(4)
    expect((await daily(stack.proxy.admin, stack.hash)).spent).toBe(input + output)
    expect(chargedMicros(summary)).toBe(input + output)
    expect((await settleCalls(stack.proxy.server.adminUrl)) - settles).toBe(1)
  })
})
