import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import OpenAI, { AzureOpenAI } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectCutAtBudget, expectNoProxyKeyIn, flood, settledDaily, summaryAt } from '../support/e2e.js'
import { startFakeAzure } from '../support/fake-azure.js'
import { billedInput, type LedgerEntry } from '../support/fake-server.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { PATIENT_STORE, SMALL_SLICES, useProviderStack } from '../support/provider-stack.js'

// Test prices make one token cost one micro-USD (deployments my-gpt4o and my-embed), so micros are token counts.
const UPSTREAM_KEY = 'azure-upstream-key-0123456789abcdef'
const SERVER_KEY = 'azure-server-held-key'
const API_VERSION = '2024-10-21'
const FALLBACK_PRICES = fileURLToPath(new URL('../fixtures/azure/fallback-prices.json', import.meta.url))
const CONTENT_FILTER_ERROR = JSON.parse(readFileSync(new URL('../fixtures/azure/content-filter-error.json', import.meta.url), 'utf8')) as unknown
const HI = [{ role: 'user' as const, content: 'hi' }]

const stack = useProviderStack('azure', () => startFakeAzure(), {
  env: { LOOPERS_AZURE_API_KEY: SERVER_KEY, ...PATIENT_STORE, ...SMALL_SLICES },
  key: { name: 'azure-e2e', limits: { daily: 1_000_000 } },
  preload: true,
})

interface ClientOptions {
  deployment?: string | undefined
  apiVersion?: string
  apiKey?: string
  endpoint?: string
  /** The X-Loopers-Provider-Key header; null sends none. */
  providerKey?: string | null
}

function azure(options: ClientOptions = {}): AzureOpenAI {
  const providerKey = options.providerKey === undefined ? UPSTREAM_KEY : options.providerKey
  return new AzureOpenAI({
    endpoint: options.endpoint ?? `${stack.proxy.url}/azure`,
    apiKey: options.apiKey ?? stack.key,
    apiVersion: options.apiVersion ?? API_VERSION,
    deployment: 'deployment' in options ? options.deployment : 'my-gpt4o',
    defaultHeaders: providerKey === null ? {} : { 'X-Loopers-Provider-Key': providerKey },
    maxRetries: 0,
  })
}

/** The daily window once every request so far has settled here and on `also`. */
const daily = (also: TestProxy[] = []) => settledDaily(stack.proxy, stack.hash, also)

/** The summary line of this key's `count`-th request, once the proxy has written it. */
const summaryOf = (count: number) => summaryAt(stack.proxy, stack.hash, count)

const expectNoProxyKeyUpstream = (): void => expectNoProxyKeyIn(stack.fake.received, stack.key)

/** A request written byte for byte (path, Host header) as no SDK would. */
function rawRequest(method: string, path: string, headers: Record<string, string>, body = ''): Promise<{ status: number; text: string }> {
  const target = new URL(stack.proxy.url)
  return new Promise((resolve, reject) => {
    const request = http.request({ host: target.hostname, port: target.port, method, path, headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (c: Buffer) => chunks.push(c))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
    })
    request.on('error', reject)
    request.end(body)
  })
}

