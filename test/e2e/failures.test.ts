import OpenAI from 'openai'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createTestKey, settledDaily } from '../support/e2e.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { resetFake } from '../support/fake-server.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { freePort, startRedis, type TestRedis } from '../support/redis.js'

let redis: TestRedis
let fake: FakeOpenAi
let proxy: TestProxy
let key: string
let hash: string

function client(baseURL = `${proxy.url}/openai/v1`): OpenAI {
  return new OpenAI({ apiKey: key, baseURL, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-upstream-secret' }, maxRetries: 0 })
}

async function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${proxy.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-upstream-secret', ...headers },
    body,
  })
}

/** The daily window once every request so far has settled. */
const daily = () => settledDaily(proxy, hash)

beforeAll(async () => {
  redis = await startRedis()
  fake = await startFakeOpenAi()
  proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_MAX_BODY_BYTES: '65536', LOOPERS_REDIS_TIMEOUT_MS: '300' })
})

afterAll(async () => {
  await proxy?.close()
  await fake?.close()
  await redis?.stop()
})

beforeEach(async () => {
  resetFake(fake)
  const created = await createTestKey(proxy, 'failures', ['openai'], { daily: 1_000_000 })
  key = created.key
  hash = created.hash
})

describe('upstream failures', () => {
  it('passes an upstream error status through unchanged and refunds the hold', async () => {
    fake.options = { fail: { status: 500, body: { error: { message: 'boom', type: 'server_error', param: null, code: null } } } }
    const error = await client()
      .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.InternalServerError)
    expect((error as InstanceType<typeof OpenAI.APIError>).message).toContain('boom')
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('answers 502 upstream_unreachable when the provider refuses connections, and refunds', async () => {
    const closedPort = await freePort()
    const other = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: `http://127.0.0.1:${closedPort}` })
    try {
      const response = await fetch(`${other.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-x' },
        body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
      })
      expect(response.status).toBe(502)
      expect(response.headers.get('x-loopers-error-code')).toBe('upstream_unreachable')
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('upstream_unreachable')
      expect(await daily()).toEqual({ spent: 0, held: 0 })
    } finally {
      await other.close()
    }
  })

  it('ends a stream whose upstream resets with an error event and settles what was counted', async () => {
    fake.options = { chunks: 50, resetAfterChunks: 5, chunkDelayMs: 5 }
    let text = ''
    const error = await (async () => {
      const stream = await client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('upstream_unreachable')
    expect(text).toBe(' tok'.repeat(5))
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect((await daily()).spent).toBeGreaterThan(0)
  })
})

describe('bad input never gets a 5xx', () => {
  it.each([
    ['invalid JSON', '/openai/v1/chat/completions', '{"model": ', 400, 'invalid_request'],
    ['a JSON array', '/openai/v1/chat/completions', '[1,2]', 400, 'invalid_request'],
    ['a missing model', '/openai/v1/chat/completions', '{"messages": []}', 400, 'invalid_request'],
    ['a string max_tokens', '/openai/v1/chat/completions', '{"model":"gpt-test","max_tokens":"9"}', 400, 'invalid_request'],
    ['an unmetered POST', '/openai/v1/images/generations', '{"model":"dall-e-3","prompt":"x"}', 400, 'invalid_request'],
    ['an unmetered POST under a metered prefix', '/openai/v1/chat/completions/extra', '{"model":"gpt-test"}', 400, 'invalid_request'],
    ['a body over the limit', '/openai/v1/chat/completions', JSON.stringify({ model: 'gpt-test', pad: 'x'.repeat(70_000) }), 413, 'payload_too_large'],
    ['an unknown provider', '/nope/v1/chat/completions', '{}', 404, 'not_found'],
  ])('%s', async (_name, path, body, status, code) => {
    const response = await post(path, body)
    expect(response.status).toBe(status)
    expect(response.headers.get('x-loopers-error-code')).toBe(code)
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(code)
    expect(fake.received).toHaveLength(0)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('keeps serving after bad input', async () => {
    await post('/openai/v1/chat/completions', '{{{')
    const ok = await client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
    expect(ok.choices).toHaveLength(1)
  })

  it('never logs a key, a credential or a prompt', async () => {
    const secretPrompt = 'my-secret-prompt-text'
    await client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: secretPrompt }] })
    await fetch(`${proxy.url}/${key}/openai/v1/models`, { headers: { authorization: 'Bearer sk-path-auth-secret' } })
    const text = proxy.logText()
    expect(text).toContain('"msg":"request"')
    expect(text).not.toContain(key)
    expect(text).not.toContain('sk-upstream-secret')
    expect(text).not.toContain('sk-path-auth-secret')
    expect(text).not.toContain(secretPrompt)
  })
})

describe('fail closed', () => {
  it('refuses with 503 within a bounded time and never calls the provider while Redis is down', async () => {
    await redis.kill()
    try {
      const started = Date.now()
      const response = await post('/openai/v1/chat/completions', JSON.stringify({ model: 'gpt-test', messages: [] }))
      expect(response.status).toBe(503)
      expect(response.headers.get('x-loopers-error-code')).toBe('budget_unavailable')
      expect(Date.now() - started).toBeLessThan(2000)
      expect((await fetch(`${proxy.url}/health`)).status).toBe(503)
      expect(fake.received).toHaveLength(0)
    } finally {
      await redis.restart()
    }
    await eventually(async () => (await fetch(`${proxy.url}/health`)).status === 200, 'store back', 10_000)
    // Redis restarted without persistence: recreate the key and serve normally again.
    const created = await proxy.admin.createKey('after', ['openai'], { unlimited: true })
    key = created.key
    hash = created.record.hash
    const ok = await client().embeddings.create({ model: 'embed-test', input: 'x' })
    expect(ok.data).toHaveLength(1)
  })

  it('refuses with 503 while Redis is paused (slow), within the command timeout', async () => {
    redis.pause()
    try {
      const started = Date.now()
      const response = await post('/openai/v1/embeddings', JSON.stringify({ model: 'embed-test', input: 'x' }))
      expect(response.status).toBe(503)
      expect(Date.now() - started).toBeLessThan(2000)
      expect(fake.received).toHaveLength(0)
    } finally {
      redis.resume()
    }
  })

  it('a proxy started while Redis is absent stays up, says what to do, and serves once Redis appears', async () => {
    await redis.kill()
    const late = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url }, { waitForStore: false }).catch(async (e: unknown) => {
      await redis.restart()
      throw e
    })
    try {
      const refused = await fetch(`${late.url}/openai/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-x' },
        body: '{"model":"embed-test","input":"x"}',
      })
      expect(refused.status).toBe(503)
      expect(late.logText()).toContain('budget store unreachable')
      await redis.restart()
      await eventually(async () => (await fetch(`${late.url}/health`)).status === 200, 'store back', 10_000)
    } finally {
      await late.close()
    }
  })
})
