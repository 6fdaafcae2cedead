/**
 * The security suite's world: one proxy in front of the six provider fakes, or in front of one recording
 * gateway that serves every provider under a path prefix (a base URL with a path, as a corporate gateway
 * has), and raw HTTP requests that send the target exactly as written (fetch would drop a `#` fragment).
 */
import http from 'node:http'
import type { ProviderId } from '../../src/providers/types.js'
import { createTestKey } from './e2e.js'
import { json, resetFake, startRecordingServer, type RecordingServer } from './fake-server.js'
import { startFakeAnthropic, type FakeAnthropic } from './fake-anthropic.js'
import { startFakeAzure, type FakeAzure } from './fake-azure.js'
import { startFakeBedrock, type FakeBedrock } from './fake-bedrock.js'
import { startFakeGemini, type FakeGemini } from './fake-gemini.js'
import { startFakeMistral, type FakeMistral } from './fake-mistral.js'
import { startFakeOpenAi, type FakeOpenAi } from './fake-openai.js'
import { startProxy, type TestProxy } from './proxy.js'
import { startRedis, type TestRedis } from './redis.js'

export const ALL_PROVIDERS: ProviderId[] = ['openai', 'anthropic', 'gemini', 'bedrock', 'azure', 'mistral']
export const UPSTREAM_KEY = 'upstream-test-credential'

export interface RawAnswer {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
}

/** Sends `target` byte for byte as the request target (fragments, dot segments and all). */
export function rawRequest(baseUrl: string, method: string, target: string, headers: Record<string, string> = {}, body = ''): Promise<RawAnswer> {
  const url = new URL(baseUrl)
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: url.hostname, port: url.port, method, path: target, headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (c: Buffer) => chunks.push(c))
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text: Buffer.concat(chunks).toString('utf8') }))
        response.on('error', reject)
      },
    )
    request.on('error', reject)
    request.end(body)
  })
}

/** The headers that carry a proxy key where each provider's SDK sends its key. */
export function keyHeaders(provider: ProviderId, key: string): Record<string, string> {
  switch (provider) {
    case 'anthropic':
      return { 'x-api-key': key, 'anthropic-version': '2023-06-01' }
    case 'gemini':
      return { 'x-goog-api-key': key }
    case 'azure':
      return { 'api-key': key }
    default:
      return { authorization: `Bearer ${key}` }
  }
}

export interface Fakes {
  openai: FakeOpenAi
  anthropic: FakeAnthropic
  gemini: FakeGemini
  bedrock: FakeBedrock
  azure: FakeAzure
  mistral: FakeMistral
}

export interface FakesWorld {
  redis: TestRedis
  fakes: Fakes
  proxy: TestProxy
  /** Everything the six fakes received, most recent last. */
  received(): Array<{ provider: ProviderId; method: string; url: string; raw: string }>
  reset(): void
  /** A fresh key for all providers with `dailyMicros` of budget. */
  key(dailyMicros: number): Promise<{ key: string; hash: string }>
  close(): Promise<void>
}

/** Redis, the six provider fakes and a proxy in front of them with server-held upstream keys. */
export async function startFakesWorld(env: Record<string, string> = {}): Promise<FakesWorld> {
  const redis = await startRedis()
  const fakes: Fakes = {
    openai: await startFakeOpenAi(),
    anthropic: await startFakeAnthropic(),
    gemini: await startFakeGemini(),
    bedrock: await startFakeBedrock({ aws: {}, apiKeys: [UPSTREAM_KEY] }),
    azure: await startFakeAzure(),
    mistral: await startFakeMistral(),
  }
  const proxy = await startProxy({
    REDIS_URL: redis.url,
    LOOPERS_REDIS_TIMEOUT_MS: '5000',
    LOOPERS_OPENAI_BASE_URL: fakes.openai.url,
    LOOPERS_ANTHROPIC_BASE_URL: fakes.anthropic.url,
    LOOPERS_GEMINI_BASE_URL: fakes.gemini.url,
    LOOPERS_BEDROCK_BASE_URL: fakes.bedrock.url,
    LOOPERS_AZURE_ENDPOINT: fakes.azure.url,
    LOOPERS_MISTRAL_BASE_URL: fakes.mistral.url,
    ...Object.fromEntries(ALL_PROVIDERS.map((p) => [`LOOPERS_${p.toUpperCase()}_API_KEY`, UPSTREAM_KEY])),
    ...env,
  })
  let keys = 0
  return {
    redis,
    fakes,
    proxy,
    received: () =>
      ALL_PROVIDERS.flatMap((provider) => fakes[provider].received.map((r) => ({ provider, method: r.method, url: r.url, raw: r.raw }))),
    reset: () => {
      for (const provider of ALL_PROVIDERS) {
        resetFake(fakes[provider] as FakeOpenAi)
        if (provider === 'bedrock') fakes.bedrock.rejected.length = 0
      }
    },
    key: (dailyMicros) => createTestKey(proxy, `security-${++keys}`, ALL_PROVIDERS, { daily: dailyMicros }),
    async close() {
      await proxy.close()
      for (const provider of ALL_PROVIDERS) await fakes[provider].close()
      await redis.stop()
    },
  }
}

/** A recording gateway: answers every request 200 with `{}` unless `answer` says otherwise. */
export type Gateway = RecordingServer<{ answer?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean }>

export async function startGateway(): Promise<Gateway> {
  const gateway: Gateway = await startRecordingServer({}, (req, res) => {
    if (gateway.options.answer?.(req, res) === true) return
    json(res, 200, {})
  })
  return gateway
}

/** Base URL environment that puts every provider under `{gateway}/gw-{provider}`. */
export function gatewayEnv(gateway: Gateway): Record<string, string> {
  return {
    LOOPERS_OPENAI_BASE_URL: `${gateway.url}/gw-openai`,
    LOOPERS_ANTHROPIC_BASE_URL: `${gateway.url}/gw-anthropic`,
    LOOPERS_GEMINI_BASE_URL: `${gateway.url}/gw-gemini`,
    LOOPERS_BEDROCK_BASE_URL: `${gateway.url}/gw-bedrock`,
    LOOPERS_AZURE_ENDPOINT: `${gateway.url}/gw-azure`,
    LOOPERS_MISTRAL_BASE_URL: `${gateway.url}/gw-mistral`,
    ...Object.fromEntries(ALL_PROVIDERS.map((p) => [`LOOPERS_${p.toUpperCase()}_API_KEY`, UPSTREAM_KEY])),
  }
}
