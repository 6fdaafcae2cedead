import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { ProviderId } from '../../src/providers/types.js'
import { flood, settledDaily } from '../support/e2e.js'
import { keyHeaders, rawRequest, startFakesWorld, type FakesWorld } from '../support/security.js'

// Issue 13, finding 2: content the provider fetches or generates itself (files by id or URL, documents by
// URL, S3 objects, hosted tools) is not in the body, so it must not be reserved as if it were tiny.
// Test prices: one token costs one micro-USD.

let world: FakesWorld

beforeAll(async () => {
  world = await startFakesWorld()
})
afterAll(async () => world.close())
beforeEach(() => world.reset())

const ONE_USD = 1_000_000
const json = { 'content-type': 'application/json' }

function send(provider: ProviderId, key: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  return rawRequest(world.proxy.url, 'POST', path, { ...json, ...keyHeaders(provider, key), ...headers }, JSON.stringify(body))
}

describe('finding 2: content the provider fetches itself is reserved as a whole context window', () => {
  it('200 concurrent requests with a file by id on a $1 key are not all admitted and settle within the limit (fake ledger)', async () => {
    const { key, hash } = await world.key(ONE_USD)
    // The provider bills the fetched file: 100,000 input tokens ($0.10) per request, whatever the body's size.
    world.fakes.openai.options = { promptTokens: 100_000, completionTokens: 7 }
    const body = { model: 'gpt-test', max_output_tokens: 16, input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-abc' }, { type: 'input_text', text: 'sum up' }] }] }
    const { ok } = await flood(200, () => send('openai', key, '/openai/v1/responses', body))
    const billedMicros = world.fakes.openai.received.length * (100_000 + 7)
    expect(billedMicros).toBeLessThanOrEqual(ONE_USD)
    expect(ok.filter((a) => a.status === 200).length).toBe(world.fakes.openai.received.length)
    expect(ok.filter((a) => a.status === 429).length).toBeGreaterThan(0)
    const totals = await settledDaily(world.proxy, hash)
    expect(totals.spent).toBeLessThanOrEqual(ONE_USD)
    expect(totals.held).toBe(0)
  })

  it.each([
    ['openai', '/openai/v1/chat/completions', { model: 'gpt-test', max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }] }],
    ['openai', '/openai/v1/responses', { model: 'gpt-test', max_output_tokens: 16, input: [{ role: 'user', content: [{ type: 'input_file', file_url: 'https://example.com/big.pdf' }] }] }],
    ['anthropic', '/anthropic/v1/messages', { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'url', url: 'https://example.com/big.pdf' } }] }] }],
    ['anthropic', '/anthropic/v1/messages', { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'file', file_id: 'file_1' } }] }] }],
    ['anthropic', '/anthropic/v1/messages', { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'read it' }], tools: [{ type: 'web_fetch_20250910', name: 'web_fetch' }] }],
    ['bedrock', '/bedrock/model/amazon.nova-test-v1%3A0/converse', { messages: [{ role: 'user', content: [{ document: { format: 'pdf', name: 'd', source: { s3Location: { uri: 's3://bucket/big.pdf' } } } }] }], inferenceConfig: { maxTokens: 16 } }],
    ['mistral', '/mistral/v1/chat/completions', { model: 'mistral-test', max_tokens: 16, messages: [{ role: 'user', content: [{ type: 'document_url', document_url: 'https://example.com/big.pdf' }] }] }],
  ] as const)('%s %s: a fetched part does not fit a $1 budget (a 2M-token context does not), and nothing is sent', async (provider, path, body) => {
    const { key } = await world.key(ONE_USD)
    const answer = await send(provider, key, path, body)
    expect(answer.status).toBe(429)
    expect(answer.headers['x-loopers-error-code']).toBe('budget_exceeded')
    expect(world.received()).toEqual([])
  })

  it('the same requests without a fetched part are admitted on that budget', async () => {
    const { key } = await world.key(ONE_USD)
    const answer = await send('anthropic', key, '/anthropic/v1/messages', { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] })
    expect(answer.status).toBe(200)
    expect(world.received()).toHaveLength(1)
  })
})

describe('finding 2: hosted tools with a per-call fee are priced per call, or refused until they can be', () => {
  it.each([
    // Priced per call, but nothing bounds the number of calls.
    ['openai', '/openai/v1/responses', { model: 'gpt-test', input: 'news?', tools: [{ type: 'web_search' }] }],
    ['anthropic', '/anthropic/v1/messages', { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'news?' }], tools: [{ type: 'web_search_20250305', name: 'web_search' }] }],
    // Billed per container, per grounded prompt or not published: not priced.
    ['openai', '/openai/v1/responses', { model: 'gpt-test', input: 'run', tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] }],
    ['openai', '/openai/v1/responses', { model: 'gpt-test', input: 'find', tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }],
    ['openai', '/openai/v1/chat/completions', { model: 'gpt-test', messages: [{ role: 'user', content: 'news?' }], web_search_options: {} }],
    ['azure', '/azure/openai/v1/responses', { model: 'my-gpt4o', input: 'news?', max_tool_calls: 2, tools: [{ type: 'web_search_preview' }] }],
    ['anthropic', '/anthropic/v1/messages', { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'run' }], tools: [{ type: 'code_execution_20250825', name: 'code_execution' }] }],
    ['gemini', '/gemini/v1beta/models/gemini-test:generateContent', { contents: [{ parts: [{ text: 'news?' }] }], tools: [{ googleSearch: {} }] }],
    ['bedrock', '/bedrock/model/amazon.nova-test-v1%3A0/converse', { messages: [{ role: 'user', content: [{ text: 'x' }] }], toolConfig: { tools: [{ systemTool: { name: 'nova_grounding' } }] } }],
  ] as const)('%s %s is refused with invalid_request and never sent', async (provider, path, body) => {
    const { key } = await world.key(100 * ONE_USD)
    const answer = await send(provider, key, path, body)
    expect(answer.status).toBe(400)
    expect(answer.headers['x-loopers-error-code']).toBe('invalid_request')
    expect(answer.text).toMatch(/per-call fee|billed per call/)
    expect(world.received()).toEqual([])
  })

  it('Anthropic web search with max_uses is reserved and charged at $10 per 1,000 searches for every allowed search', async () => {
    const { key, hash } = await world.key(10 * ONE_USD)
    world.fakes.anthropic.options = { inputTokens: 40, outputTokens: 9 }
    const body = { model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'news?' }], tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 3 }] }
    const answer = await send('anthropic', key, '/anthropic/v1/messages', body)
    expect(answer.status).toBe(200)
    // Usage at token rates plus three searches at 10,000 µUSD each (the proxy does not itemise calls made).
    expect((await settledDaily(world.proxy, hash)).spent).toBe(40 + 9 + 3 * 10_000)
  })

  it('OpenAI web search with max_tool_calls is reserved with its fees: it does not fit a budget below them', async () => {
    const { key } = await world.key(2_200_000)
    const body = { model: 'gpt-test', max_output_tokens: 16, input: 'news?', max_tool_calls: 100, tools: [{ type: 'web_search' }] }
    // A 2,097,152-token context for the results plus 100 calls at $0.01: more than $2.20.
    const answer = await send('openai', key, '/openai/v1/responses', body)
    expect(answer.status).toBe(429)
    expect(world.received()).toEqual([])
    const fits = await send('openai', key, '/openai/v1/responses', { ...body, max_tool_calls: 5 })
    expect(fits.status).toBe(200)
  })
})
