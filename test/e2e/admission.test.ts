/**
 * Admission near a limit: the cheap bound while far from it (no count, no extra round trip), an exact count
 * once it does not fit (the provider's counting endpoint with the request's own credential, falling back
 * to the bound), streams started with the slice that fits, refusals caused by other requests' holds told
 * apart from refusals caused by settled spend, and floods on the Responses API and a session budget.
 * Test prices make one token cost one micro-USD.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { countChatTokens, countResponsesTokens } from '../../src/tokens/tiktoken.js'
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { resetFake } from '../support/fake-server.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

let redis: TestRedis
let openai: FakeOpenAi
let anthropic: FakeAnthropic
let proxy: TestProxy

beforeAll(async () => {
  redis = await startRedis()
  openai = await startFakeOpenAi()
  anthropic = await startFakeAnthropic()
  proxy = await startProxy({
    REDIS_URL: redis.url,
    LOG_LEVEL: 'warn',
    LOOPERS_OPENAI_BASE_URL: openai.url,
    LOOPERS_OPENAI_API_KEY: 'sk-upstream',
    LOOPERS_ANTHROPIC_BASE_URL: anthropic.url,
  })
})

afterAll(async () => {
  await proxy?.close()
  await openai?.close()
  await anthropic?.close()
  await redis?.stop()
})

beforeEach(() => {
  resetFake(openai)
  resetFake(anthropic)
})

async function keyWithDaily(provider: 'openai' | 'anthropic', daily: number | null): Promise<{ key: string; hash: string }> {
  const { key, record } = await proxy.admin.createKey(`admission-${provider}`, [provider], { unlimited: true, loopLimit: 0 })
  if (daily !== null) await proxy.admin.setBudget(record.hash, { limits: { daily } })
  return { key, hash: record.hash }
}

const PROMPT = 'Explain in two sentences why the sky is blue, for a curious eight-year-old who likes trains.'
const messages = { model: 'claude-test', max_tokens: 20, messages: [{ role: 'user', content: PROMPT }] }

function sendAnthropic(key: string, body: unknown = messages): Promise<Response> {
  return fetch(`${proxy.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'x-loopers-provider-key': 'sk-ant-from-client', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

function sendOpenAi(key: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${proxy.url}/openai/v1/${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
}

const countCalls = () => anthropic.received.filter((r) => r.url === '/v1/messages/count_tokens')

describe('input: exact where it matters, free where it does not', () => {
  it('far from the limit: reserves the byte bound, with no count and no extra round trip', async () => {
    const { key } = await keyWithDaily('anthropic', 1_000_000)
    const response = await sendAnthropic(key)
    expect(response.status).toBe(200)
    expect(countCalls()).toEqual([])
    expect(anthropic.received.map((r) => r.url)).toEqual(['/v1/messages'])
  })

  it('near the limit: asks count_tokens with the request’s own credential and admits what the budget holds', async () => {
    anthropic.options = { inputTokens: 30, outputTokens: 20 }
    // The byte bound (~190 tokens + 20 output) does not fit; the provider's count (30 + 20) does.
    const { key } = await keyWithDaily('anthropic', 60)
    const response = await sendAnthropic(key)
    expect(response.status).toBe(200)
    const [count] = countCalls()
    expect(count?.headers['x-api-key']).toBe('sk-ant-from-client')
    expect(count?.body).toEqual({ model: 'claude-test', messages: messages.messages })
    expect(JSON.stringify(count?.headers)).not.toContain(key)
  })

  it('when the counting endpoint fails, the bound stands: refused, and nothing reaches the upstream', async () => {
    anthropic.options = { inputTokens: 30, outputTokens: 20, countFails: 500 }
    const { key } = await keyWithDaily('anthropic', 60)
    const response = await sendAnthropic(key)
    expect(response.status).toBe(429)
    expect(countCalls()).toHaveLength(1)
    expect(anthropic.received.filter((r) => r.url === '/v1/messages')).toEqual([])
  })

  it('counts no 1,024 "priming" tokens: a request without tools is admitted on its bytes alone', async () => {
    const bytes = Buffer.byteLength(JSON.stringify(messages))
    anthropic.options = { countFails: 500 }
    const { key } = await keyWithDaily('anthropic', bytes + 20)
    expect((await sendAnthropic(key)).status).toBe(200)
  })
})

describe('streams start with what fits', () => {
  it('admits a stream whose full first slice does not fit but 16 output tokens do', async () => {
    openai.options = { chunks: 10, word: 'x' }
    const body = { model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'hi' }] }
    const input = countChatTokens(body, 'gpt-test')
    // Without max_tokens the first slice is 1,024 tokens; the budget holds input + 100.
    const { key } = await keyWithDaily('openai', input + 100)
    const response = await sendOpenAi(key, 'chat/completions', body)
    expect(response.status).toBe(200)
    expect(await response.text()).toContain('[DONE]')
  })
})

describe('refusals: other requests’ holds are retryable, settled spend is not', () => {
  it('a request blocked only by an in-flight hold gets a short Retry-After and no x-should-retry: false', async () => {
    openai.options = { hang: true }
    const body = { model: 'gpt-test', max_tokens: 400, messages: [{ role: 'user', content: 'hi' }] }
    const input = countChatTokens(body, 'gpt-test')
    // Room for the first request's worst case and 10 more tokens: not for a second one's input + 16 while it runs.
    const { key } = await keyWithDaily('openai', 2 * input + 400 + 10)
    const abort = new AbortController()
    const first = fetch(`${proxy.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: abort.signal,
    }).catch(() => null)
    await eventually(() => openai.received.length === 1, 'the first request upstream')
    // The first request holds input + 400 until it ends; the second waits for it (3 s), then is told to retry.
    const second = await sendOpenAi(key, 'chat/completions', body)
    expect(second.status).toBe(429)
    expect(second.headers.get('retry-after')).toBe('1')
    expect(second.headers.get('x-should-retry')).toBeNull()
    expect(openai.received).toHaveLength(1)
    abort.abort()
    await first
    await eventually(() => proxy.inflight() === 0, 'the first request settled')
  })

  it('a request the settled spend cannot hold is not retryable', async () => {
    openai.options = { promptTokens: 20, completionTokens: 20 }
    const body = { model: 'gpt-test', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] }
    const { key } = await keyWithDaily('openai', 50)
    expect((await sendOpenAi(key, 'chat/completions', body)).status).toBe(200)
    const refused = await sendOpenAi(key, 'chat/completions', body)
    expect(refused.status).toBe(429)
    expect(refused.headers.get('x-should-retry')).toBe('false')
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(60)
  })
})

describe('floods at the ledger', () => {
  const FLOOD = 300
  const HOLDS = 100

  it('the Responses API: 300 concurrent against a daily budget for 100 admit at least 98', async () => {
    const body = { model: 'gpt-test', max_output_tokens: 20, input: PROMPT }
    const input = countResponsesTokens(body, 'gpt-test')
    openai.options = { promptTokens: input, completionTokens: 20 }
    const { key } = await keyWithDaily('openai', HOLDS * (input + 20))
    const statuses = await Promise.all(Array.from({ length: FLOOD }, () => sendOpenAi(key, 'responses', body).then(async (r) => (await r.arrayBuffer(), r.status))))
    const served = openai.received.filter((r) => r.url === '/v1/responses').length
    expect(served).toBeGreaterThanOrEqual(98)
    expect(served).toBeLessThanOrEqual(HOLDS)
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
  })

  it('a session budget: 300 concurrent steps of a session whose budget holds 100 admit at least 98', async () => {
    const body = { model: 'gpt-test', max_tokens: 20, messages: [{ role: 'user', content: PROMPT }] }
    const input = countChatTokens(body, 'gpt-test')
    openai.options = { promptTokens: input, completionTokens: 20 }
    const { key } = await keyWithDaily('openai', null)
    const session = { 'x-loopers-session-id': `flood-${Date.now()}`, 'x-loopers-session-budget': String((HOLDS * (input + 20)) / 1_000_000) }
    const statuses = await Promise.all(Array.from({ length: FLOOD }, () => sendOpenAi(key, 'chat/completions', body, session).then(async (r) => (await r.arrayBuffer(), r.status))))
    const served = openai.received.filter((r) => r.url === '/v1/chat/completions').length
    expect(served).toBeGreaterThanOrEqual(98)
    expect(served).toBeLessThanOrEqual(HOLDS)
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
  })
})
