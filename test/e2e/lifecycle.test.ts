import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

let redis: TestRedis
let fake: FakeOpenAi

beforeAll(async () => {
  redis = await startRedis()
  fake = await startFakeOpenAi()
})

afterAll(async () => {
  await fake?.close()
  await redis?.stop()
})

async function keyFor(proxy: TestProxy): Promise<{ key: string; hash: string }> {
  const created = await proxy.admin.createKey('lifecycle', ['openai'], { unlimited: true })
  await proxy.admin.setBudget(created.record.hash, { limits: { daily: 1_000_000 } })
  return { key: created.key, hash: created.record.hash }
}

function sdk(proxy: TestProxy, key: string): OpenAI {
  return new OpenAI({ apiKey: key, baseURL: `${proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
}

async function held(proxy: TestProxy, hash: string): Promise<number> {
  return (await proxy.admin.status(hash))!.daily.heldMicros
}

describe('graceful shutdown', () => {
  it('lets an in-flight stream finish within the grace period, then stops with nothing held', async () => {
    const proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    const { key, hash } = await keyFor(proxy)
    fake.options = { chunks: 20, chunkDelayMs: 15 }
    const stream = await sdk(proxy, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }], stream: true })
    const reading = (async () => {
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
      return text
    })()
    const closing = proxy.server.close(5_000)
    expect(await reading).toBe(' tok'.repeat(20))
    await closing
    const after = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    try {
      expect(await held(after, hash)).toBe(0)
      expect((await after.admin.status(hash))!.daily.spentMicros).toBe((fake.prompts.at(-1) ?? 0) + 20)
    } finally {
      await after.close()
      await proxy.close()
    }
  })

  it('cuts streams still running at the deadline with an error event, settles them, and refuses new connections', async () => {
    const proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    const { key, hash } = await keyFor(proxy)
    fake.options = { chunks: 1000, chunkDelayMs: 10 }
    const stream = await sdk(proxy, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }], stream: true })
    const reading = (async () => {
      for await (const _ of stream) void _
    })().catch((e: unknown) => e)
    await new Promise((r) => setTimeout(r, 50))
    const started = Date.now()
    await proxy.server.close(200)
    expect(Date.now() - started).toBeLessThan(3_000)
    const error = await reading
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_unavailable')
    await expect(fetch(`${proxy.url}/health`)).rejects.toThrow()
    await eventually(() => fake.ledger.at(-1)?.clientAborted === true, 'upstream released')

    const after = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    try {
      expect(await held(after, hash)).toBe(0)
      const spent = (await after.admin.status(hash))!.daily.spentMicros
      expect(spent).toBeGreaterThan(0)
    } finally {
      await after.close()
      await proxy.close()
    }
  })

  it('answers a non-streamed request still waiting at the deadline with 503 and settles it', async () => {
    const proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    const { key, hash } = await keyFor(proxy)
    fake.options = { hang: true }
    fake.received.length = 0
    const pending = sdk(proxy, key)
      .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }], max_tokens: 50 })
      .catch((e: unknown) => e)
    await eventually(() => fake.received.length > 0, 'request upstream')
    await proxy.server.close(100)
    const error = await pending
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(503)
    const after = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    try {
      expect(await held(after, hash)).toBe(0)
    } finally {
      fake.options = {}
      await after.close()
      await proxy.close()
    }
  })

  it('answers every request still waiting at the deadline with 503, also after one opened between them went away', async () => {
    const proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    const { key, hash } = await keyFor(proxy)
    fake.options = { hang: true }
    fake.received.length = 0
    const client = sdk(proxy, key)
    const ask = (signal?: AbortSignal) =>
      client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }], max_tokens: 50 }, { signal }).catch((e: unknown) => e)
    const first = ask()
    await eventually(() => fake.received.length === 1, 'first request upstream')
    const gone = new AbortController()
    const middle = ask(gone.signal)
    await eventually(() => fake.received.length === 2, 'middle request upstream')
    const last = ask()
    await eventually(() => fake.received.length === 3, 'last request upstream')
    gone.abort()
    await middle
    await eventually(() => proxy.inflight() === 2, 'the middle request settled')
    await proxy.server.close(100)
    for (const error of [await first, await last]) {
      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(503)
    }
    const after = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    try {
      expect(await held(after, hash)).toBe(0)
    } finally {
      fake.options = {}
      await after.close()
      await proxy.close()
    }
  })
})

describe('admin listener', () => {
  it('exports Prometheus metrics, health and readiness', async () => {
    // A fixed prompt bill, so the exported spend is a known number (12 + 7 tokens at 1 micro-USD).
    fake.options = { promptTokens: 12 }
    fake.received.length = 0
    const proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    try {
      const { key, hash } = await keyFor(proxy)
      await sdk(proxy, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] })
      await proxy.admin.setBudget(hash, { limits: { daily: 1 } })
      await sdk(proxy, key)
        .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'x' }] })
        .catch(() => undefined)
      await eventually(() => proxy.inflight() === 0, 'settlement')
      const admin = proxy.server.adminUrl
      expect(new URL(admin).hostname).toBe('127.0.0.1')
      const metrics = await (await fetch(`${admin}/metrics`)).text()
      expect(metrics).toContain('loopers_requests_total{provider="openai",model="gpt-test",outcome="completed"} 1')
      expect(metrics).toContain('loopers_refusals_total{reason="budget_exceeded",window="daily"} 1')
      expect(metrics).toContain('loopers_spend_usd_total{provider="openai"} 0.000019')
      expect(metrics).toMatch(/loopers_store_latency_seconds_count\{op="reserve"\} 2/)
      expect(metrics).toMatch(/loopers_added_latency_seconds_count 1/)
      expect(metrics).toContain('loopers_inflight_streams 0')
      expect(metrics).not.toContain(hash.slice(0, 8))
      expect((await fetch(`${admin}/health`)).status).toBe(200)
      expect((await fetch(`${admin}/ready`)).status).toBe(200)
      redis.pause()
      try {
        expect((await fetch(`${admin}/ready`)).status).toBe(503)
      } finally {
        redis.resume()
      }
    } finally {
      await proxy.close()
    }
  })
})
