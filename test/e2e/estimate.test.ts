import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { countChatTokens, loadedEncodings } from '../../src/tokens/tiktoken.js'
import { startFakeOpenAi } from '../support/fake-openai.js'
import { eventually } from '../support/proxy.js'
import { useProviderStack } from '../support/provider-stack.js'

// The proxy runs in this process, so the tokenizer module the test inspects is the one it uses.
const stack = useProviderStack('openai', () => startFakeOpenAi())

async function keyWithDailyLimit(micros: number): Promise<{ sdk: OpenAI; hash: string }> {
  const { key, record } = await stack.proxy.admin.createKey('estimate', ['openai'], { unlimited: true })
  await stack.proxy.admin.setBudget(record.hash, { limits: { daily: micros } })
  const sdk = new OpenAI({ apiKey: key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
  return { sdk, hash: record.hash }
}

describe('the input estimate', () => {
  it('admits a 1 MB prompt on the byte bound alone when the budget is ample: no tokenizer is built', async () => {
    const { sdk, hash } = await keyWithDailyLimit(100_000_000)
    const prompt = 'hello world, '.repeat(80_000)
    expect(Buffer.byteLength(prompt)).toBeGreaterThan(1_000_000)
    await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: prompt }] })
    await eventually(() => stack.proxy.inflight() === 0, 'settlement')
    expect(loadedEncodings()).toEqual([])
    const summary = stack.proxy.logs.filter((l) => l.msg === 'request' && l.key === hash.slice(0, 8)).at(-1)!
    expect(Number(summary.inputBound)).toBeGreaterThan(1_000_000)
  })

  it('counts exactly only when the bound does not fit, in the counting worker: the event loop builds no tokenizer', async () => {
    // About 240,000 tokens by count, over 1 MB by bytes: a 600,000 micro-USD budget holds the count only.
    const { sdk, hash } = await keyWithDailyLimit(600_000)
    const prompt = 'hello world, '.repeat(80_000)
    await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: prompt }], max_tokens: 10 })
    await eventually(() => stack.proxy.inflight() === 0, 'settlement')
    expect(loadedEncodings()).toEqual([])
    const summary = stack.proxy.logs.filter((l) => l.msg === 'request' && l.key === hash.slice(0, 8)).at(-1)!
    expect(Number(summary.inputBound)).toBe(countChatTokens({ messages: [{ role: 'user', content: prompt }] }, 'gpt-test'))
  })
})
