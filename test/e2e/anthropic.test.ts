import Anthropic from '@anthropic-ai/sdk'
import { afterEach, describe, expect, it } from 'vitest'
import { currentDaily, flood, latestSummary, metered } from '../support/e2e.js'
import { startFakeAnthropic } from '../support/fake-anthropic.js'
import { billedInput } from '../support/fake-server.js'
import { billedPrompt } from '../support/billing.js'
import { eventually } from '../support/proxy.js'
import { SMALL_SLICES, useProviderStack } from '../support/provider-stack.js'

// Test prices make one claude-test token cost one micro-USD, so micros below are token counts.
const UPSTREAM_KEY = 'sk-ant-upstream-test-credential'
const TEXT = 'text_delta'

const stack = useProviderStack('anthropic', () => startFakeAnthropic(), {
  env: SMALL_SLICES,
  key: { name: 'e2e-anthropic', limits: { daily: 1_000_000 } },
  preload: true,
})

function client(options: { apiKey?: string; baseURL?: string; headers?: Record<string, string> } = {}): Anthropic {
  return new Anthropic({
    apiKey: options.apiKey ?? stack.key,
    baseURL: options.baseURL ?? `${stack.proxy.url}/anthropic`,
    defaultHeaders: { 'X-Loopers-Provider-Key': UPSTREAM_KEY, ...options.headers },
    maxRetries: 0,
  })
}

const ask = { model: 'claude-test', max_tokens: 100, messages: [{ role: 'user' as const, content: 'hi' }] }

const daily = () => currentDaily(stack.proxy, stack.hash)

async function settled(): Promise<{ spent: number; held: number }> {
  await eventually(async () => (await daily()).held === 0, 'settlement')
  return daily()
}

/** The proxy's summary line for the last request of this key. */
const lastSummary = () => latestSummary(stack.proxy, stack.hash)

/** Streams a Messages request through the SDK and returns its text and the error it raised, if any. */
async function streamText(sdk: Anthropic, body: Anthropic.MessageCreateParamsStreaming, signal?: AbortSignal): Promise<{ text: string; error: unknown }> {
  let text = ''
  try {
    const stream = await sdk.messages.create(body, signal === undefined ? {} : { signal })
    for await (const event of stream) {
      if (event.type === 'content_block_delta' && event.delta.type === TEXT) text += event.delta.text
    }
    return { text, error: null }
  } catch (error) {
    return { text, error }
  }
}

afterEach(() => {
  // Nothing the upstream received may carry the proxy key or a Loopers control header.
  for (const request of stack.fake.received) {
    expect(JSON.stringify(request.headers)).not.toContain('lp-')
    expect(request.url).not.toContain('lp-')
    expect(request.raw).not.toContain(stack.key)
    expect(Object.keys(request.headers).filter((h) => h.startsWith('x-loopers-'))).toEqual([])
  }
  expect(stack.proxy.logText()).not.toContain(stack.key)
  expect(stack.proxy.logText()).not.toContain(UPSTREAM_KEY)
})

