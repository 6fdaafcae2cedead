import type http from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createTestKey, settledDaily, summaryAt } from '../support/e2e.js'
import { startFakeServer, type FakeServer } from '../support/fake-server.js'
import { pour, watchServed, type Served } from '../support/pour.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 13, finding 8: a malicious or broken upstream could make the proxy buffer an unterminated stream
// event or a whole body without limit. Past 16 MiB (event) or 64 MiB (body) the answer ends like an upstream
// failure and the whole hold is charged, since the provider may have billed all of it.
const MiB = 1024 * 1024
const EVENT_BYTES_SENT = 24 * MiB
const BODY_BYTES_SENT = 80 * MiB

let redis: TestRedis
let upstream: FakeServer
let proxy: TestProxy
let served: Served[] = []

/** Writes `head`, then `total` bytes of `fill`, honouring backpressure; stops when the proxy closes. */
function pourAfter(res: http.ServerResponse, head: string, fill: number, total: number, entry: Served): Promise<void> {
  res.write(head)
  return pour(res, Buffer.alloc(64 * 1024, fill), total, entry)
}

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFakeServer((req, res, raw) => {
    const path = (req.url ?? '').split('?')[0] ?? ''
    // Only the two metered paths answer, so nothing else mistakes this fake for a proxy (e.g. its /health).
    if (req.method !== 'POST' || (path !== '/v1/chat/completions' && !path.endsWith(':streamGenerateContent'))) {
      res.writeHead(404)
      return void res.end()
    }
    const body = JSON.parse(raw.toString('utf8')) as { stream?: boolean }
    const entry = watchServed(res)
    served.push(entry)
    if (path.endsWith(':streamGenerateContent')) {
      // A JSON-array stream whose first element never closes.
      res.writeHead(200, { 'content-type': 'application/json' })
      return void pourAfter(res, '[{"candidates":[{"content":{"parts":[{"text":"', 0x61, EVENT_BYTES_SENT, entry)
    }
    if (body.stream === true) {
      // One SSE event that never ends: no blank line ever comes.
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      return void pourAfter(res, 'data: {"choices":[{"delta":{"content":"', 0x61, EVENT_BYTES_SENT, entry)
    }
    res.writeHead(200, { 'content-type': 'application/json' })
    return void pourAfter(res, '{"id":"x","pad":"', 0x61, BODY_BYTES_SENT, entry)
  })
  proxy = await startProxy({
    REDIS_URL: redis.url,
    LOOPERS_OPENAI_BASE_URL: upstream.url,
    LOOPERS_GEMINI_BASE_URL: upstream.url,
    LOOPERS_OPENAI_API_KEY: 'sk-upstream',
    LOOPERS_GEMINI_API_KEY: 'g-upstream',
  })
})

afterAll(async () => {
  await proxy?.close()
  await upstream?.close()
  await redis?.stop()
})

beforeEach(() => {
  served = []
})

const CHAT = { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100 }

describe('an upstream stream event that never ends', () => {
  it.each([
    ['OpenAI SSE', 'openai', '/openai/v1/chat/completions', { ...CHAT, stream: true }],
    ['Gemini JSON array', 'gemini', '/gemini/v1beta/models/gemini-test:streamGenerateContent', { contents: [{ parts: [{ text: 'hi' }] }] }],
  ] as const)('%s: cut after 16 MiB like an upstream failure, upstream closed, whole hold charged', async (_name, provider, path, body) => {
    const { key, hash } = await createTestKey(proxy, `endless-${provider}`, [provider], { daily: 10_000_000 })
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (provider === 'gemini') headers['x-goog-api-key'] = key
    else headers.authorization = `Bearer ${key}`
    const response = await fetch(`${proxy.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) })
    expect(response.status).toBe(200)
    const text = await response.text()
    // The client never receives the unfinished event, only the error that ends the stream.
    expect(text.length).toBeLessThan(64 * 1024)
    expect(text).toContain('upstream_unreachable')
    expect(served).toHaveLength(1)
    await eventually(() => served[0]?.closedEarly === true, 'the proxy closes the upstream')
    expect(served[0]?.bytes).toBeLessThan(EVENT_BYTES_SENT)
    const summary = await summaryAt(proxy, hash, 1)
    expect(summary.outcome).toBe('upstream_failed')
    const totals = await settledDaily(proxy, hash)
    expect(totals.held).toBe(0)
    expect(totals.spent).toBe(Math.round((summary.reservedUsd as number) * 1_000_000))
  })
})

describe('a non-streamed upstream body past 64 MiB', () => {
  it('is refused with 502 upstream_unreachable in the provider shape, upstream closed, whole hold charged', async () => {
    const { key, hash } = await createTestKey(proxy, 'huge-body', ['openai'], { daily: 10_000_000 })
    const response = await fetch(`${proxy.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(CHAT),
    })
    expect(response.status).toBe(502)
    expect(response.headers.get('x-loopers-error-code')).toBe('upstream_unreachable')
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('upstream_unreachable')
    await eventually(() => served[0]?.closedEarly === true, 'the proxy closes the upstream')
    expect(served[0]?.bytes).toBeLessThan(BODY_BYTES_SENT)
    const summary = await summaryAt(proxy, hash, 1)
    const totals = await settledDaily(proxy, hash)
    expect(totals.held).toBe(0)
    expect(totals.spent).toBe(Math.round((summary.reservedUsd as number) * 1_000_000))
  })
})
