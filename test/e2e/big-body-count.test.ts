/**
 * No request may stall the others (issue 8, point 5), at a provider's counting endpoint too: when a 10 MiB
 * request's byte bound does not fit its key's budget, the proxy asks Anthropic's count_tokens, Gemini's
 * countTokens or Bedrock's CountTokens, and builds that count request from the body's own bytes: its
 * large members are never parsed or serialized on the event loop (the old path parsed `messages` and
 * JSON.stringified the count request there, and base64'd an InvokeModel body in one go). Measured in the
 * proxy's own main-thread CPU time (test/support/loop-cpu-probe.mjs); the count endpoint must receive the
 * request's members as sent, and the request is admitted at the count and forwarded.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import type { ProviderId } from '../../src/providers/types.js'
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.js'
import { startFakeBedrock, type FakeBedrock } from '../support/fake-bedrock.js'
import { startFakeGemini, type FakeGemini } from '../support/fake-gemini.js'
import { LOOP_CPU_PROBE, longestStretch } from '../support/loop-cpu.js'
import { startProxyProcess, type ProxyProcess } from '../support/proxy-process.js'
import { waitReady } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

const MIB = 1024 * 1024
/** The longest CPU stretch of the proxy's event loop a big body may cause (the old count path: see the report). */
const MAX_CPU_STRETCH_MS = 20
/** What each count endpoint answers: far below the budget, so the request is admitted once counted. */
const COUNTED_TOKENS = 2_000
const AWS = { accessKeyId: 'AKIDCOUNTSPAN', secret: 'count-span-secret' }

let dir: string
let probeFile: string
let redis: TestRedis
let client: RedisClient
let admin: KeyAdmin
let proxy: ProxyProcess
let anthropic: FakeAnthropic
let gemini: FakeGemini
let bedrock: FakeBedrock

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'loopers-big-count-'))
  probeFile = join(dir, 'loop-cpu.jsonl')
  redis = await startRedis()
  anthropic = await startFakeAnthropic({ inputTokens: COUNTED_TOKENS })
  gemini = await startFakeGemini({ promptTokens: COUNTED_TOKENS })
  bedrock = await startFakeBedrock({ aws: { [AWS.accessKeyId]: { secret: AWS.secret } }, apiKeys: [] }, { promptTokens: COUNTED_TOKENS })
  proxy = await startProxyProcess({
    REDIS_URL: redis.url,
    LOOPERS_ANTHROPIC_BASE_URL: anthropic.url,
    LOOPERS_ANTHROPIC_API_KEY: 'sk-ant-upstream',
    LOOPERS_GEMINI_BASE_URL: gemini.url,
    LOOPERS_GEMINI_API_KEY: 'gemini-upstream',
    LOOPERS_BEDROCK_BASE_URL: bedrock.url,
    AWS_ACCESS_KEY_ID: AWS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: AWS.secret,
    AWS_REGION: 'us-east-1',
    LOOPERS_MAX_BODY_BYTES: String(11 * MIB),
    NODE_OPTIONS: `--import ${LOOP_CPU_PROBE}`,
    LOOPERS_TEST_LOOP_CPU_FILE: probeFile,
  })
  client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: 2_000 })
  await waitReady(client)
  admin = createKeyAdmin(client)
}, 60_000)

