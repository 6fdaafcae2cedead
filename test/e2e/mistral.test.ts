import { HTTPClient, Mistral } from '@mistralai/mistralai'
import { MistralError } from '@mistralai/mistralai/models/errors'
import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { expectCutAtBudget, expectNoProxyKeyIn, flood, settledDaily, summaryAt } from '../support/e2e.js'
import { startFakeMistral } from '../support/fake-mistral.js'
import { billedInput, type LedgerEntry } from '../support/fake-server.js'
import { eventually, type TestProxy } from '../support/proxy.js'
import { PATIENT_STORE, SMALL_SLICES, useProviderStack } from '../support/provider-stack.js'

// Test prices make one token cost one micro-USD (mistral-test, mistral-embed-test), so micros are token counts.
const UPSTREAM_KEY = 'mistral-upstream-key-0123456789'
const SERVER_KEY = 'mistral-server-held-key'
const HI = [{ role: 'user' as const, content: 'hi' }]

const stack = useProviderStack('mistral', () => startFakeMistral(), {
  env: { LOOPERS_MISTRAL_API_KEY: SERVER_KEY, ...PATIENT_STORE, ...SMALL_SLICES },
  key: { name: 'mistral-e2e', limits: { daily: 1_000_000 } },
  preload: true,
})

/** The Mistral SDK pointed at the proxy; the upstream key travels in X-Loopers-Provider-Key via an HTTPClient hook. */
function mistral(options: { apiKey?: string; serverURL?: string; providerKey?: string | null } = {}): Mistral {
  const providerKey = options.providerKey === undefined ? UPSTREAM_KEY : options.providerKey
  const httpClient = new HTTPClient()
  if (providerKey !== null) {
    httpClient.addHook('beforeRequest', (request) => {
      request.headers.set('X-Loopers-Provider-Key', providerKey)
    })
  }
  return new Mistral({ apiKey: options.apiKey ?? stack.key, serverURL: options.serverURL ?? `${stack.proxy.url}/mistral`, httpClient })
}

/** The daily window once every request so far has settled here and on `also`. */
const daily = (also: TestProxy[] = []) => settledDaily(stack.proxy, stack.hash, also)

/** The summary line of this key's `count`-th request, once the proxy has written it. */
const summaryOf = (count: number) => summaryAt(stack.proxy, stack.hash, count)

const expectNoProxyKeyUpstream = (): void => expectNoProxyKeyIn(stack.fake.received, stack.key)

