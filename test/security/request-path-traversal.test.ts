import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { unsafePathReason, upstreamUrl } from '../../src/http/upstream-url.js'
import type { ProviderId } from '../../src/providers/types.js'
import { createTestKey } from '../support/e2e.js'
import { ALL_PROVIDERS, gatewayEnv, keyHeaders, rawRequest, startGateway, type Gateway } from '../support/security.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 13, finding 6: with a base URL that has a path (a corporate gateway's `/openai`), a dot segment
// in the client's path — raw, percent-encoded in any case, or hidden behind an encoded slash or backslash —
// could reach another path of that gateway with the server's key. Every adapter builds its upstream URL
// through one check; each is tested here behind a gateway that serves every provider under `/gw-{provider}`.

let redis: TestRedis
let gateway: Gateway
let proxy: TestProxy
let key: string

beforeAll(async () => {
  redis = await startRedis()
  gateway = await startGateway()
  proxy = await startProxy({ REDIS_URL: redis.url, ...gatewayEnv(gateway) })
  key = (await createTestKey(proxy, 'traveller', ALL_PROVIDERS, { daily: 100_000_000 })).key
})
afterAll(async () => {
  await proxy.close()
  await gateway.close()
  await redis.stop()
})
beforeEach(() => {
  gateway.received.length = 0
})

const json = { 'content-type': 'application/json' }

describe('finding 6: no path leaves the base URL of any adapter', () => {
  it('the reported repro: GET /openai/%2e%2e/internal/x never reaches the gateway', async () => {
    const answer = await rawRequest(proxy.url, 'GET', '/openai/%2e%2e/internal/x', keyHeaders('openai', key))
    expect(answer.status).toBe(400)
    expect(gateway.received).toEqual([])
  })

  it.each([
    ['openai', 'GET', '/openai/v1/models/%2e%2e%2f%2e%2e%2f%2e%2e%2finternal'],
    ['openai', 'GET', '/openai/v1/models/%2E%2E%5C%2E%2E%5Cinternal'],
    ['openai', 'GET', '/openai/v1/models/..%5cinternal'],
    ['openai', 'GET', '/openai/v1/models/%252e%252e'],
    ['anthropic', 'GET', '/anthropic/v1/models/%2e%2e%2F%2e%2e%2Finternal'],
    ['anthropic', 'GET', '/anthropic/v1/models/%2E%2e'],
    ['gemini', 'GET', '/gemini/v1beta/models/..'],
    ['gemini', 'GET', '/gemini/v1beta/models/.'],
    ['bedrock', 'POST', '/bedrock/model/..%2F..%2F..%2Finternal/count-tokens'],
    ['bedrock', 'POST', '/bedrock/model/%2e%2e%2f%2e%2e%2fx/converse'],
    ['bedrock', 'POST', '/bedrock/model/a%5C..%5C..%5Cx/converse'],
    ['azure', 'GET', '/azure/openai/models/%2e%2e%2f%2e%2e%2finternal?api-version=2024-10-21'],
    ['azure', 'GET', '/azure/openai/v1/models/%2e%2e'],
    ['mistral', 'GET', '/mistral/v1/models/%2e%2e%2f%2e%2e%2finternal'],
    ['mistral', 'GET', '/mistral/v1/models/%2E%2E'],
  ] as const)('%s %s %s is refused and never reaches the gateway', async (provider, method, path) => {
    const body = method === 'POST' ? JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'x' }] }], inferenceConfig: { maxTokens: 8 } }) : ''
    const answer = await rawRequest(proxy.url, method, path, { ...json, ...keyHeaders(provider as ProviderId, key) }, body)
    expect(answer.status).toBe(400)
    expect(answer.headers['x-loopers-error-code']).toBe('invalid_request')
    expect(gateway.received).toEqual([])
  })

  it.each([
    ['openai', '/openai/v1/chat/completions', { model: 'gpt-test', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }, '/gw-openai/v1/chat/completions'],
    ['anthropic', '/anthropic/v1/messages', { model: 'claude-test', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }, '/gw-anthropic/v1/messages'],
    ['gemini', '/gemini/v1beta/models/gemini-test:generateContent', { contents: [{ parts: [{ text: 'x' }] }] }, '/gw-gemini/v1beta/models/gemini-test:generateContent'],
    ['bedrock', '/bedrock/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.amazon.nova-test-v1%3A0/count-tokens', {}, '/gw-bedrock/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.amazon.nova-test-v1%3A0/count-tokens'],
    ['azure', '/azure/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21', { max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }, '/gw-azure/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21'],
    ['mistral', '/mistral/v1/chat/completions', { model: 'mistral-test', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }, '/gw-mistral/v1/chat/completions'],
  ] as const)('%s: a legitimate request goes below the base path (%s)', async (provider, path, body, upstream) => {
    const answer = await rawRequest(proxy.url, 'POST', path, { ...json, ...keyHeaders(provider as ProviderId, key) }, JSON.stringify(body))
    expect(answer.status).toBe(200)
    expect(gateway.received.map((r) => r.url)).toEqual([upstream])
  })
})