afterAll(async () => {
  await proxy?.stop()
  client?.disconnect()
  await Promise.all([anthropic?.close(), gemini?.close(), bedrock?.close()])
  await redis?.stop()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

const prose = 'The quick brown fox jumps over the lazy dog while the budget holds. '.repeat(Math.floor((10 * MIB) / 68))

interface Case {
  provider: ProviderId
  path: string
  headers: (key: string) => Record<string, string>
  body: (text: string) => Record<string, unknown>
  /** The fake that answers, and the path of its count endpoint. */
  fake: () => FakeAnthropic | FakeGemini | FakeBedrock
  countPath: string
  /** What the count endpoint must receive for `body`. */
  counted: (body: Record<string, unknown>) => unknown
}

const claude = (text: string) => ({ model: 'claude-test', max_tokens: 5, system: 'be brief', messages: [{ role: 'user', content: text }] })
const CASES: Case[] = [
  {
    provider: 'anthropic',
    path: '/anthropic/v1/messages',
    headers: (key) => ({ 'x-api-key': key, 'anthropic-version': '2023-06-01' }),
    body: claude,
    fake: () => anthropic,
    countPath: '/v1/messages/count_tokens',
    counted: (body) => ({ model: body.model, system: body.system, messages: body.messages }),
  },
  {
    provider: 'gemini',
    path: '/gemini/v1beta/models/gemini-test:generateContent',
    headers: (key) => ({ 'x-goog-api-key': key }),
    body: (text) => ({ contents: [{ role: 'user', parts: [{ text }] }], systemInstruction: { parts: [{ text: 'be brief' }] }, generationConfig: { maxOutputTokens: 5 } }),
    fake: () => gemini,
    countPath: '/v1beta/models/gemini-test:countTokens',
    counted: (body) => ({ generateContentRequest: { model: 'models/gemini-test', contents: body.contents, systemInstruction: body.systemInstruction } }),
  },
  {
    provider: 'bedrock',
    path: '/bedrock/model/amazon.nova-test-v1:0/converse',
    headers: (key) => ({ authorization: `Bearer ${key}` }),
    body: (text) => ({ messages: [{ role: 'user', content: [{ text }] }], system: [{ text: 'be brief' }], inferenceConfig: { maxTokens: 5 } }),
    fake: () => bedrock,
    countPath: '/model/amazon.nova-test-v1%3A0/count-tokens',
    counted: (body) => ({ input: { converse: { messages: body.messages, system: body.system } } }),
  },
  {
    provider: 'bedrock',
    path: '/bedrock/model/anthropic.claude-test-v1:0/invoke',
    headers: (key) => ({ authorization: `Bearer ${key}` }),
    body: (text) => ({ anthropic_version: 'bedrock-2023-05-31', ...claude(text), model: undefined }),
    fake: () => bedrock,
    countPath: '/model/anthropic.claude-test-v1%3A0/count-tokens',
    // InvokeModel is counted as the body it forwards (the cap it asked for fits the budget: unchanged bytes).
    counted: (body) => ({ input: { invokeModel: { body: Buffer.from(JSON.stringify(body)).toString('base64') } } }),
  },
]

async function send(c: Case, key: string, raw: string): Promise<{ status: number; code: string | null }> {
  const response = await fetch(`${proxy.url}${c.path}`, { method: 'POST', headers: { ...c.headers(key), 'content-type': 'application/json' }, body: raw })
  await response.arrayBuffer()
  return { status: response.status, code: response.headers.get('x-loopers-error-code') }
}

it.each(CASES)('$path: a 10 MiB request counted at its count endpoint near its limit holds no event loop', async (c) => {
  // Warm-up: the provider's paths, the counting worker, and a count endpoint round trip of a small body.
  const warm = await admin.createKey(`warm-${c.path}`, [c.provider], { limits: { daily: 1_000_000 } })
  expect((await send(c, warm.key, JSON.stringify(c.body('hello there')))).status).toBe(200)
  const key = await admin.createKey(`big-${c.path}`, [c.provider], { limits: { daily: 5_000_000 } })
  const fake = c.fake()
  fake.received.length = 0
  // $5 at $1 per million tokens: the ~10.5 million token byte bound does not fit; the count of 2,000 does.
  const body = JSON.parse(JSON.stringify(c.body(prose))) as Record<string, unknown>
  const raw = JSON.stringify(body)
  const { result, cpuMs } = await longestStretch(probeFile, () => send(c, key.key, raw))
  console.log(`big count (${c.path}, ${(raw.length / MIB).toFixed(1)} MiB): longest CPU stretch of the proxy's event loop ${cpuMs} ms`)
  expect(result).toEqual({ status: 200, code: null })
  const urls = fake.received.map((r) => r.url.split('?')[0])
  expect(urls).toEqual([c.countPath, c.path.slice(c.path.indexOf('/', 1))])
  expect(fake.received[0]!.body).toEqual(c.counted(body))
  expect(cpuMs).toBeLessThan(MAX_CPU_STRETCH_MS)
}, 120_000)

it('eight 10 MiB requests at once (more than the counting worker queues) wait for room or are refused as retryable, holding no event loop', async () => {
  const c = CASES[0]!
  // 1,000 tokens: the bound does not fit, and neither does the count (2,000): each is refused once counted.
  const key = await admin.createKey('flood-big', [c.provider], { limits: { daily: 1_000 } })
  const raw = JSON.stringify(c.body(prose))
  const { result, cpuMs } = await longestStretch(probeFile, async () => {
    const sent = Array.from({ length: 8 }, () =>
      fetch(`${proxy.url}${c.path}`, { method: 'POST', headers: { ...c.headers(key.key), 'content-type': 'application/json' }, body: raw }).then(async (response) => {
        await response.arrayBuffer()
        return `${response.status} ${response.headers.get('x-loopers-error-code')} ${response.headers.get('retry-after') ?? '-'}`
      }),
    )
    return Promise.all(sent)
  })
  console.log(`eight big bodies at once: ${result.join(', ')}; longest CPU stretch of the proxy's event loop ${cpuMs} ms`)
  for (const outcome of result) expect(outcome).toMatch(/^(429 budget_exceeded \d+|503 budget_unavailable 1)$/)
  expect(cpuMs).toBeLessThan(MAX_CPU_STRETCH_MS)
}, 120_000)

it("a client's own 10 MiB Bedrock CountTokens call (free) is signed over its bytes without holding the event loop", async () => {
  const key = await admin.createKey('free-big', ['bedrock'], { limits: { daily: 1_000 } })
  const body = { input: { converse: { messages: [{ role: 'user', content: [{ text: prose }] }] } } }
  const raw = JSON.stringify(body)
  bedrock.received.length = 0
  bedrock.rejected.length = 0
  const { result, cpuMs } = await longestStretch(probeFile, async () => {
    const response = await fetch(`${proxy.url}/bedrock/model/amazon.nova-test-v1:0/count-tokens`, { method: 'POST', headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' }, body: raw })
    return { status: response.status, json: (await response.json()) as unknown }
  })
  console.log(`big free CountTokens (${(raw.length / MIB).toFixed(1)} MiB): longest CPU stretch of the proxy's event loop ${cpuMs} ms`)
  expect(result).toEqual({ status: 200, json: { inputTokens: COUNTED_TOKENS } })
  // The fake recomputed the SigV4 signature over the bytes it received, and they are the client's.
  expect(bedrock.rejected).toEqual([])
  expect(bedrock.received.map((r) => r.raw === raw)).toEqual([true])
  expect(cpuMs).toBeLessThan(MAX_CPU_STRETCH_MS)
}, 120_000)