describe('AzureOpenAI through the proxy', () => {
  it('chat completion: deployment route, api-version forwarded, api-key injected, proxy key never forwarded', async () => {
    const completion = await azure().chat.completions.create({ model: 'gpt-4o', messages: HI })
    expect(completion.choices[0]?.message.content).toBe('hello again from the fake server now')
    expect(stack.fake.received).toHaveLength(1)
    const upstream = stack.fake.received[0]!
    expect(upstream.url).toBe(`/openai/deployments/my-gpt4o/chat/completions?api-version=${API_VERSION}`)
    expect(upstream.headers['api-key']).toBe(UPSTREAM_KEY)
    expect(upstream.headers.authorization).toBeUndefined()
    expect(upstream.headers['accept-encoding']).toBe('identity')
    expectNoProxyKeyUpstream()
    // The prompt as Azure bills it (the fake's ledger) + 7 completion tokens, priced by the deployment name.
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
    expect((await summaryOf(1)).model).toBe('my-gpt4o')
  })

  it('chat stream: prompt-filter and annotation chunks pass through, include_usage is forced, the usage settles', async () => {
    stack.fake.options = { chunks: 6 }
    const stream = await azure().chat.completions.create({ model: 'gpt-4o', messages: HI, stream: true })
    let text = ''
    let chunks = 0
    let promptFilters = 0
    for await (const chunk of stream) {
      chunks++
      if ('prompt_filter_results' in chunk) promptFilters++
      text += chunk.choices[0]?.delta?.content ?? ''
    }
    expect(text).toBe(' tok'.repeat(6))
    expect(promptFilters).toBe(1)
    // Opening filter chunk, role, 6 tokens, 1 annotation, finish, usage.
    expect(chunks).toBe(11)
    expect(stack.fake.received[0]?.body?.stream_options).toEqual({ include_usage: true })
    expectNoProxyKeyUpstream()
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 6, held: 0 })
  })

  it('an api-version older than 2024-09-01 gets no stream_options and settles the proxy’s own count', async () => {
    stack.fake.options = { chunks: 3 }
    const stream = await azure({ apiVersion: '2024-06-01' }).chat.completions.create({ model: 'gpt-4o', messages: HI, stream: true })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
    expect(text).toBe(' tok'.repeat(3))
    expect(stack.fake.received[0]?.body).not.toHaveProperty('stream_options')
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const summary = await summaryOf(1)
    expect(summary.outcome).toBe('completed')
    // No usage without stream_options: the proxy's own count, o200k tokens, equals what the fake billed.
    expect(summary.outputTokens).toBe(3)
    expect(stack.fake.ledger[0]?.outputTokensWritten).toBe(3)
    // Nor input: the prompt is counted with tiktoken (message wrappers bounded from above), not charged at its byte bound.
    const billed = stack.fake.ledger[0]?.inputTokens ?? 0
    expect(Number(summary.inputTokens)).toBeGreaterThanOrEqual(billed)
    expect(Number(summary.inputTokens)).toBeLessThanOrEqual(billed + 2)
    expect(Number(summary.inputTokens)).toBeLessThan(Number(summary.inputBound))
    expect((await daily()).spent).toBe(Number(summary.inputTokens) + 3)
  })

  it('an old api-version gets its lowered cap as max_tokens', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 600 } })
    const { response } = await azure({ apiVersion: '2024-02-01' }).chat.completions.create({ model: 'gpt-4o', messages: HI }).withResponse()
    const lowered = Number(response.headers.get('x-loopers-max-tokens'))
    expect(lowered).toBeGreaterThan(16)
    expect(stack.fake.received[0]?.body?.max_tokens).toBe(lowered)
    expect(stack.fake.received[0]?.body).not.toHaveProperty('max_completion_tokens')
  })

  it('embeddings are metered on input, by the embedding deployment', async () => {
    const result = await azure({ deployment: 'my-embed' }).embeddings.create({ model: 'text-embedding-3-small', input: 'hello world' })
    expect(result.data[0]?.embedding).toEqual([0.5, 0.25, 0.125])
    expect(stack.fake.received[0]?.url).toBe(`/openai/deployments/my-embed/embeddings?api-version=${API_VERSION}`)
    expect(await daily()).toEqual({ spent: billedInput(stack.fake), held: 0 })
  })

  it('responses go to /openai/responses with the deployment in the body', async () => {
    const response = await azure({ apiVersion: '2025-03-01-preview', deployment: undefined }).responses.create({ model: 'my-gpt4o', input: 'hi' })
    expect(response.output_text).toBe('hello again from the fake server now')
    expect(stack.fake.received[0]?.url).toBe('/openai/responses?api-version=2025-03-01-preview')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('the v1 API: the OpenAI SDK with Bearer auth and the deployment as model', async () => {
    const client = new OpenAI({ apiKey: stack.key, baseURL: `${stack.proxy.url}/azure/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': UPSTREAM_KEY }, maxRetries: 0 })
    const completion = await client.chat.completions.create({ model: 'my-gpt4o', messages: HI })
    expect(completion.choices[0]?.message.content).toBe('hello again from the fake server now')
    expect(stack.fake.received[0]?.url).toBe('/openai/v1/chat/completions')
    expect(stack.fake.received[0]?.headers['api-key']).toBe(UPSTREAM_KEY)
    expect(stack.fake.received[0]?.headers.authorization).toBeUndefined()
    expectNoProxyKeyUpstream()
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('the model list passes through free', async () => {
    const models = await azure().models.list()
    expect(models.data.map((m) => m.id)).toEqual(['gpt-4o-2024-11-20'])
    expect(stack.fake.received[0]?.method).toBe('GET')
    expect(stack.fake.received[0]?.url).toBe(`/openai/models?api-version=${API_VERSION}`)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('path auth: the key AzureOpenAI sends becomes the upstream credential', async () => {
    const client = azure({ endpoint: `${stack.proxy.url}/${stack.key}/azure`, apiKey: 'azure-real-key-from-sdk', providerKey: null })
    await client.chat.completions.create({ model: 'gpt-4o', messages: HI })
    expect(stack.fake.received[0]?.headers['api-key']).toBe('azure-real-key-from-sdk')
    expect(stack.fake.received[0]?.url).toBe(`/openai/deployments/my-gpt4o/chat/completions?api-version=${API_VERSION}`)
    expectNoProxyKeyUpstream()
    expect((await daily()).spent).toBe(billedInput(stack.fake) + 7)
  })

  it('without a client credential the server-held LOOPERS_AZURE_API_KEY is injected', async () => {
    await azure({ providerKey: null }).chat.completions.create({ model: 'gpt-4o', messages: HI })
    expect(stack.fake.received[0]?.headers['api-key']).toBe(SERVER_KEY)
    expectNoProxyKeyUpstream()
  })

  it('a refused budget raises RateLimitError with the window details; nothing reaches Azure', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 5 } })
    const error = await azure({ deployment: 'my-embed' })
      .embeddings.create({ model: 'x', input: 'hello '.repeat(50) })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.RateLimitError)
    const rate = error as InstanceType<typeof OpenAI.RateLimitError>
    expect(rate.code).toBe('budget_exceeded')
    expect(rate.headers.get('x-loopers-error-code')).toBe('budget_exceeded')
    expect(Number(rate.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(rate.error).toMatchObject({ window: 'daily', limit_usd: 0.000005, spent_usd: 0 })
    expect(stack.fake.received).toHaveLength(0)
  })

  it('an unpriced deployment is refused with model_not_priced before any reservation', async () => {
    const error = await azure({ deployment: 'unpriced-deployment' })
      .chat.completions.create({ model: 'gpt-4o', messages: HI })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.BadRequestError)
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('model_not_priced')
    // The message names both fixes, with this deployment's name filled in.
    const message = (error as Error).message
    expect(message).toContain('LOOPERS_AZURE_DEPLOYMENTS=unpriced-deployment=gpt-4o')
    expect(message).toContain('{"azure": {"unpriced-deployment": {"model": "gpt-4o"}}}')
    expect(stack.fake.received).toHaveLength(0)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('LOOPERS_AZURE_DEPLOYMENTS prices a deployment as the OpenAI model it names', async () => {
    // gpt-test: 1 USD per 1M input and output (the test prices), so micros are tokens.
    const other = await startProxy({ ...stack.store.env, LOOPERS_AZURE_ENDPOINT: stack.fake.url, LOOPERS_AZURE_DEPLOYMENTS: 'prod-dep=gpt-test' })
    try {
      await azure({ endpoint: `${other.url}/azure`, deployment: 'prod-dep' }).chat.completions.create({ model: 'gpt-4o', messages: HI })
      expect(stack.fake.received[0]?.url).toBe(`/openai/deployments/prod-dep/chat/completions?api-version=${API_VERSION}`)
      expect(await daily([other])).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
    } finally {
      await other.close()
    }
  })

  it('a pricing file with an azure _fallback prices any deployment', async () => {
    const other = await startProxy({ ...stack.store.env, LOOPERS_AZURE_ENDPOINT: stack.fake.url, LOOPERS_PRICING_PATH: FALLBACK_PRICES })
    try {
      await azure({ endpoint: `${other.url}/azure`, deployment: 'any-deployment' }).chat.completions.create({ model: 'gpt-4o', messages: HI })
      expect(stack.fake.received[0]?.url).toBe(`/openai/deployments/any-deployment/chat/completions?api-version=${API_VERSION}`)
      // _fallback: 5 USD per 1M input, 20 USD per 1M output.
      expect(await daily([other])).toEqual({ spent: billedInput(stack.fake) * 5 + 7 * 20, held: 0 })
    } finally {
      await other.close()
    }
  })

  it('a prompt refused by the content filter is relayed unchanged and bills its input, as Azure does', async () => {
    stack.fake.options = { fail: { status: 400, body: CONTENT_FILTER_ERROR } }
    const error = await azure()
      .chat.completions.create({ model: 'gpt-4o', messages: HI })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(OpenAI.BadRequestError)
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('content_filter')
    const summary = await summaryOf(1)
    expect(summary.outcome).toBe('upstream_error')
    expect(await daily()).toEqual({ spent: Number(summary.inputBound), held: 0 })

    stack.fake.options = { fail: { status: 429, body: { error: { code: '429', message: 'Rate limit is exceeded. Try again in 6 seconds.' } } } }
    const before = (await daily()).spent
    await expect(azure().chat.completions.create({ model: 'gpt-4o', messages: HI })).rejects.toBeInstanceOf(OpenAI.RateLimitError)
    expect(await daily()).toEqual({ spent: before, held: 0 })
  })

  it('without LOOPERS_AZURE_ENDPOINT requests are refused with a clear error and nothing is reserved', async () => {
    const unconfigured = await startProxy({ ...stack.store.env, })
    try {
      const error = await azure({ endpoint: `${unconfigured.url}/azure` })
        .chat.completions.create({ model: 'gpt-4o', messages: HI })
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(OpenAI.BadRequestError)
      const bad = error as InstanceType<typeof OpenAI.BadRequestError>
      expect(bad.code).toBe('invalid_request')
      expect(bad.message).toContain('LOOPERS_AZURE_ENDPOINT')
      await expect(azure({ endpoint: `${unconfigured.url}/azure` }).models.list()).rejects.toBeInstanceOf(OpenAI.BadRequestError)
      expect(stack.fake.received).toHaveLength(0)
      expect(await daily([unconfigured])).toEqual({ spent: 0, held: 0 })
    } finally {
      await unconfigured.close()
    }
  })
})

describe('the upstream origin comes only from LOOPERS_AZURE_ENDPOINT', () => {
  let evil: http.Server
  let evilHost: string
  const evilRequests: string[] = []

  beforeAll(async () => {
    evil = http.createServer((req, res) => {
      evilRequests.push(`${req.method} ${req.url}`)
      res.end('{}')
    })
    const address = await new Promise<AddressInfo>((resolve) => evil.listen(0, '127.0.0.1', () => resolve(evil.address() as AddressInfo)))
    evilHost = `127.0.0.1:${address.port}`
  })

  afterAll(async () => {
    await new Promise<void>((resolve) => evil.close(() => resolve()))
  })

  const chat = JSON.stringify({ messages: HI })
  const headers = (): Record<string, string> => ({ 'api-key': stack.key, 'x-loopers-provider-key': UPSTREAM_KEY, 'content-type': 'application/json' })

  it('a Host header does not choose the upstream', async () => {
    const answer = await rawRequest('POST', `/azure/openai/deployments/my-gpt4o/chat/completions?api-version=${API_VERSION}`, { ...headers(), host: evilHost }, chat)
    expect(answer.status).toBe(200)
    expect(stack.fake.received).toHaveLength(1)
    expect(stack.fake.received[0]?.headers.host).toBe(new URL(stack.fake.url).host)
    expect(evilRequests).toEqual([])
  })

  it.each([
    ['an absolute URL as the request target', 'POST', () => `http://${evilHost}/azure/openai/deployments/my-gpt4o/chat/completions?api-version=1`],
    ['.. segments out of the deployment route', 'POST', () => '/azure/openai/deployments/my-gpt4o/../../../../v1/chat/completions'],
    ['.. segments in a free read', 'GET', () => '/azure/openai/../../models'],
    ['percent-encoded .. segments', 'GET', () => '/azure/openai/%2e%2e/%2E%2E/models'],
    ['userinfo in the deployment', 'POST', () => `/azure/openai/deployments/x@${evilHost}/chat/completions?api-version=1`],
    ['an encoded slash in the deployment', 'POST', () => `/azure/openai/deployments/x%2F..%2F..%2Fevil/chat/completions?api-version=1`],
    ['a backslash path', 'GET', () => '/azure/openai/\\\\evil/models'],
  ])('%s is refused and connects nowhere', async (_name, method, path) => {
    const answer = await rawRequest(method, path(), headers(), method === 'POST' ? chat : '')
    expect(answer.status).toBeGreaterThanOrEqual(400)
    expect(answer.status).toBeLessThan(500)
    expect(stack.fake.received).toHaveLength(0)
    expect(evilRequests).toEqual([])
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('userinfo or a second host in a read is refused: only model reads are forwarded (issue 13)', async () => {
    const answer = await rawRequest('GET', `/azure/openai/@${evilHost}/models`, headers())
    expect(answer.status).toBe(400)
    expect((await rawRequest('GET', `/azure/openai//${evilHost}/models`, headers())).status).toBe(400)
    expect(stack.fake.received).toEqual([])
    expect(evilRequests).toEqual([])
  })

  it('credential query parameters are stripped; api-version is forwarded', async () => {
    const path = `/azure/openai/deployments/my-gpt4o/chat/completions?api-version=${API_VERSION}&api-key=leaked&subscription-key=s&proxy=${stack.key}`
    const answer = await rawRequest('POST', path, headers(), chat)
    expect(answer.status).toBe(200)
    expect(stack.fake.received[0]?.url).toBe(`/openai/deployments/my-gpt4o/chat/completions?api-version=${API_VERSION}`)
    expectNoProxyKeyUpstream()
  })
})

describe('streams metered chunk by chunk', () => {
  it('cuts a stream at the budget with an error the SDK raises, and closes the upstream', async () => {
    const body = { model: 'gpt-4o', messages: [{ role: 'user' as const, content: 'go' }], stream: true as const, max_tokens: 900 }
    // Measure this request's input bound with an ample budget first, then leave room for 20 chunks.
    stack.fake.options = { chunks: 1 }
    for await (const _ of await azure().chat.completions.create(body)) void _
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const inputBound = Number((await summaryOf(1)).inputBound)
    expect(inputBound).toBeGreaterThan(0)
    const prompt = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens

    const before = (await daily()).spent
    // Room for the prompt as the provider bills it and 20 one-token chunks (more than the 16-token first slice):
    // the proxy counts the prompt once an extension is refused, and the bound's surplus carries output.
    const room = prompt + 20
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + room } })
    stack.fake.options = { chunks: 200, chunkDelayMs: 2 }
    let text = ''
    const error = await (async () => {
      for await (const chunk of await azure().chat.completions.create(body)) text += chunk.choices[0]?.delta?.content ?? ''
    })().catch((e: unknown) => e)

    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded')
    await eventually(() => stack.fake.ledger[stack.fake.ledger.length - 1]?.clientAborted === true, 'upstream closed')
    expect(stack.fake.ledger[stack.fake.ledger.length - 1]?.finished).toBe(false)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const summary = await summaryOf(2)
    expect(summary.outcome).toBe('cutoff')
    // Charged the input the provider bills (counted with tiktoken at the cut, message wrappers bounded from above), not the bound.
    const billed = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens
    expect(Number(summary.inputTokens)).toBeGreaterThanOrEqual(billed)
    expect(Number(summary.inputTokens)).toBeLessThanOrEqual(billed + 2)
    // Exactly the chunks the counted prompt leaves of the room.
    const chunks = room - Number(summary.inputTokens)
    expect(chunks).toBeGreaterThanOrEqual(18)
    expectCutAtBudget(text, Number(summary.outputTokens), 1, chunks)
    expect((await daily()).spent - before).toBe(Number(summary.inputTokens) + Number(summary.outputTokens))
  })

  it('a client abort mid-stream aborts the upstream and settles input plus the output so far, once', async () => {
    stack.fake.options = { chunks: 500, chunkDelayMs: 5 }
    const controller = new AbortController()
    const stream = await azure().chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'go' }], stream: true }, { signal: controller.signal })
    let received = 0
    await (async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) received++
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
    // Counted in tokens: at least the three the client read, at most what the provider generated.
    expect(output).toBeGreaterThanOrEqual(3)
    expect(output).toBeLessThanOrEqual(written)
    const spent = (await daily()).spent
    expect(spent).toBe(Number(summary.inputTokens) + output)
    await new Promise((r) => setTimeout(r, 200))
    expect((await daily()).spent).toBe(spent)
  })
})

describe('concurrency', () => {
  it('200 concurrent requests against a budget for exactly 37: 37 admitted, 37 reach Azure', async () => {
    // Each embedding is billed its body's byte length, which is exactly its input bound: cost = reservation.
    stack.fake.options = { promptTokensFromBody: true }
    const client = azure({ deployment: 'my-embed' })
    await client.embeddings.create({ model: 'x', input: 'flood' })
    const cost = (await daily()).spent
    expect(cost).toBeGreaterThan(20)
    stack.fake.received.length = 0

    const admitted = 37
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: cost + admitted * cost } })
    const { ok, refused } = await flood(200, () => client.embeddings.create({ model: 'x', input: 'flood' }))
    expect(ok).toHaveLength(admitted)
    expect(refused).toHaveLength(200 - admitted)
    for (const reason of refused) expect(reason).toBeInstanceOf(OpenAI.RateLimitError)
    expect(stack.fake.received).toHaveLength(admitted)
    expect(await daily()).toEqual({ spent: cost * (admitted + 1), held: 0 })
  })
})
