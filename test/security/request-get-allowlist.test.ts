import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { ProviderId } from '../../src/providers/types.js'
import { createTestKey } from '../support/e2e.js'
import { ALL_PROVIDERS, gatewayEnv, keyHeaders, rawRequest, startGateway, type Gateway } from '../support/security.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 13, finding 5: every GET used to be forwarded with the server-held provider key, so one tenant could
// read another's stored completions, files, batch results and conversations. Only model lists and model
// retrieval are forwarded; everything else is refused with invalid_request without contacting the upstream.

let redis: TestRedis
let gateway: Gateway
let proxy: TestProxy
let key: string

beforeAll(async () => {
  redis = await startRedis()
  gateway = await startGateway()
  proxy = await startProxy({ REDIS_URL: redis.url, ...gatewayEnv(gateway) })
  key = (await createTestKey(proxy, 'reader', ALL_PROVIDERS, { daily: 1_000_000 })).key
})
afterAll(async () => {
  await proxy.close()
  await gateway.close()
  await redis.stop()
})
beforeEach(() => {
  gateway.received.length = 0
  gateway.options = {}
})

describe('finding 5: only model reads are forwarded', () => {
  it.each([
    ['openai', 'GET', '/openai/v1/chat/completions'],
    ['openai', 'GET', '/openai/v1/chat/completions/chatcmpl-1/messages'],
    ['openai', 'GET', '/openai/v1/files/file-1/content'],
    ['openai', 'GET', '/openai/v1/responses/resp_1'],
    ['openai', 'GET', '/openai/v1/batches'],
    ['openai', 'DELETE', '/openai/v1/models/ft:gpt-test:org:1'],
    ['openai', 'PUT', '/openai/v1/models'],
    ['anthropic', 'GET', '/anthropic/v1/messages/batches/msgbatch_1/results'],
    ['anthropic', 'GET', '/anthropic/v1/files'],
    ['gemini', 'GET', '/gemini/v1beta/batches'],
    ['gemini', 'GET', '/gemini/v1beta/files/abc'],
    ['gemini', 'GET', '/gemini/v1beta/cachedContents'],
    ['gemini', 'GET', '/gemini/v1beta/models/gemini-test:generateContent'],
    ['bedrock', 'GET', '/bedrock/async-invoke'],
    ['azure', 'GET', '/azure/openai/files?api-version=2024-10-21'],
    ['azure', 'GET', '/azure/openai/v1/chat/completions'],
    ['mistral', 'GET', '/mistral/v1/conversations'],
    ['mistral', 'GET', '/mistral/v1/files'],
  ] as const)('%s %s %s is refused with invalid_request and never reaches the upstream', async (provider, method, path) => {
    const answer = await rawRequest(proxy.url, method, path, keyHeaders(provider as ProviderId, key))
    expect(answer.status).toBe(400)
    expect(answer.headers['x-loopers-error-code']).toBe('invalid_request')
    expect(gateway.received).toEqual([])
  })

  it.each([
    ['openai', '/openai/v1/models', '/gw-openai/v1/models'],
    ['openai', '/openai/v1/models/gpt-test', '/gw-openai/v1/models/gpt-test'],
    ['anthropic', '/anthropic/v1/models', '/gw-anthropic/v1/models'],
    ['anthropic', '/anthropic/v1/models/claude-test', '/gw-anthropic/v1/models/claude-test'],
    ['gemini', '/gemini/v1beta/models', '/gw-gemini/v1beta/models'],
    ['gemini', '/gemini/v1/models/gemini-test', '/gw-gemini/v1/models/gemini-test'],
    ['azure', '/azure/openai/models?api-version=2024-10-21', '/gw-azure/openai/models?api-version=2024-10-21'],
    ['mistral', '/mistral/v1/models', '/gw-mistral/v1/models'],
  ] as const)('%s %s is forwarded free', async (provider, path, upstream) => {
    const answer = await rawRequest(proxy.url, 'GET', path, keyHeaders(provider as ProviderId, key))
    expect(answer.status).toBe(200)
    expect(gateway.received.map((r) => r.url)).toEqual([upstream])
  })

  it('a free answer is streamed through with a byte cap, never buffered whole', async () => {
    const chunk = Buffer.alloc(1024 * 1024, 0x20)
    gateway.options = {
      answer: (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' })
        // 40 MiB of model list: past the 16 MiB cap the proxy cuts the answer.
        let sent = 0
        const pump = (): void => {
          while (sent < 40 && !res.destroyed) {
            sent++
            if (!res.write(chunk)) return void res.once('drain', pump)
          }
          if (!res.destroyed) res.end()
        }
        pump()
        return true
      },
    }
    const received = await rawRequest(proxy.url, 'GET', '/openai/v1/models', keyHeaders('openai', key)).then(
      (answer) => answer.text.length,
      () => -1,
    )
    expect(received).toBeLessThanOrEqual(16 * 1024 * 1024)
  })
})
