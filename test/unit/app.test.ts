import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IncomingMessage } from 'node:http'
import { request } from 'undici'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// The app's Fastify options that the request path's cost depends on.
describe('buildApp', () => {
  let proxy: TestProxy
  beforeAll(async () => {
    proxy = await startProxy({})
  })
  afterAll(async () => {
    await proxy.close()
  })

  it('builds no logger per request: a request gets the app\'s own (Fastify has none; the pipeline logs)', () => {
    const app = proxy.server.app
    const child = app.childLoggerFactory.call(app, app.log, { reqId: 'req-1' }, {}, {} as IncomingMessage)
    expect(child).toBe(app.log)
  })

  it('still writes the one summary line per request at info', async () => {
    const response = await fetch(`${proxy.url}/openai/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer nope' }, body: '{}' })
    expect(response.status).toBe(401)
    await response.arrayBuffer()
    const lines = proxy.logs.filter((l) => l.msg === 'request')
    expect(lines.length).toBe(1)
    expect(lines[0]).toMatchObject({ outcome: 'refused', code: 'invalid_key', status: 401 })
    expect(lines[0]).not.toHaveProperty('reqId')
  })
})

// Regression: the key gate forgot a refused key in an onResponse hook; the pipeline's refusals must still reach it.
describe('a key the store refuses after the gate let it through', () => {
  let proxy: TestProxy
  beforeAll(async () => {
    // Nothing listens there: a request that passes the gate ends in 502, no call leaves the machine.
    proxy = await startProxy({ LOOPERS_OPENAI_BASE_URL: 'http://127.0.0.1:9', LOOPERS_OPENAI_API_KEY: 'sk-test-upstream' })
  })
  afterAll(async () => {
    await proxy.close()
  })

  it('is looked up again before its next body is read', async () => {
    const { key, record } = await proxy.admin.createKey('gate-forget', ['openai'], { unlimited: true })
    const send = () =>
      request(`${proxy.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
      })
    const first = await send()
    await first.body.dump()
    expect(first.statusCode).toBe(502)
    await proxy.admin.revokeKey(record.hash)
    // The gate still holds the key as valid: the body is read and the store refuses it.
    const second = await send()
    await second.body.dump()
    expect(second.headers['x-loopers-error-code']).toBe('key_revoked')
    expect(second.headers.connection).not.toBe('close')
    // Forgotten: the gate looks it up and refuses it before reading the body, so the connection closes.
    const third = await send()
    await third.body.dump()
    expect(third.headers['x-loopers-error-code']).toBe('key_revoked')
    expect(third.headers.connection).toBe('close')
  })
})

// The raw-body parser is registered for JSON by name as well as for everything else (so Fastify caches its
// match): every content type must still reach the upstream as the same bytes.
describe('a request body under any content type', () => {
  let redis: TestRedis
  let openai: FakeOpenAi
  let proxy: TestProxy
  beforeAll(async () => {
    redis = await startRedis()
    openai = await startFakeOpenAi()
    proxy = await startProxy({ REDIS_URL: redis.url, LOG_LEVEL: 'warn', LOOPERS_OPENAI_BASE_URL: openai.url, LOOPERS_OPENAI_API_KEY: 'sk-upstream' })
  })
  afterAll(async () => {
    await proxy?.close()
    await openai?.close()
    await redis?.stop()
  })

  it('is forwarded byte for byte, whatever its Content-Type says', async () => {
    const { key } = await proxy.admin.createKey('content-types', ['openai'], { unlimited: true, loopLimit: 0 })
    const types = ['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'text/plain', 'application/x-odd', null]
    for (const [i, type] of types.entries()) {
      // Odd spacing and key order: only the raw bytes are the same bytes.
      const raw = `{ "max_tokens":4,  "model":"gpt-test","messages":[{"role":"user","content":"case ${i}"}] }`
      const before = openai.received.length
      const response = await request(`${proxy.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: type === null ? { authorization: `Bearer ${key}` } : { authorization: `Bearer ${key}`, 'content-type': type },
        body: raw,
      })
      await response.body.dump()
      expect({ type, status: response.statusCode }).toEqual({ type, status: 200 })
      expect(openai.received.length).toBe(before + 1)
      expect(openai.received[before]?.raw).toBe(raw)
    }
  })
})
