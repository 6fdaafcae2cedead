import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { BudgetStore, KeyAdmin, ReserveResult } from '../../src/budget/types.js'
import { loadConfig } from '../../src/config.js'
import { createLogger } from '../../src/logger.js'
import { createMetrics } from '../../src/metrics.js'
import { loadPricing } from '../../src/pricing/table.js'
import { createInflight } from '../../src/proxy/inflight.js'
import { createUpstreamClient, type UpstreamClient } from '../../src/proxy/upstream.js'
import { createAdapters } from '../../src/providers/registry.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { resetFake } from '../support/fake-server.js'
import { TEST_PRICING_PATH, waitReady } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

/** A Redis budget store whose reserve answers reach the pipeline only when the test opens the gate. */
function gatedStore(store: BudgetStore) {
  const waiting: Array<() => void> = []
  const gated: BudgetStore = Object.create(store) as BudgetStore
  gated.reserve = (input) => {
    const answer = store.reserve(input)
    return new Promise<ReserveResult>((resolve, reject) => waiting.push(() => answer.then(resolve, reject)))
  }
  return {
    store: gated,
    /** Resolves once `count` reserves wait at the gate. */
    async reserved(count = 1): Promise<void> {
      while (waiting.length < count) await new Promise((r) => setTimeout(r, 5))
    },
    open(): void {
      for (const pass of waiting.splice(0)) pass()
    },
  }
}

// The upstream request of a metered request is built while its reserve is in flight (forward.ts, prebuildUpstream),
// and a non-streamed answer is written before its usage is read: neither may change what is sent, nor when.
describe('a request whose reserve is in flight', () => {
  let redis: TestRedis
  let fake: FakeOpenAi
  let client: RedisClient
  let upstream: UpstreamClient
  let app: FastifyInstance
  let url: string
  let admin: KeyAdmin
  let gate: ReturnType<typeof gatedStore>
  const adapters = { current: null as ReturnType<typeof createAdapters> | null }
  const shutdown = new AbortController()

  beforeAll(async () => {
    redis = await startRedis()
    fake = await startFakeOpenAi()
    const config = loadConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      REDIS_URL: redis.url,
      LOOPERS_PRICING_PATH: TEST_PRICING_PATH,
      LOG_LEVEL: 'warn',
      LOOPERS_OPENAI_BASE_URL: fake.url,
      LOOPERS_OPENAI_API_KEY: 'sk-upstream',
    })
    client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: config.redis!.commandTimeoutMs })
    await waitReady(client)
    const metrics = createMetrics({ perKey: false })
    gate = gatedStore(metrics.instrumentStore(createBudgetStore(client)))
    admin = createKeyAdmin(client)
    upstream = createUpstreamClient({ connectTimeoutMs: config.upstream.connectTimeoutMs, timeoutMs: config.upstream.timeoutMs })
    adapters.current = createAdapters(config)
    const sink = new Writable({ write: (_chunk, _encoding, done) => done() })
    app = buildApp({
      config,
      logger: createLogger(config.logLevel, sink),
      store: gate.store,
      keys: admin,
      pricing: loadPricing({ filePath: config.pricingPath }),
      adapters: adapters.current,
      upstream,
      metrics,
      inflight: createInflight(),
      shutdown: shutdown.signal,
    })
    url = await app.listen({ host: '127.0.0.1', port: 0 })
  })
  afterEach(() => {
    gate.open()
    resetFake(fake)
  })
  afterAll(async () => {
    shutdown.abort()
    await app.close()
    await upstream.close()
    client.disconnect()
    await fake.close()
    await redis.stop()
  })

  const send = (key: string, body: Record<string, unknown>) =>
    fetch(`${url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
  const daily = async (hash: string) => (await admin.status(hash))!.daily

  it('reaches the upstream only once granted, with the bytes the client sent', async () => {
    const { key } = await admin.createKey('prebuilt-granted', ['openai'], { limits: { daily: 1_000_000 } })
    const sent = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 40 })
    const answer = fetch(`${url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: sent,
    })
    await gate.reserved()
    // Long enough for a request built and sent before its grant to arrive.
    await new Promise((r) => setTimeout(r, 100))
    expect(fake.received).toHaveLength(0)
    gate.open()
    const response = await answer
    expect(response.status).toBe(200)
    await response.arrayBuffer()
    expect(fake.received).toHaveLength(1)
    expect(fake.received[0]!.raw).toBe(sent)
    expect(fake.received[0]!.headers.authorization).toBe('Bearer sk-upstream')
  })

  it('never reaches the upstream when the reserve is refused', async () => {
    const { key } = await admin.createKey('prebuilt-refused', ['openai'], { limits: { daily: 20 } })
    const answer = send(key, { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
    await gate.reserved()
    gate.open()
    // Near its limit the request is counted and reserved again: each reserve waits at the gate.
    let response: Response | null = null
    void answer.then((r) => (response = r))
    while (response === null) {
      gate.open()
      await new Promise((r) => setTimeout(r, 5))
    }
    expect((response as Response).status).toBe(429)
    await (response as Response).arrayBuffer()
    expect(fake.received).toHaveLength(0)
  })

  it('sends the lowered cap, not the request built for a full grant, when the grant is lowered', async () => {
    const { key, record } = await admin.createKey('prebuilt-lowered', ['openai'], { limits: { daily: 600 } })
    const answer = send(key, { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
    await gate.reserved()
    gate.open()
    const response = await answer
    expect(response.status).toBe(200)
    await response.arrayBuffer()
    const lowered = Number(response.headers.get('x-loopers-max-tokens'))
    expect(lowered).toBeGreaterThan(16)
    expect(lowered).toBeLessThan(1000)
    expect(fake.received).toHaveLength(1)
    expect(fake.received[0]!.body?.max_completion_tokens).toBe(lowered)
    expect((await daily(record.hash)).heldMicros).toBe(0)
  })

  it('asks a stream for its usage when its body was edited while the reserve was in flight', async () => {
    const { key } = await admin.createKey('prebuilt-stream', ['openai'], { limits: { daily: 1_000_000 } })
    const answer = send(key, { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 40 })
    await gate.reserved()
    gate.open()
    const response = await answer
    expect(response.status).toBe(200)
    await response.text()
    expect(fake.received).toHaveLength(1)
    expect(fake.received[0]!.body?.stream_options).toEqual({ include_usage: true })
  })

  it('answers a non-streamed request before reading its usage: a fault reading it still delivers the answer and charges the whole hold', async () => {
    const { key, record } = await admin.createKey('usage-after-answer', ['openai'], { limits: { daily: 1_000_000 } })
    const openai = adapters.current!.openai
    const usageFromBody = openai.usageFromBody
    openai.usageFromBody = () => {
      throw new Error('usage unreadable')
    }
    try {
      const answer = send(key, { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 40 })
      await gate.reserved()
      gate.open()
      const response = await answer
      expect(response.status).toBe(200)
      const json = (await response.json()) as { choices?: unknown[] }
      expect(json.choices).toHaveLength(1)
      // The whole hold: input bound plus the 40-token cap at $1/1M a token.
      let spent = 0
      for (let i = 0; i < 200 && spent === 0; i++) {
        spent = (await daily(record.hash)).spentMicros
        if (spent === 0) await new Promise((r) => setTimeout(r, 5))
      }
      expect(spent).toBeGreaterThanOrEqual(40)
      expect((await daily(record.hash)).heldMicros).toBe(0)
    } finally {
      openai.usageFromBody = usageFromBody
    }
  })
})
