import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { createTestKey, latestSummary, settle, settledDaily } from '../support/e2e.js'
import { useOpenAiStack } from '../support/openai-stack.js'
import { eventually } from '../support/proxy.js'
import { STORE_KINDS } from '../support/stores.js'

/** A refusal and a stream cut-off appear in `GET /api/events`, live sessions in `GET /api/sessions`, on both stores (issue 11). */
describe.each(STORE_KINDS)('%s store: GET /api/events and /api/sessions', (kind) => {
  const stack = useOpenAiStack(kind, { LOOPERS_STREAM_SLICE_TOKENS: '16' })

  const events = async (query = ''): Promise<Array<Record<string, unknown>>> => {
    const response = await fetch(`${stack.proxy.server.adminUrl}/api/events${query}`)
    expect(response.status).toBe(200)
    return (await response.json()) as Array<Record<string, unknown>>
  }

  it('lists the refusal and the cut-off, newest first, with no key in them', async () => {
    const { key, hash } = await createTestKey(stack.proxy, 'events-agent', ['openai'], { daily: 20 })
    const client = new OpenAI({ apiKey: key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-upstream' }, maxRetries: 0 })
    const body = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'go' }], stream: true as const, max_tokens: 900 }
    await expect(client.chat.completions.create(body)).rejects.toBeInstanceOf(OpenAI.RateLimitError)
    expect(stack.fake.received).toHaveLength(0)

    // Measure the input bound with an ample budget, then leave room for a few chunks only.
    await stack.proxy.admin.setBudget(hash, { limits: { daily: 1_000_000 } })
    stack.fake.options = { chunks: 1 }
    for await (const _ of await client.chat.completions.create(body)) void _
    await settle(stack.proxy)
    const inputBound = Number(latestSummary(stack.proxy, hash).inputBound)
    const before = (await settledDaily(stack.proxy, hash)).spent
    await stack.proxy.admin.setBudget(hash, { limits: { daily: before + inputBound + 40 } })
    stack.fake.options = { chunks: 200, chunkDelayMs: 1 }
    const cut = await (async () => {
      for await (const _ of await client.chat.completions.create(body)) void _
    })().catch((e: unknown) => e)
    expect((cut as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded')
    expect(stack.fake.ledger.at(-1)?.finished).toBe(false)

    await eventually(async () => (await events()).length === 2, 'both events recorded')
    const [cutoff, refusal] = await events()
    expect(cutoff).toMatchObject({ kind: 'cutoff', key_hash_prefix: hash.slice(0, 8), provider: 'openai', reason: 'budget_exceeded', window: 'daily' })
    expect(refusal).toMatchObject({ kind: 'refusal', key_hash_prefix: hash.slice(0, 8), provider: 'openai', reason: 'budget_exceeded', window: 'daily' })
    expect(Date.parse(String(cutoff?.time))).toBeGreaterThanOrEqual(Date.parse(String(refusal?.time)))
    expect(Object.keys(refusal ?? {}).sort()).toEqual(['key_hash_prefix', 'kind', 'provider', 'reason', 'time', 'window'])
    expect(await events('?limit=1')).toEqual([cutoff])
    expect(JSON.stringify(await events())).not.toContain(key)
    expect((await fetch(`${stack.proxy.server.adminUrl}/api/events?limit=0`)).status).toBe(400)
  })

  it('lists a live session with its spend, steps and limits', async () => {
    const { key, hash } = await createTestKey(stack.proxy, 'session-agent', ['openai'], { daily: 1_000_000 })
    const client = new OpenAI({
      apiKey: key,
      baseURL: `${stack.proxy.url}/openai/v1`,
      defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-upstream', 'X-Loopers-Session-ID': 'run-42', 'X-Loopers-Session-Budget': '0.5', 'X-Loopers-Session-Max-Steps': '7' },
      maxRetries: 0,
    })
    stack.fake.options = { chunks: 1 }
    for (let i = 0; i < 2; i++) await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: `step ${i}` }], max_tokens: 20 })
    await settle(stack.proxy)
    const spent = (await settledDaily(stack.proxy, hash)).spent
    const response = await fetch(`${stack.proxy.server.adminUrl}/api/sessions?key=session-agent`)
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual([
      { hash, name: 'session-agent', id: 'run-42', spent_usd: spent / 1e6, held_usd: 0, steps: 2, budget_usd: 0.5, max_steps: 7 },
    ])
    const all = (await (await fetch(`${stack.proxy.server.adminUrl}/api/sessions`)).json()) as Array<{ id: string }>
    expect(all.map((s) => s.id)).toContain('run-42')
    expect((await fetch(`${stack.proxy.server.adminUrl}/api/sessions?key=nobody`)).status).toBe(404)
  })

  it('records a refusal of the key gate (a revoked key) too, but not an unknown key', async () => {
    const { key, hash } = await createTestKey(stack.proxy, 'revoked-agent', ['openai'], { daily: 1_000_000 })
    await stack.proxy.admin.revokeKey(hash)
    const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-upstream' }, maxRetries: 0 })
    await expect(client(key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
    await expect(client(`lp-${'x'.repeat(43)}`).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
    await eventually(async () => (await events('?limit=1'))[0]?.reason === 'key_revoked', 'the revocation recorded')
    expect((await events('?limit=1'))[0]).toMatchObject({ kind: 'refusal', key_hash_prefix: hash.slice(0, 8), provider: 'openai', window: null })
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect((await events()).filter((e) => e.reason === 'invalid_key')).toEqual([])
  })
})
