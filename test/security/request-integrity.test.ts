import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { keyHeaders, rawRequest, startFakesWorld, type FakesWorld } from '../support/security.js'

// Issue 13, finding 1: the request that is metered must be the request that is sent. Anything a provider
// could read differently from the proxy is refused with invalid_request before any upstream contact.

let world: FakesWorld
let key: string

beforeAll(async () => {
  world = await startFakesWorld()
  key = (await world.key(10_000_000)).key
})
afterAll(async () => world.close())
beforeEach(() => world.reset())

const json = { 'content-type': 'application/json' }

async function expectRefusedUnsent(answer: { status: number; headers: Record<string, unknown> }): Promise<void> {
  expect(answer.status).toBe(400)
  expect(answer.headers['x-loopers-error-code']).toBe('invalid_request')
  expect(world.received()).toEqual([])
}

describe('finding 1: a request that could be read two ways is refused', () => {
  it('a # fragment in the request target cannot turn off Gemini stream metering', async () => {
    const body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'go' }] }] })
    const target = '/gemini/v1beta/models/gemini-test:streamGenerateContent?x=1#&alt=sse'
    await expectRefusedUnsent(await rawRequest(world.proxy.url, 'POST', target, { ...json, ...keyHeaders('gemini', key) }, body))
    // Also a fragment anywhere else in the target.
    const inPath = '/openai/v1/chat/completions#x'
    const chat = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
    await expectRefusedUnsent(await rawRequest(world.proxy.url, 'POST', inPath, { ...json, ...keyHeaders('openai', key) }, chat))
  })

  it('a repeated query parameter the proxy reads is refused (Azure api-version, Gemini alt)', async () => {
    const chat = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 10 })
    const azure = '/azure/openai/deployments/my-gpt4o/chat/completions?api-version=2024-02-01&api-version=2024-10-21'
    await expectRefusedUnsent(await rawRequest(world.proxy.url, 'POST', azure, { ...json, ...keyHeaders('azure', key) }, chat))
    const body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'go' }] }] })
    const gemini = '/gemini/v1beta/models/gemini-test:streamGenerateContent?alt=sse&al%74=sse'
    await expectRefusedUnsent(await rawRequest(world.proxy.url, 'POST', gemini, { ...json, ...keyHeaders('gemini', key) }, body))
  })

  it.each([
    ['openai', '/openai/v1/chat/completions', '{"model":"gpt-test","stream":false,"messages":[{"role":"user","content":"hi"}],"stream":true}'],
    ['openai', '/openai/v1/chat/completions', '{"model":"gpt-test","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"max_tokens":100000}'],
    ['openai', '/openai/v1/chat/completions', '{"model":"gpt-test","n":1,"messages":[{"role":"user","content":"hi"}],"\\u006e":64}'],
    ['openai', '/openai/v1/responses', '{"model":"gpt-test","input":[{"role":"user","content":[{"type":"input_file","type":"input_text","text":"x","file_id":"file-1"}]}]}'],
    ['anthropic', '/anthropic/v1/messages', '{"model":"claude-test","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"max_tokens":900}'],
    ['gemini', '/gemini/v1beta/models/gemini-test:generateContent', '{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":5,"maxOutputTokens":900}}'],
    ['bedrock', '/bedrock/model/amazon.nova-test-v1%3A0/converse', '{"messages":[{"role":"user","content":[{"text":"x"}]}],"inferenceConfig":{"maxTokens":5,"maxTokens":900}}'],
    ['mistral', '/mistral/v1/chat/completions', '{"model":"mistral-test","model":"mistral-large-latest","messages":[{"role":"user","content":"hi"}],"max_tokens":5}'],
  ] as const)('a repeated JSON key among metered fields is refused: %s %s', async (provider, path, body) => {
    await expectRefusedUnsent(await rawRequest(world.proxy.url, 'POST', path, { ...json, ...keyHeaders(provider, key) }, body))
  })

  it('the query that goes upstream is the one the meter read, re-encoded', async () => {
    const body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'go' }] }] })
    const answer = await rawRequest(world.proxy.url, 'POST', '/gemini/v1beta/models/gemini-test:streamGenerateContent?%61lt=sse', { ...json, ...keyHeaders('gemini', key) }, body)
    expect(answer.status).toBe(200)
    // The SSE stream the meter framed, because the upstream read the same `alt` the proxy read.
    expect(answer.text).toContain('data: ')
    expect(world.fakes.gemini.received.map((r) => r.url)).toEqual(['/v1beta/models/gemini-test:streamGenerateContent?alt=sse'])
  })
})