describe('@mistralai/mistralai through the proxy', () => {
  it('chat.complete: forwards with the upstream key, never the proxy key, and settles the reported usage', async () => {
    const response = await mistral().chat.complete({ model: 'mistral-test', messages: HI })
    expect(response.choices?.[0]?.message?.content).toBe('hello again from the fake server now')
    expect(stack.fake.received).toHaveLength(1)
    expect(stack.fake.received[0]?.url).toBe('/v1/chat/completions')
    expect(stack.fake.received[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
    expect(stack.fake.received[0]?.headers['accept-encoding']).toBe('identity')
    expectNoProxyKeyUpstream()
    // The prompt Mistral bills (the fake's ledger) + 7 output tokens.
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('chat.stream: no stream_options upstream (Mistral refuses it), usage from the last chunk settles', async () => {
    stack.fake.options = { chunks: 6 }
    const stream = await mistral().chat.stream({ model: 'mistral-test', messages: HI })
    let text = ''
    for await (const event of stream) {
      const content = event.data.choices[0]?.delta.content
      if (typeof content === 'string') text += content
    }
    expect(text).toBe(' tok'.repeat(6))
    expect(stack.fake.received[0]?.body?.stream).toBe(true)
    expect(stack.fake.received[0]?.body).not.toHaveProperty('stream_options')
    expectNoProxyKeyUpstream()
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 6, held: 0 })
  })

  it('embeddings.create is metered on input', async () => {
    const result = await mistral().embeddings.create({ model: 'mistral-embed-test', inputs: ['hello world'] })
    expect(result.data[0]?.embedding).toEqual([0.5, 0.25, 0.125])
    expect(stack.fake.received[0]?.url).toBe('/v1/embeddings')
    expect(billedInput(stack.fake)).toBeGreaterThan(0)
    expect(await daily()).toEqual({ spent: billedInput(stack.fake), held: 0 })
  })

  it('fim.complete and fim.stream are metered like chat', async () => {
    const completion = await mistral().fim.complete({ model: 'mistral-test', prompt: 'def fib(n):', suffix: 'print(fib(5))' })
    expect(completion.choices?.[0]?.message?.content).toBe('hello again from the fake server now')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
    stack.fake.options = { chunks: 3 }
    let text = ''
    for await (const event of await mistral().fim.stream({ model: 'mistral-test', prompt: 'def fib(n):' })) {
      const content = event.data.choices[0]?.delta.content
      if (typeof content === 'string') text += content
    }
    expect(text).toBe(' tok'.repeat(3))
    expect(stack.fake.received.map((r) => r.url)).toEqual(['/v1/fim/completions', '/v1/fim/completions'])
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7 + 3, held: 0 })
  })

  it('a lowered output cap goes upstream as max_tokens', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 600 } })
    await mistral().chat.complete({ model: 'mistral-test', messages: HI })
    const lowered = Number(stack.fake.received[0]?.body?.max_tokens)
    expect(lowered).toBeGreaterThan(16)
    expect(lowered).toBeLessThan(1000)
    expect(stack.fake.received[0]?.body).not.toHaveProperty('max_completion_tokens')
  })

  it('the model list passes through free', async () => {
    const models = await mistral().models.list()
    expect(models.data?.map((m) => ('id' in m ? m.id : null))).toEqual(['mistral-test'])
    expect(stack.fake.received[0]?.method).toBe('GET')
    expect(stack.fake.received[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('without X-Loopers-Provider-Key the server-held LOOPERS_MISTRAL_API_KEY is injected', async () => {
    await mistral({ providerKey: null }).chat.complete({ model: 'mistral-test', messages: HI })
    expect(stack.fake.received[0]?.headers.authorization).toBe(`Bearer ${SERVER_KEY}`)
    expectNoProxyKeyUpstream()
    expect((await daily()).spent).toBe(billedInput(stack.fake) + 7)
  })

  it('path auth: the key the SDK sends becomes the upstream credential', async () => {
    const client = mistral({ apiKey: 'mistral-real-key-from-sdk', serverURL: `${stack.proxy.url}/${stack.key}/mistral`, providerKey: null })
    await client.chat.complete({ model: 'mistral-test', messages: HI })
    expect(stack.fake.received[0]?.headers.authorization).toBe('Bearer mistral-real-key-from-sdk')
    expect(stack.fake.received[0]?.url).toBe('/v1/chat/completions')
    expectNoProxyKeyUpstream()
    expect((await daily()).spent).toBe(billedInput(stack.fake) + 7)
  })

  it('a refused budget raises the SDK error with status 429 and Mistral’s error object', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 5 } })
    const error = await mistral()
      .embeddings.create({ model: 'mistral-embed-test', inputs: ['hello '.repeat(50)] })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(MistralError)
    const failure = error as MistralError
    expect(failure.statusCode).toBe(429)
    expect(failure.headers.get('x-loopers-error-code')).toBe('budget_exceeded')
    expect(Number(failure.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(JSON.parse(failure.body)).toMatchObject({ object: 'error', type: 'budget_exceeded', code: 'budget_exceeded', window: 'daily', limit_usd: 0.000005 })
    expect(stack.fake.received).toHaveLength(0)
  })

  it('unknown, foreign and unpriced requests raise SDK errors; nothing reaches Mistral', async () => {
    const unknown = await mistral({ apiKey: `lp-${'a'.repeat(43)}` })
      .chat.complete({ model: 'mistral-test', messages: HI })
      .catch((e: unknown) => e)
    expect((unknown as MistralError).statusCode).toBe(401)
    expect(JSON.parse((unknown as MistralError).body)).toMatchObject({ object: 'error', code: 'invalid_key' })
    const other = await stack.proxy.admin.createKey('openai only', ['openai'], { unlimited: true })
    const foreign = await mistral({ apiKey: other.key })
      .chat.complete({ model: 'mistral-test', messages: HI })
      .catch((e: unknown) => e)
    expect((foreign as MistralError).statusCode).toBe(403)
    const unpriced = await mistral()
      .chat.complete({ model: 'mistral-unknown-model', messages: HI })
      .catch((e: unknown) => e)
    expect((unpriced as MistralError).statusCode).toBe(400)
    expect(JSON.parse((unpriced as MistralError).body)).toMatchObject({ object: 'error', code: 'model_not_priced' })
    expect(stack.fake.received).toHaveLength(0)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('an upstream error passes through unchanged and refunds the hold', async () => {
    stack.fake.options = { fail: { status: 429, body: { object: 'error', message: 'Requests rate limit exceeded', type: 'rate_limited', param: null, code: '1300' } } }
    const error = await mistral()
      .chat.complete({ model: 'mistral-test', messages: HI })
      .catch((e: unknown) => e)
    expect((error as MistralError).statusCode).toBe(429)
    expect(JSON.parse((error as MistralError).body)).toMatchObject({ type: 'rate_limited', code: '1300' })
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })
})

describe('streams metered chunk by chunk', () => {
  /** Runs one chat stream with `max_tokens: 900`; resolves to the text and the error that ended it. */
  async function streamChat(client: Mistral): Promise<{ text: string; error: unknown }> {
    let text = ''
    try {
      for await (const event of await client.chat.stream({ model: 'mistral-test', messages: [{ role: 'user', content: 'go' }], maxTokens: 900 })) {
        const content = event.data.choices[0]?.delta.content
        if (typeof content === 'string') text += content
      }
      return { text, error: null }
    } catch (error) {
      return { text, error }
    }
  }

  /**
   * Measures the input bound and billed prompt of the test stream, then leaves budget for the prompt as billed
   * and 25 output tokens (Mistral's output is estimated as o200k × 1.25: 20 one-token chunks count 25).
   */
  async function budgetForTwentyChunks(): Promise<{ before: number; inputBound: number; room: number }> {
    stack.fake.options = { chunks: 1 }
    expect((await streamChat(mistral())).error).toBeNull()
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const inputBound = Number((await summaryOf(1)).inputBound)
    expect(inputBound).toBeGreaterThan(0)
    const before = (await daily()).spent
    const room = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens + 25
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + room } })
    return { before, inputBound, room }
  }

  /**
   * The one-token chunks a cut stream delivers: the proxy holds the byte bound until an extension is refused,
   * then estimates the prompt, and the room left carries as many chunks as their estimate (× 1.25) fits.
   */
  function chunksLeft(room: number, summary: Record<string, unknown>): number {
    const output = room - Number(summary.inputTokens)
    let chunks = 0
    while (Math.ceil((chunks + 1) * 1.25) <= output) chunks++
    // The estimate stays within its stated error of the bill (expectInputEstimated): most of the 20 fit.
    expect(chunks).toBeGreaterThanOrEqual(12)
    return chunks
  }

  /**
   * A cut stream has no usage: its input is Mistral's estimate (o200k × 1.25, wrappers included), not the
   * byte bound; it never undercounts the fake's bill and stays within the estimate's stated error of it.
   */
  function expectInputEstimated(summary: Record<string, unknown>, inputBound: number): void {
    const billed = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens
    const charged = Number(summary.inputTokens)
    expect(charged, `estimated ${charged}, billed ${billed}`).toBeGreaterThanOrEqual(billed)
    expect(charged, `estimated ${charged}, billed ${billed}`).toBeLessThanOrEqual(Math.ceil(1.5 * billed) + 2)
    expect(charged).toBeLessThan(inputBound)
  }

  it('cuts a stream at the budget with an event the Mistral SDK raises on, and closes the upstream', async () => {
    const { before, inputBound, room } = await budgetForTwentyChunks()
    stack.fake.options = { chunks: 200, chunkDelayMs: 2 }
    const { text, error } = await streamChat(mistral())

    // The SDK validates each event as a completion chunk: Mistral's error object fails that and the
    // iteration throws the validation error (it carries no message of ours, but the stream never ends quietly).
    expect(error).toBeInstanceOf(Error)
    expect((error as Error).name).toBe('ZodError')
    expect((error as Error).message).toContain('"id"')
    await eventually(() => stack.fake.ledger[stack.fake.ledger.length - 1]?.clientAborted === true, 'upstream closed')
    expect(stack.fake.ledger[stack.fake.ledger.length - 1]?.finished).toBe(false)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const summary = await summaryOf(2)
    expect(summary.outcome).toBe('cutoff')
    expect(summary.code).toBe('budget_exceeded')
    expectInputEstimated(summary, inputBound)
    expectCutAtBudget(text, Number(summary.outputTokens), 1.25, chunksLeft(room, summary))
    expect((await daily()).spent - before).toBe(Number(summary.inputTokens) + Number(summary.outputTokens))
  })

  it('the same cutoff raises a typed APIError in the OpenAI SDK pointed at Mistral', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
    const openai = new OpenAI({ apiKey: stack.key, baseURL: `${stack.proxy.url}/mistral/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': UPSTREAM_KEY }, maxRetries: 0 })
    const body = { model: 'mistral-test', messages: [{ role: 'user' as const, content: 'go' }], stream: true as const, max_tokens: 900 }
    stack.fake.options = { chunks: 1 }
    for await (const _ of await openai.chat.completions.create(body)) void _
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const inputBound = Number((await summaryOf(1)).inputBound)
    const before = (await daily()).spent
    // The prompt as billed and 25 output tokens (20 one-token chunks estimated × 1.25).
    const room = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens + 25
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + room } })
    stack.fake.options = { chunks: 200, chunkDelayMs: 2 }
    let text = ''
    const error = await (async () => {
      for await (const chunk of await openai.chat.completions.create(body)) text += chunk.choices[0]?.delta.content ?? ''
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded')
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const summary = await summaryOf(2)
    expect(summary.outcome).toBe('cutoff')
    expectInputEstimated(summary, inputBound)
    expectCutAtBudget(text, Number(summary.outputTokens), 1.25, chunksLeft(room, summary))
    expect((await daily()).spent - before).toBe(Number(summary.inputTokens) + Number(summary.outputTokens))
  })

  it('a client abort mid-stream aborts the upstream and settles input plus the output so far, once', async () => {
    stack.fake.options = { chunks: 500, chunkDelayMs: 5 }
    const controller = new AbortController()
    const stream = await mistral().chat.stream({ model: 'mistral-test', messages: [{ role: 'user', content: 'go' }] }, { signal: controller.signal })
    let received = 0
    await (async () => {
      for await (const event of stream) {
        if (event.data.choices[0]?.delta.content) received++
        if (received === 3) controller.abort()
      }
    })().catch(() => undefined)

    await eventually(() => stack.fake.ledger[0]?.clientAborted === true, 'upstream aborted')
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const written = stack.fake.ledger[0]!.outputTokensWritten
    expect(written).toBeLessThan(500)
    const summary = await summaryOf(1)
    expect(summary.outcome).toBe('client_closed')
    const output = Number(summary.outputTokens)
    // Estimated in tokens (× 1.25): at least the three the client read, at most 1.25 × what the provider generated.
    expect(output).toBeGreaterThanOrEqual(3)
    expect(output).toBeLessThanOrEqual(Math.ceil(1.25 * written))
    const spent = (await daily()).spent
    expect(spent).toBe(Number(summary.inputTokens) + output)
    await new Promise((r) => setTimeout(r, 200))
    expect((await daily()).spent).toBe(spent)
  })
})

describe('concurrency', () => {
  it('200 concurrent requests against a budget for exactly 37: 37 admitted, 37 reach Mistral', async () => {
    // Each embedding is billed its body's byte length, which is exactly its input bound: cost = reservation.
    stack.fake.options = { promptTokensFromBody: true }
    const client = mistral()
    await client.embeddings.create({ model: 'mistral-embed-test', inputs: ['flood'] })
    const cost = (await daily()).spent
    expect(cost).toBeGreaterThan(20)
    stack.fake.received.length = 0

    const admitted = 37
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: cost + admitted * cost } })
    const { ok, refused } = await flood(200, () => client.embeddings.create({ model: 'mistral-embed-test', inputs: ['flood'] }))
    expect(ok).toHaveLength(admitted)
    expect(refused).toHaveLength(200 - admitted)
    for (const reason of refused) expect((reason as MistralError).statusCode).toBe(429)
    expect(stack.fake.received).toHaveLength(admitted)
    expect(await daily()).toEqual({ spent: cost * (admitted + 1), held: 0 })
  })
})
