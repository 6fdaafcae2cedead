import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import { loadConfig } from '../../src/config.js'
import { createLogger } from '../../src/logger.js'
import { createMetrics } from '../../src/metrics.js'
import { loadPricing } from '../../src/pricing/table.js'
import { createInflight } from '../../src/proxy/inflight.js'
import { createUpstreamClient, type UpstreamClient } from '../../src/proxy/upstream.js'
import { createAdapters } from '../../src/providers/registry.js'
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.js'
import { startFaultUpstream, type FaultUpstream } from '../support/fault-upstream.js'
import { eventually, TEST_PRICING_PATH, waitReady } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// An open stream keeps nothing of its request's parsed body: with 1,000 streams of 100 KB prompts open,
// each body kept until its stream ends would be a few hundred MB. The proxy is built in process (buildApp)
// so a WeakRef can watch the body the adapter was given, and collected on demand.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

let redis: TestRedis
let upstream: FaultUpstream
let anthropic: FakeAnthropic
let client: RedisClient
let http: UpstreamClient
let app: ReturnType<typeof buildApp>
let url: string
const shutdown = new AbortController()
// The parsed body of every metered request, as the pipeline handed it to the adapter.
const bodies: Array<WeakRef<object>> = []
// And its bytes as the client sent them.
const raws: Array<WeakRef<object>> = []
// And the bytes the proxy sent upstream.
const sents: Array<WeakRef<object>> = []
// And the upstream request they were sent in (its headers carry the provider's credential).
const requests: Array<WeakRef<object>> = []

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFaultUpstream()
  anthropic = await startFakeAnthropic()
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    LOOPERS_PRICING_PATH: TEST_PRICING_PATH,
    LOG_LEVEL: 'warn',
    REDIS_URL: redis.url,
    LOOPERS_OPENAI_BASE_URL: upstream.url,
    LOOPERS_ANTHROPIC_BASE_URL: anthropic.url,
  })
  client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: config.redis!.commandTimeoutMs })
  await waitReady(client)
  const adapters = createAdapters(config)
  for (const id of ['openai', 'anthropic'] as const) {
    const adapter = adapters[id]
    adapters[id] = {
      ...adapter,
      describe(route, body) {
        bodies.push(new WeakRef(body))
        return adapter.describe(route, body)
      },
      boundInputTokens(route, body, raw, tokensPerMedia, scan) {
        raws.push(new WeakRef(raw))
        return adapter.boundInputTokens(route, body, raw, tokensPerMedia, scan)
      },
    }
  }
  http = createUpstreamClient({ connectTimeoutMs: config.upstream.connectTimeoutMs, timeoutMs: config.upstream.timeoutMs })
  app = buildApp({
    config,
    logger: createLogger(config.logLevel),
    store: createBudgetStore(client, { sessionTtlSeconds: config.sessionTtlSeconds }),
    keys: createKeyAdmin(client),
    pricing: loadPricing({ filePath: config.pricingPath }),
    adapters,
    upstream: {
      send(request, signal, method) {
        sents.push(new WeakRef(request.body))
        requests.push(new WeakRef(request))
        return http.send(request, signal, method)
      },
      close: () => http.close(),
    },
    metrics: createMetrics({ perKey: false }),
    inflight: createInflight(),
    shutdown: shutdown.signal,
  })
  url = await app.listen({ host: config.listen.host, port: config.listen.port })
})

afterAll(async () => {
  shutdown.abort()
  await app?.close()
  await http?.close()
  client?.disconnect()
  await upstream?.close()
  await anthropic?.close()
  await redis?.stop()
})

async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 5 && ref.deref() !== undefined; i++) {
    // WeakRef targets are kept to the end of the job that read them: collect in a later turn.
    await new Promise((resolve) => setImmediate(resolve))
    gc()
  }
  return ref.deref() === undefined
}

describe('an open stream and its request body', () => {
  it('keeps no reference to the parsed body or the bytes the client sent while it streams, and still settles the input the provider bills', async () => {
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('retention', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    const sdk = new OpenAI({ apiKey: key, baseURL: `${url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    const chunks = 30
    upstream.plan = { chunks, chunkDelayMs: 20, stallAt: 'usage', stallMs: 10_000 }
    // No include_usage: the proxy edits the body (forces it), so its raw, parsed and edited forms all exist; the
    // edited bytes are what the upstream request holds, and what a later count reads.
    const stream = await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'word '.repeat(20_000) }], stream: true })
    let deltas = 0
    let released: boolean | null = null
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas++
      if (deltas === 2 && released === null) released = (await collected(bodies.at(-1)!)) && (await collected(raws.at(-1)!))
      // The usage never comes: the client goes away at the stall, and the stream is charged the input counted from its bytes.
      if (deltas === chunks) break
    }
    expect(deltas).toBe(chunks)
    expect(released).toBe(true)
    await eventually(async () => (await admin.status(record.hash))!.daily.heldMicros === 0, 'the stream settled')
    // Charged its counted input (the message wrappers put it at most 2 over the upstream's bill, far below the byte bound) and the output sent.
    const entry = upstream.last()
    const input = (await admin.status(record.hash))!.daily.spentMicros - entry.outputTokensWritten
    expect(input).toBeGreaterThanOrEqual(entry.inputTokens)
    expect(input).toBeLessThanOrEqual(entry.inputTokens + 2)
  })

  it('drops what a later input count would read once the provider reports the input (Anthropic: at message_start)', async () => {
    expect(await anthropicStreamReleases('retention-anthropic', () => bodies.at(-1)!)).toBe(true)
  })

  it('keeps no reference to the bytes sent upstream once the provider reports the input, while the stream is open', async () => {
    expect(await anthropicStreamReleases('retention-sent', () => sents.at(-1)!)).toBe(true)
  })

  it('keeps no reference to the upstream request, with its credential, while the stream is open', async () => {
    expect(await anthropicStreamReleases('retention-request', () => requests.at(-1)!)).toBe(true)
  })
})

/**
 * Streams an Anthropic answer (input reported at message_start) on a new key and asks, a few deltas in,
 * whether `ref()` was collected while the stream is open; the stream must still end and settle.
 */
async function anthropicStreamReleases(keyName: string, ref: () => WeakRef<object>): Promise<boolean | null> {
  const admin = createKeyAdmin(client)
  const { key, record } = await admin.createKey(keyName, ['anthropic'])
  await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
  Object.assign(anthropic.options, { chunks: 30, chunkDelayMs: 20 })
  const response = await fetch(`${url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01', 'x-loopers-provider-key': 'sk-ant-up' },
    body: JSON.stringify({ model: 'claude-test', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'word '.repeat(20_000) }] }),
  })
  expect(response.status).toBe(200)
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let released: boolean | null = null
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
    if (released === null && text.split('content_block_delta').length > 3) released = await collected(ref())
  }
  expect(text).toContain('message_stop')
  await eventually(async () => (await admin.status(record.hash))!.daily.heldMicros === 0, 'the stream settled')
  return released
}