describe('@anthropic-ai/sdk through the proxy', () => {
  it('messages.create: injects the upstream key, forwards anthropic-version and -beta, settles the reported usage', async () => {
    const sdk = client({ headers: { 'anthropic-beta': 'prompt-caching-2024-07-31' } })
    const message = await sdk.messages.create(ask)
    expect(message.content[0]).toMatchObject({ type: 'text', text: 'hello again from the fake server now' })
    expect(stack.fake.received).toHaveLength(1)
    const upstream = stack.fake.received[0]!
    expect(upstream.url).toBe('/v1/messages')
    expect(upstream.headers['x-api-key']).toBe(UPSTREAM_KEY)
    expect(upstream.headers.authorization).toBeUndefined()
    // Forwarded as the SDK sent it (SDK 1.x: 2026-10-21).
    expect(upstream.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/)
    expect(upstream.headers['anthropic-beta']).toBe('prompt-caching-2024-07-31')
    expect(upstream.headers['accept-encoding']).toBe('identity')
    expect(upstream.body).toEqual(ask)
    // The input Claude bills (the fake's ledger) + 7 output tokens.
    expect(await settled()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('stream: relays every event unchanged and settles the reported usage', async () => {
    stack.fake.options = { chunks: 6 }
    const { text, error } = await streamText(client(), { ...ask, stream: true })
    expect(error).toBeNull()
    expect(text).toBe(' tok'.repeat(6))
    expect(stack.fake.received[0]?.body).toEqual({ ...ask, stream: true })
    expect(await settled()).toEqual({ spent: billedInput(stack.fake) + 6, held: 0 })
    expect(lastSummary()).toMatchObject({ outcome: 'completed', inputTokens: billedInput(stack.fake), outputTokens: 6 })
  })

  it('messages.stream(): the helper assembles the final message', async () => {
    stack.fake.options = { chunks: 3 }
    const final = await client().messages.stream(ask).finalMessage()
    expect(final.content[0]).toMatchObject({ type: 'text', text: ' tok tok tok' })
    expect(final.usage).toMatchObject({ input_tokens: billedInput(stack.fake), output_tokens: 3 })
    expect(await settled()).toEqual({ spent: billedInput(stack.fake) + 3, held: 0 })
  })

  it('prices cache reads and cache writes at their own rates, streamed or not', async () => {
    // claude-test-cache: input 1, cache read 0.5, cache write 2, output 1 micro-USD per token.
    stack.fake.options = { inputTokens: 12, cacheReadTokens: 20, cacheWriteTokens: 10, outputTokens: 7, chunks: 5 }
    const body = { ...ask, model: 'claude-test-cache' }
    await client().messages.create(body)
    expect(await settled()).toEqual({ spent: 12 + 10 + 20 + 7, held: 0 })
    await streamText(client(), { ...body, stream: true })
    expect(await settled()).toEqual({ spent: 49 + 12 + 10 + 20 + 5, held: 0 })
  })

  it('count_tokens and the model list pass through free, with the upstream key', async () => {
    const counted = await client().messages.countTokens({ model: 'claude-test', messages: ask.messages })
    // The count endpoint answers what a message with this body bills.
    expect(counted.input_tokens).toBe(billedPrompt({ messages: ask.messages }, 'claude', 'claude-test'))
    expect(counted.input_tokens).toBeGreaterThan(0)
    const models = await client().models.list()
    expect(models.data.map((m) => m.id)).toEqual(['claude-test'])
    expect(stack.fake.received.map((r) => `${r.method} ${r.url.split('?')[0]}`)).toEqual(['POST /v1/messages/count_tokens', 'GET /v1/models'])
    for (const request of stack.fake.received) expect(request.headers['x-api-key']).toBe(UPSTREAM_KEY)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('path auth: the key the SDK sends is the upstream credential, in the header it came in', async () => {
    // SDK 1.x sends its apiKey as a bearer token.
    const sdk = new Anthropic({ apiKey: 'sk-ant-real-from-sdk', baseURL: `${stack.proxy.url}/${stack.key}/anthropic`, maxRetries: 0 })
    await sdk.messages.create(ask)
    expect(stack.fake.received[0]?.url).toBe('/v1/messages')
    expect(stack.fake.received[0]?.headers.authorization).toBe('Bearer sk-ant-real-from-sdk')
    expect(stack.fake.received[0]?.headers['x-api-key']).toBeUndefined()
    // Older SDKs send x-api-key.
    const response = await fetch(`${stack.proxy.url}/${stack.key}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-ant-real-legacy', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify(ask),
    })
    expect(response.status).toBe(200)
    expect(stack.fake.received[1]?.headers['x-api-key']).toBe('sk-ant-real-legacy')
    expect(stack.fake.received[1]?.headers.authorization).toBeUndefined()
    expect(await settled()).toEqual({ spent: billedInput(stack.fake) + 7 + 7, held: 0 })
  })

  it('header auth with the lp- key in x-api-key, as older SDKs send it', async () => {
    const response = await fetch(`${stack.proxy.url}/anthropic/v1/messages?beta=true`, {
      method: 'POST',
      headers: { 'x-api-key': stack.key, 'x-loopers-provider-key': UPSTREAM_KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify(ask),
    })
    expect(response.status).toBe(200)
    expect(stack.fake.received[0]?.url).toBe('/v1/messages?beta=true')
    expect(stack.fake.received[0]?.headers['x-api-key']).toBe(UPSTREAM_KEY)
    expect(stack.fake.received[0]?.headers['anthropic-version']).toBe('2023-06-01')
  })
})

describe('errors in Anthropic shape raise the SDK typed errors', () => {
  it('unknown, malformed, revoked and foreign keys; nothing reaches the upstream', async () => {
    const unknown = await client({ apiKey: `lp-${'a'.repeat(43)}` })
      .messages.create(ask)
      .catch((e: unknown) => e)
    expect(unknown).toBeInstanceOf(Anthropic.AuthenticationError)
    expect(unknown).toMatchObject({ status: 401, type: 'invalid_key', errorCode: 'invalid_key' })
    expect((unknown as InstanceType<typeof Anthropic.APIError>).headers?.get('x-loopers-error-code')).toBe('invalid_key')
    await expect(client({ apiKey: 'sk-ant-not-a-proxy-key' }).messages.create(ask)).rejects.toBeInstanceOf(Anthropic.AuthenticationError)
    await stack.proxy.admin.revokeKey(stack.hash)
    await expect(client().messages.create(ask)).rejects.toMatchObject({ status: 401, type: 'key_revoked' })
    const other = await stack.proxy.admin.createKey('openai only', ['openai'], { unlimited: true })
    const foreign = client({ apiKey: other.key }).messages.create(ask)
    await expect(foreign).rejects.toBeInstanceOf(Anthropic.PermissionDeniedError)
    await expect(client({ apiKey: other.key }).messages.create(ask)).rejects.toMatchObject({ type: 'provider_not_allowed' })
    expect(stack.fake.received).toHaveLength(0)
  })

  it('a request without max_tokens, an unpriced model and an unmetered POST are refused with 400', async () => {
    const noCap = { model: 'claude-test', messages: ask.messages } as unknown as Anthropic.MessageCreateParamsNonStreaming
    await expect(client().messages.create(noCap)).rejects.toMatchObject({ status: 400, type: 'invalid_request' })
    const unpriced = await client()
      .messages.create({ ...ask, model: 'claude-unknown-model' })
      .catch((e: unknown) => e)
    expect(unpriced).toBeInstanceOf(Anthropic.BadRequestError)
    expect(unpriced).toMatchObject({ type: 'model_not_priced', errorCode: 'model_not_priced' })
    // Batches are billed after the request ends: never forwarded unmetered.
    const batch = client().messages.batches.create({ requests: [{ custom_id: 'a', params: ask }] })
    await expect(batch).rejects.toBeInstanceOf(Anthropic.BadRequestError)
    expect(stack.fake.received).toHaveLength(0)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('a refused budget raises RateLimitError with Retry-After and the window details', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 5 } })
    const error = await client()
      .messages.create(ask)
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Anthropic.RateLimitError)
    const rate = error as InstanceType<typeof Anthropic.RateLimitError>
    expect(rate.type).toBe('budget_exceeded')
    expect(rate.errorCode).toBe('budget_exceeded')
    expect(rate.headers.get('x-loopers-error-code')).toBe('budget_exceeded')
    expect(Number(rate.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(rate.error).toMatchObject({ type: 'error', error: { type: 'budget_exceeded', window: 'daily', limit_usd: 0.000005, spent_usd: 0 } })
    expect(rate.details).toMatchObject({ window: 'daily', limit_usd: 0.000005 })
    expect(metered(stack.fake.received)).toHaveLength(0)
  })

  it('upstream errors pass through unchanged and refund the hold', async () => {
    stack.fake.options = { fail: { status: 529, body: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } } }
    const overloaded = await client()
      .messages.create(ask)
      .catch((e: unknown) => e)
    expect(overloaded).toBeInstanceOf(Anthropic.OverloadedError)
    expect(overloaded).toMatchObject({ status: 529, type: 'overloaded_error' })
    stack.fake.options = { fail: { status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'messages: field required' } } } }
    const bad = await client()
      .messages.create(ask)
      .catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError)
    expect(bad).toMatchObject({ type: 'invalid_request_error', apiMessage: 'messages: field required' })
    expect(stack.fake.received).toHaveLength(2)
    expect(await settled()).toEqual({ spent: 0, held: 0 })
  })

  it('an overloaded_error event mid-stream raises APIError and settles what was counted', async () => {
    stack.fake.options = { chunks: 10, overloadAfterChunks: 3 }
    const { text, error } = await streamText(client(), { ...ask, stream: true })
    expect(text).toBe(' tok'.repeat(3))
    expect(error).toBeInstanceOf(Anthropic.APIError)
    expect(error).toMatchObject({ type: 'overloaded_error' })
    const { spent } = await settled()
    const summary = lastSummary()
    expect(spent).toBe(Number(summary.inputTokens) + Number(summary.outputTokens))
    expect(summary.inputTokens).toBe(billedInput(stack.fake))
  })
})

describe('budgets', () => {
  it('cuts a stream at the budget with an error event the SDK raises, and closes the upstream', async () => {
    const body = { ...ask, max_tokens: 900, stream: true as const }
    // Measure this request's input bound first.
    stack.fake.options = { chunks: 1 }
    await streamText(client(), body)
    const before = (await settled()).spent
    const inputBound = Number(lastSummary().inputBound)
    // Body bytes only: no tools, so no tool-use prompt and no "priming" allowance.
    expect(inputBound).toBeLessThan(1024)

    // The fake reports the bound as its input, so the cost before and after message_start agree; the budget
    // holds the text block's 2-token overhead and ten one-token deltas estimated at × 1.35 (14; eleven count 15).
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + inputBound + 2 + 14 } })
    stack.fake.options = { chunks: 200, chunkDelayMs: 2, inputTokens: inputBound }
    const { text, error } = await streamText(client(), body)

    expect(error).toBeInstanceOf(Anthropic.APIError)
    expect(error).toMatchObject({ type: 'budget_exceeded', errorCode: 'budget_exceeded' })
    expect(text).toBe(' tok'.repeat(10))
    await eventually(() => stack.fake.ledger[stack.fake.ledger.length - 1]?.clientAborted === true, 'upstream closed')
    expect(stack.fake.ledger[stack.fake.ledger.length - 1]?.finished).toBe(false)
    const { spent } = await settled()
    const summary = lastSummary()
    expect(summary.outcome).toBe('cutoff')
    expect(summary.code).toBe('budget_exceeded')
    // Charged: the input and the output counted, including the delta that did not fit.
    expect(summary.inputTokens).toBe(inputBound)
    expect(Number(summary.outputTokens)).toBe(2 + 15)
    expect(spent - before).toBe(inputBound + 2 + 15)
  })

  it('a client abort mid-stream aborts the upstream and settles input plus the output so far, once', async () => {
    stack.fake.options = { chunks: 500, chunkDelayMs: 5 }
    const controller = new AbortController()
    let deltas = 0
    const stream = await client().messages.create({ ...ask, max_tokens: 1000, stream: true }, { signal: controller.signal })
    await (async () => {
      for await (const event of stream) {
        if (event.type === 'content_block_delta') deltas++
        if (deltas === 3) controller.abort()
      }
    })().catch(() => undefined)

    await eventually(() => stack.fake.ledger[0]?.clientAborted === true, 'upstream aborted')
    const { spent } = await settled()
    const written = stack.fake.ledger[0]!.outputTokensWritten
    expect(written).toBeLessThan(500)
    const summary = lastSummary()
    expect(summary.outcome).toBe('client_closed')
    // Input as message_start reported it; output estimated from the deltas (o200k × 1.35) plus the block overhead.
    expect(summary.inputTokens).toBe(billedInput(stack.fake))
    const output = Number(summary.outputTokens)
    expect(output).toBeGreaterThanOrEqual(2 + Math.ceil(1.35 * 3))
    expect(output).toBeLessThanOrEqual(2 + Math.ceil(1.35 * written))
    expect(spent).toBe(billedInput(stack.fake) + output)
    await new Promise((r) => setTimeout(r, 200))
    expect((await daily()).spent).toBe(spent)
  })

  it.each([
    ['without thinking, a stream is metered from its deltas', undefined, (held: number, input: number) => held < input + 1000],
    ['with thinking, whose full cost the stream hides, it holds the worst case up front', { type: 'enabled' as const, budget_tokens: 512 }, (held: number, input: number) => held >= input + 1000],
  ])('claude 4 style model: %s', async (_name, thinking, expected) => {
    stack.fake.options = { chunks: 3, chunkDelayMs: 100 }
    const body = { model: 'claude-test-thinking', max_tokens: 1000, messages: [{ role: 'user' as const, content: 'go' }], stream: true as const, ...(thinking ? { thinking } : {}) }
    const stream = await client().messages.create(body)
    const iterator = stream[Symbol.asyncIterator]()
    await iterator.next()
    const held = (await daily()).held
    while (!(await iterator.next()).done);
    await settled()
    expect(expected(held, Number(lastSummary().inputBound))).toBe(true)
  })

  it('lowers max_tokens to what the budget holds and says so in X-Loopers-Max-Tokens', async () => {
    const body = { ...ask, max_tokens: 1000 }
    await client().messages.create(body)
    const before = (await settled()).spent
    const inputBound = Number(lastSummary().inputBound)
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + inputBound + 200 } })
    const { response } = await client().messages.create(body).withResponse()
    expect(response.headers.get('x-loopers-max-tokens')).toBe('200')
    expect(stack.fake.received[1]?.body?.max_tokens).toBe(200)
    expect((await settled()).spent - before).toBe((stack.fake.prompts.at(-1) ?? 0) + 7)
  })

  it('a flood of 200 concurrent requests admits exactly as many as the budget holds', async () => {
    const body = { ...ask, max_tokens: 50 }
    await client().messages.create(body)
    const before = (await settled()).spent
    const inputBound = Number(lastSummary().inputBound)
    // Every request reports exactly what it holds, so settlement refunds nothing and the count is exact.
    const cost = inputBound + 50
    stack.fake.options = { inputTokens: inputBound, outputTokens: 50 }
    stack.fake.received.length = 0
    const admitted = 37
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + admitted * cost } })

    const sdk = client()
    const { ok, refused } = await flood(200, () => sdk.messages.create(body))
    expect(ok).toHaveLength(admitted)
    expect(refused).toHaveLength(200 - admitted)
    for (const reason of refused) expect(reason).toBeInstanceOf(Anthropic.RateLimitError)
    expect(metered(stack.fake.received)).toHaveLength(admitted)
    expect(await settled()).toEqual({ spent: before + admitted * cost, held: 0 })
  })
})
