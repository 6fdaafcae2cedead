import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startDemoProvider, type DemoProvider } from '../../../src/demo/fake-provider.js'
import { countChatTokens, countTextTokens } from '../../../src/tokens/tiktoken.js'

/** The demo's fake provider bills as OpenAI does: tokens counted with the model's tokenizer, never bytes. */

let provider: DemoProvider
const messages = [{ role: 'user', content: 'How much does this cost?' }]

beforeAll(async () => {
  provider = await startDemoProvider()
})
afterAll(async () => {
  await provider?.close()
})

const post = (body: Record<string, unknown>) =>
  fetch(`${provider.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

describe('demo fake provider', () => {
  it('answers a chat completion with usage in tokens, within the cap, and books it', async () => {
    const body = { model: 'gpt-4o-mini', messages, max_tokens: 40 }
    const res = await post(body)
    expect(res.status).toBe(200)
    const json = (await res.json()) as { choices: Array<{ message: { content: string } }>; usage: { prompt_tokens: number; completion_tokens: number } }
    const content = json.choices[0]!.message.content
    expect(json.usage.prompt_tokens).toBe(countChatTokens(body, 'gpt-4o-mini'))
    expect(json.usage.completion_tokens).toBe(countTextTokens(content, 'o200k_base'))
    expect(json.usage.completion_tokens).toBeLessThanOrEqual(40)
    expect(json.usage.completion_tokens).toBeGreaterThan(30)
    expect(Buffer.byteLength(content)).toBeGreaterThan(json.usage.completion_tokens * 3)
    expect(provider.ledger).toEqual({ requests: 1, inputTokens: json.usage.prompt_tokens, outputTokens: json.usage.completion_tokens })
  })

  it('streams OpenAI chunks and reports usage last when asked, matching what it streamed', async () => {
    const before = { ...provider.ledger }
    const res = await post({ model: 'gpt-4o-mini', messages, stream: true, stream_options: { include_usage: true }, max_completion_tokens: 25 })
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    const events = (await res.text()).split('\n\n').filter((e) => e !== '').map((e) => e.replace(/^data: /, ''))
    expect(events.at(-1)).toBe('[DONE]')
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: Array<{ delta: { content?: string } }>; usage?: { completion_tokens: number } })
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')
    const usage = chunks.at(-1)!.usage!
    expect(usage.completion_tokens).toBe(countTextTokens(text, 'o200k_base'))
    expect(usage.completion_tokens).toBeLessThanOrEqual(25)
    expect(provider.ledger.outputTokens - before.outputTokens).toBe(usage.completion_tokens)
  })

  it('refuses what it does not speak', async () => {
    expect((await post({ messages })).status).toBe(400)
    expect((await fetch(`${provider.url}/v1/embeddings`, { method: 'POST', body: '{}' })).status).toBe(400)
  })
})
