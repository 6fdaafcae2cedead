import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { ProviderId } from '../../src/providers/types.js'
import { keyHeaders, rawRequest, startFakesWorld, type FakesWorld } from '../support/security.js'

// Issue 13, finding 3: a price tier above standard rates must not be forwarded at standard rates; until
// the pricing table carries it, it is refused with invalid_request before any upstream contact.

let world: FakesWorld
let key: string

beforeAll(async () => {
  world = await startFakesWorld()
  key = (await world.key(100_000_000)).key
})
afterAll(async () => world.close())
beforeEach(() => world.reset())

function send(provider: ProviderId, path: string, body: unknown, headers: Record<string, string> = {}) {
  return rawRequest(world.proxy.url, 'POST', path, { 'content-type': 'application/json', ...keyHeaders(provider, key), ...headers }, JSON.stringify(body))
}

const chat = { model: 'gpt-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }
const claude = { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }
const converse = { messages: [{ role: 'user', content: [{ text: 'x' }] }], inferenceConfig: { maxTokens: 16 } }

describe('finding 3: price tiers are priced or refused, never billed at standard rates', () => {
  it.each([
    ['openai', '/openai/v1/chat/completions', { ...chat, service_tier: 'priority' }, {}],
    ['openai', '/openai/v1/chat/completions', { ...chat, service_tier: 'scale' }, {}],
    ['openai', '/openai/v1/responses', { model: 'gpt-test', input: 'hi', service_tier: 'flex' }, {}],
    ['azure', '/azure/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21', { ...chat, service_tier: 'priority' }, {}],
    ['anthropic', '/anthropic/v1/messages', claude, { 'anthropic-beta': 'context-1m-2025-08-07' }],
    ['anthropic', '/anthropic/v1/messages', claude, { 'anthropic-beta': 'prompt-caching-2024-07-31, context-1m-2025-08-07' }],
    ['bedrock', '/bedrock/model/amazon.nova-test-v1%3A0/converse', { ...converse, performanceConfig: { latency: 'optimized' } }, {}],
    ['bedrock', '/bedrock/model/amazon.nova-test-v1%3A0/converse', { ...converse, serviceTier: { type: 'priority' } }, {}],
    ['bedrock', '/bedrock/model/amazon.nova-test-v1%3A0/invoke', { messages: [{ role: 'user', content: [{ text: 'x' }] }] }, { 'x-amzn-bedrock-performanceconfig-latency': 'optimized' }],
  ] as const)('%s %s %j is refused with invalid_request and never sent', async (provider, path, body, headers) => {
    const answer = await send(provider, path, body, headers)
    expect(answer.status).toBe(400)
    expect(answer.headers['x-loopers-error-code']).toBe('invalid_request')
    expect(world.received()).toEqual([])
  })

  it('the standard tier still goes through', async () => {
    expect((await send('openai', '/openai/v1/chat/completions', { ...chat, service_tier: 'auto' })).status).toBe(200)
    expect((await send('anthropic', '/anthropic/v1/messages', claude, { 'anthropic-beta': 'prompt-caching-2024-07-31' })).status).toBe(200)
    expect((await send('bedrock', '/bedrock/model/amazon.nova-test-v1%3A0/converse', { ...converse, performanceConfig: { latency: 'standard' } })).status).toBe(200)
    expect(world.received()).toHaveLength(3)
  })
})
