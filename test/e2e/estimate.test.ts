import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countChatTokens, loadedEncodings } from '../../src/tokens/tiktoken.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// The proxy runs in this process, so the tokenizer module the test inspects is the one it uses.
let store: TestStore
let fake: FakeOpenAi
let proxy: TestProxy

beforeAll(async () => {
  store = await startTestStore()
  fake = await startFakeOpenAi()
  proxy = await startProxy({ ...store.env, LOOPERS_OPENAI_BASE_URL: fake.url })
})
afterAll(async () => {
  await proxy?.close()
  await fake?.close()
  await store?.stop()
})

async function keyWithDailyLimit(micros: number): Promise<{ sdk: OpenAI; hash: string }> {
  const { key, record } = await proxy.admin.createKey('estimate', ['openai'], { unlimited: true })
  await proxy.admin.setBudget(record.hash, { limits: { daily: micros } })
  const sdk = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
  return { sdk, hash: record.hash }
}

describe('the input estimate', () => {
  it('admits a 1 MB prompt on the byte bound alone when the budget is ample: no tokenizer is built', async () => {
    const { sdk, hash } = await keyWithDailyLimit(100_000_000)
    const prompt = 'hello world, '.repeat(80_000)
    expect(Buffer.byteLength(prompt)).toBeGreaterThan(1_000_000)
    await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: prompt }] })
    await eventually(() => proxy.inflight() === 0, 'settlement')
    expect(loadedEncodings()).toEqual([])
    const summary = proxy.logs.filter((l) => l.msg === 'request' && l.key === hash.slice(0, 8)).at(-1)!
    expect(Number(summary.inputBound)).toBeGreaterThan(1_000_000)
  })

  it('counts exactly only when the bound does not fit, in the counting worker: the event loop builds no tokenizer', async () => {
    // About 240,000 tokens by count, over 1 MB by bytes: a 600,000 micro-USD budget holds the count only.
    const { sdk, hash } = await keyWithDailyLimit(600_000)
    const prompt = 'hello world, '.repeat(80_000)
    await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: prompt }], max_tokens: 10 })
    await eventually(() => proxy.inflight() === 0, 'settlement')
    expect(loadedEncodings()).toEqual([])
    const summary = proxy.logs.filter((l) => l.msg === 'request' && l.key === hash.slice(0, 8)).at(-1)!
    expect(Number(summary.inputBound)).toBe(countChatTokens({ messages: [{ role: 'user', content: prompt }] }, 'gpt-test'))
  })
})
