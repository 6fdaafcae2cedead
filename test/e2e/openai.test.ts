import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { expectNoProxyKeyIn, settledDaily } from '../support/e2e.js'
import { startFakeOpenAi } from '../support/fake-openai.js'
import { billedInput } from '../support/fake-server.js'
import { eventually } from '../support/proxy.js'
import { STORE_KINDS, type StoreKind } from '../support/stores.js'
import { useProviderStack } from '../support/provider-stack.js'

/** The embedded store (the default) and Redis: the same end-to-end behaviour on both. */
describe.each(STORE_KINDS)('%s store', (kind: StoreKind) => {
  const UPSTREAM_KEY = 'sk-upstream-test-credential'

  const stack = useProviderStack('openai', () => startFakeOpenAi(), { kind, key: { name: 'e2e', limits: { daily: 1_000_000 } } })

  function client(options: { apiKey?: string; baseURL?: string; headers?: Record<string, string> } = {}): OpenAI {
    return new OpenAI({
      apiKey: options.apiKey ?? stack.key,
      baseURL: options.baseURL ?? `${stack.proxy.url}/openai/v1`,
      defaultHeaders: { 'X-Loopers-Provider-Key': UPSTREAM_KEY, ...options.headers },
      maxRetries: 0,
    })
  }

  /** The daily window once every request so far has settled. */
  const daily = () => settledDaily(stack.proxy, stack.hash)
  const expectNoProxyKeyUpstream = (): void => expectNoProxyKeyIn(stack.fake.received, stack.key)

  describe('openai SDK through the proxy', () => {
    it('chat completion: forwards with the upstream key, never the proxy key, and settles the reported usage', async () => {
      const completion = await client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
      expect(completion.choices[0]?.message.content).toBe('hello again from the fake server now')
      expect(stack.fake.received).toHaveLength(1)
      expect(stack.fake.received[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
      expect(stack.fake.received[0]?.headers['accept-encoding']).toBe('identity')
      expectNoProxyKeyUpstream()
      // The prompt as OpenAI bills it (the fake's ledger) + 7 completion tokens, at 1 micro-USD each.
      expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
    })

    it('chat stream: forces include_usage upstream, relays every chunk, settles the reported usage', async () => {
      stack.fake.options = { chunks: 6 }
      const stream = await client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true })
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
      expect(text).toBe(' tok'.repeat(6))
      expect((stack.fake.received[0]?.body?.stream_options as { include_usage: boolean }).include_usage).toBe(true)
      expectNoProxyKeyUpstream()
      await eventually(async () => (await daily()).held === 0, 'settlement')
      expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 6, held: 0 })
    })

    it('forwards stream bytes exactly as the upstream sent them', async () => {
      stack.fake.options = { chunks: 7 }
      const body = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } })
      const direct = await (await fetch(`${stack.fake.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).text()
      const proxied = await fetch(`${stack.proxy.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.key}`, 'x-loopers-provider-key': UPSTREAM_KEY },
        body,
      })
      expect(proxied.headers.get('content-type')).toBe('text/event-stream')
      expect(await proxied.text()).toBe(direct)
    })

    it('responses: non-streaming and streaming settle the reported usage', async () => {
      const response = await client().responses.create({ model: 'gpt-test', input: 'hi' })
      expect(response.output_text).toBe('hello again from the fake server now')
      expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })

      stack.fake.options = { chunks: 4 }
      const stream = await client().responses.create({ model: 'gpt-test', input: 'hi', stream: true })
      let text = ''
      for await (const event of stream) if (event.type === 'response.output_text.delta') text += event.delta
      expect(text).toBe(' tok'.repeat(4))
      await eventually(async () => (await daily()).held === 0, 'settlement')
      expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7 + 4, held: 0 })
      expectNoProxyKeyUpstream()
    })

    it('embeddings are metered on input', async () => {
      const result = await client().embeddings.create({ model: 'embed-test', input: 'hello world' })
      expect(result.data[0]?.embedding).toEqual([0.5, 0.25, 0.125])
      expect(await daily()).toEqual({ spent: billedInput(stack.fake), held: 0 })
    })

    it('model list passes through free, with the upstream key', async () => {
      const models = await client().models.list()
      expect(models.data.map((m) => m.id)).toEqual(['gpt-test'])
      expect(stack.fake.received[0]?.method).toBe('GET')
      expect(stack.fake.received[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
      expect(await daily()).toEqual({ spent: 0, held: 0 })
    })

    it('path auth: the SDK key becomes the upstream credential', async () => {
      const sdk = new OpenAI({ apiKey: 'sk-real-key-from-sdk', baseURL: `${stack.proxy.url}/${stack.key}/openai/v1`, maxRetries: 0 })
      await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
      expect(stack.fake.received[0]?.headers.authorization).toBe('Bearer sk-real-key-from-sdk')
      expect(stack.fake.received[0]?.url).toBe('/v1/chat/completions')
      expectNoProxyKeyUpstream()
      expect((await daily()).spent).toBe(billedInput(stack.fake) + 7)
    })

    it('never sends a proxy key upstream, even when the client offers one as the provider credential', async () => {
      const sdk = new OpenAI({ apiKey: stack.key, baseURL: `${stack.proxy.url}/${stack.key}/openai/v1`, maxRetries: 0 })
      await expect(sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
        status: 400,
        code: 'invalid_request',
      })
      await expect(
        client({ headers: { 'X-Loopers-Provider-Key': stack.key } }).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
      ).rejects.toMatchObject({ status: 400, code: 'invalid_request' })
      expect(stack.fake.received).toHaveLength(0)
    })

    it('unknown, revoked and foreign keys raise the SDK typed errors; nothing reaches the upstream', async () => {
      const unknown = client({ apiKey: `lp-${'a'.repeat(43)}` })
      await expect(unknown.chat.completions.create({ model: 'gpt-test', messages: [] })).rejects.toMatchObject({
        status: 401,
        code: 'invalid_key',
      })
      await expect(client({ apiKey: 'sk-not-a-proxy-key' }).chat.completions.create({ model: 'gpt-test', messages: [] })).rejects.toBeInstanceOf(
        OpenAI.AuthenticationError,
      )
      await stack.proxy.admin.revokeKey(stack.hash)
      const revoked = client().chat.completions.create({ model: 'gpt-test', messages: [] })
      await expect(revoked).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
      await expect(client().chat.completions.create({ model: 'gpt-test', messages: [] })).rejects.toMatchObject({ code: 'key_revoked' })
      const other = await stack.proxy.admin.createKey('anthropic only', ['anthropic'], { unlimited: true })
      await expect(client({ apiKey: other.key }).chat.completions.create({ model: 'gpt-test', messages: [] })).rejects.toBeInstanceOf(
        OpenAI.PermissionDeniedError,
      )
      expect(stack.fake.received).toHaveLength(0)
    })

    it('a refused budget raises RateLimitError with Retry-After and the window details', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 5 } })
      const error = await client()
        .embeddings.create({ model: 'embed-test', input: 'hello '.repeat(50) })
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(OpenAI.RateLimitError)
      const rate = error as InstanceType<typeof OpenAI.RateLimitError>
      expect(rate.code).toBe('budget_exceeded')
      expect(rate.headers.get('x-loopers-error-code')).toBe('budget_exceeded')
      expect(Number(rate.headers.get('retry-after'))).toBeGreaterThan(0)
      // A daily window resets in more than a minute: the SDK is told not to retry on its own.
      expect(rate.headers.get('x-should-retry')).toBe('false')
      expect(rate.error).toMatchObject({ window: 'daily', limit_usd: 0.000005, spent_usd: 0 })
      expect(stack.fake.received).toHaveLength(0)
    })

    it('an unpriced model is refused with model_not_priced before any reservation', async () => {
      const error = await client()
        .chat.completions.create({ model: 'gpt-unknown-model', messages: [{ role: 'user', content: 'hi' }] })
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(OpenAI.BadRequestError)
      expect((error as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('model_not_priced')
      expect(stack.fake.received).toHaveLength(0)
      expect(await daily()).toEqual({ spent: 0, held: 0 })
    })
  })
})
