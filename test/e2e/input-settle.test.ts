/**
 * Issue 8: a stream that ends without reported usage is charged the input the provider bills, not the
 * byte bound it reserved. Bedrock's ConverseStream reports usage only in its last event, so an upstream
 * reset leaves the proxy to count: at the free CountTokens with the request's credential, after the
 * client's stream has ended. If the count fails or hangs, the bound is charged, once. Judged by the
 * fake's ledger (what it billed) and the summary line (what the proxy charged).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createTestKey, latestSummary, metered, settle, settledDaily } from '../support/e2e.js'
import { summaries } from '../support/fault-checks.js'
import { startFakeBedrock, type FakeBedrock } from '../support/fake-bedrock.js'
import { resetFake, type LedgerEntry } from '../support/fake-server.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Test prices: one token costs one micro-USD in and out, so micros below are tokens.
const MODEL = 'anthropic.claude-test-v1:0'
const PROMPT = 'Write a token bucket in TypeScript and explain it in a few languages, with tests.'

let redis: TestRedis
let proxy: TestProxy
let fake: FakeBedrock

beforeAll(async () => {
  redis = await startRedis()
  fake = await startFakeBedrock({ aws: {}, apiKeys: ['bedrock-upstream-key'] })
  proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_BEDROCK_BASE_URL: fake.url, LOOPERS_REDIS_TIMEOUT_MS: '5000' })
})

afterAll(async () => {
  await proxy?.close()
  await fake?.close()
  await redis?.stop()
})

beforeEach(() => resetFake(fake))

/** One ConverseStream the upstream resets after 10 deltas; resolves when the client's stream has ended, with how long it took. */
async function resetStream(key: string): Promise<number> {
  fake.options = { ...fake.options, answer: true, chunks: 200, resetAfterChunks: 10 }
  const started = performance.now()
  const response = await fetch(`${proxy.url}/bedrock/model/${MODEL}/converse-stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-loopers-provider-key': 'bedrock-upstream-key' },
    body: JSON.stringify({ messages: [{ role: 'user', content: [{ text: PROMPT }] }], inferenceConfig: { maxTokens: 2000 } }),
  })
  expect(response.status).toBe(200)
  await response.arrayBuffer().catch(() => undefined)
  return performance.now() - started
}

describe('a stream that ends without reported usage', () => {
  it('is charged the input the provider bills (its count endpoint, with the request credential), not the bound', async () => {
    const { key, hash } = await createTestKey(proxy, 'settle-count', ['bedrock'], { daily: 100_000_000 })
    await resetStream(key)
    await settle(proxy)
    const entry = fake.ledger.at(-1) as LedgerEntry
    expect(entry.finished).toBe(false)
    const summary = latestSummary(proxy, hash)
    expect(summary.outcome).toBe('upstream_failed')
    // The bound is the body's bytes; the provider billed its tokens.
    expect(entry.inputTokens).toBeLessThan(Number(summary.inputBound))
    expect(summary.inputTokens).toBe(entry.inputTokens)
    expect((await settledDaily(proxy, hash)).spent).toBe(entry.inputTokens + Number(summary.outputTokens))
    // One metered call; the count went to CountTokens after the stream, keyed like the request.
    expect(metered(fake.received)).toHaveLength(1)
    const count = fake.received.at(-1)
    expect(count?.url).toBe(`/model/${encodeURIComponent(MODEL)}/count-tokens`)
    expect(count?.auth).toEqual({ kind: 'bearer', token: 'bedrock-upstream-key' })
  })

  it('is charged the bound when the count endpoint fails, and settles once', async () => {
    const { key, hash } = await createTestKey(proxy, 'settle-count-down', ['bedrock'], { daily: 100_000_000 })
    fake.options = { countFails: 500 }
    await resetStream(key)
    const after = await settledDaily(proxy, hash)
    const lines = summaries(proxy, hash)
    expect(lines).toHaveLength(1)
    const summary = lines[0] as Record<string, unknown>
    expect(summary.outcome).toBe('upstream_failed')
    expect(summary.inputTokens).toBe(summary.inputBound)
    expect(after).toEqual({ spent: Number(summary.inputBound) + Number(summary.outputTokens), held: 0 })
    expect(fake.received.filter((r) => r.url.endsWith('/count-tokens'))).toHaveLength(1)
  })

  it('does not make the client wait for a count that hangs: the answer ends at once, the bound is charged after the timeout', async () => {
    const { key, hash } = await createTestKey(proxy, 'settle-count-hangs', ['bedrock'], { daily: 100_000_000 })
    fake.options = { countHangs: true }
    const started = performance.now()
    const answered = await resetStream(key)
    await settle(proxy)
    const settledAfter = performance.now() - started
    // The count endpoint gets 2 s (COUNT_ENDPOINT_TIMEOUT_MS); the client's stream ended long before.
    expect(answered).toBeLessThan(1_000)
    expect(settledAfter).toBeGreaterThanOrEqual(1_900)
    const summary = latestSummary(proxy, hash)
    expect(summary.inputTokens).toBe(summary.inputBound)
    expect(await settledDaily(proxy, hash)).toEqual({ spent: Number(summary.inputBound) + Number(summary.outputTokens), held: 0 })
  })
})