describe('the shared path check', () => {
  it.each(['/a/./b', '/a/../b', '/a/%2e%2E/b', '/a/%2E/b', '/a\\b', '/a/%5c/b', '/a/%2f/b', '/a/%252e%252e/b', '/a/%00/b', '/a/%zz/b', 'a/b', '/a#b', '/a?b'])(
    'refuses %s',
    (path) => expect(unsafePathReason(path)).not.toBeNull(),
  )
  it('allows provider paths, and encoded slashes only where an adapter allows them, never with dot parts', () => {
    expect(unsafePathReason('/v1beta/models/gemini-2.5-flash:streamGenerateContent')).toBeNull()
    expect(unsafePathReason('/v1/models/ft:gpt-4o:org:id')).toBeNull()
    expect(unsafePathReason('/model/arn%3Aaws%3Abedrock%3A%3A1%3Ainference-profile%2Fus.x/converse')).not.toBeNull()
    expect(unsafePathReason('/model/arn%3Aaws%3Abedrock%3A%3A1%3Ainference-profile%2Fus.x/converse', { allowEncodedSlash: true })).toBeNull()
    expect(unsafePathReason('/model/..%2Fx/converse', { allowEncodedSlash: true })).not.toBeNull()
  })

  it('answers a path the same every time: a remembered safe path under any query, an encoded one under its own rule only', () => {
    for (let i = 0; i < 3; i++) {
      expect(upstreamUrl('https://gw.example/openai', '/v1/chat/completions', i === 0 ? '' : `api-version=${i}`)).toBe(
        `https://gw.example/openai/v1/chat/completions${i === 0 ? '' : `?api-version=${i}`}`,
      )
      expect(upstreamUrl('https://gw.example', '/model/arn%3Ax%2Fy/converse', '', { allowEncodedSlash: true })).toBe('https://gw.example/model/arn%3Ax%2Fy/converse')
      expect(() => upstreamUrl('https://gw.example', '/model/arn%3Ax%2Fy/converse', '')).toThrow(/encoded slashes/)
      expect(() => upstreamUrl('https://gw.example/openai', '/v1/../../admin', '')).toThrow(/dot segments/)
      expect(unsafePathReason('/v1/chat/completions')).toBeNull()
      expect(unsafePathReason('/a/%2f/b')).not.toBeNull()
      // First remembered under a query: its URL is kept without it.
      expect(upstreamUrl('https://gw.example/openai', '/v1/embeddings', i === 1 ? '' : `api-version=${i}`)).toBe(
        `https://gw.example/openai/v1/embeddings${i === 1 ? '' : `?api-version=${i}`}`,
      )
    }
  })
})
