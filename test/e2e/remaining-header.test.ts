import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { createTestKey, settle } from '../support/e2e.js'
import { useOpenAiStack } from '../support/openai-stack.js'
import { STORE_KINDS } from '../support/stores.js'

const HEADER = 'x-loopers-budget-remaining-usd'

/** Waits, when less than `marginMs` is left of the current UTC minute, until the next one has begun. */
async function clearOfMinuteEnd(marginMs: number): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000)
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 50))
}

describe.each(STORE_KINDS)('%s store: X-Loopers-Budget-Remaining-USD', (kind) => {
  const stack = useOpenAiStack(kind)

  const sdk = (key: string, headers: Record<string, string> = {}): OpenAI =>
    new OpenAI({ apiKey: key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up', ...headers }, maxRetries: 0 })

  it('streamed and not: what the tightest window has left after this request’s hold; on a budget refusal too', async () => {
    // Every step reads the same minute window: begun at least 10 s before it ends (the steps take well under 1 s).
    await clearOfMinuteEnd(10_000)
    const { key, hash } = await createTestKey(stack.proxy, 'remaining', ['openai'], { daily: 1_000_000, minute: 200_000 })
    const client = sdk(key)
    const body = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'hi' }], max_tokens: 1_000 }
    const plain = await client.chat.completions.create(body).withResponse()
    const first = Number(plain.response.headers.get(HEADER))
    // The minute (the tighter limit) less this request's hold: it was answered before it settled.
    expect(first).toBeGreaterThan(0)
    expect(first).toBeLessThan(0.2)
    await settle(stack.proxy)
    const settled = (await stack.proxy.admin.status(hash))!.minute
    expect(settled.heldMicros).toBe(0)

    const streamed = await client.chat.completions.create({ ...body, stream: true }).withResponse()
    for await (const chunk of streamed.data) void chunk
    const second = Number(streamed.response.headers.get(HEADER))
    // The same minute: its settled spend and this stream's whole hold are gone from it.
    const reserved = 200_000 - settled.spentMicros - Math.round(second * 1_000_000)
    expect(reserved).toBeGreaterThan(0)
    expect(streamed.response.headers.get(HEADER)).toMatch(/^\d+\.\d{6}$/)
    await settle(stack.proxy)

    // A refusal by the minute reports what that window has left.
    await stack.proxy.admin.setBudget(hash, { limits: { minute: 1 } })
    const refused: unknown = await client.chat.completions.create(body).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError)
    expect((refused as InstanceType<typeof OpenAI.APIError>).headers?.get(HEADER)).toBe('0.000000')
  })

  it('is the session budget when it is tighter, and absent when nothing is limited', async () => {
    const { key } = await createTestKey(stack.proxy, 'session', ['openai'], { daily: 50_000_000 })
    const inSession = await sdk(key, { 'X-Loopers-Session-ID': 'r-1', 'X-Loopers-Session-Budget': '0.01' })
      .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100 })
      .withResponse()
    const left = Number(inSession.response.headers.get(HEADER))
    expect(left).toBeGreaterThan(0)
    expect(left).toBeLessThan(0.01)

    const open = await createTestKey(stack.proxy, 'open', ['openai'])
    const unlimited = await sdk(open.key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 }).withResponse()
    expect(unlimited.response.headers.get(HEADER)).toBeNull()
    void kind
  })
})
