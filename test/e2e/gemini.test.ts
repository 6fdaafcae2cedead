import { ApiError, GoogleGenAI } from '@google/genai'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { currentDaily, flood, metered, summaryAt } from '../support/e2e.js'
import { startFakeGemini } from '../support/fake-gemini.js'
import { billedInput, resetFake } from '../support/fake-server.js'
import { billedPrompt } from '../support/billing.js'
import { eventually } from '../support/proxy.js'
import { SMALL_SLICES, useProviderStack } from '../support/provider-stack.js'

// Test prices make one token cost one micro-USD, so micros below are token counts.
const UPSTREAM_KEY = 'AIza-upstream-test-credential'
const GENERATE = '/gemini/v1beta/models/gemini-test:generateContent'
const STREAM = '/gemini/v1beta/models/gemini-test:streamGenerateContent'

const stack = useProviderStack('gemini', () => startFakeGemini(), {
  env: SMALL_SLICES,
  key: { name: 'gemini e2e', limits: { daily: 1_000_000 } },
})

function client(options: { apiKey?: string; baseUrl?: string; headers?: Record<string, string> } = {}): GoogleGenAI {
  return new GoogleGenAI({
    apiKey: options.apiKey ?? stack.key,
    httpOptions: { baseUrl: options.baseUrl ?? `${stack.proxy.url}/gemini`, headers: { 'X-Loopers-Provider-Key': UPSTREAM_KEY, ...options.headers } },
  })
}

/** A raw request the way curl users send it: the key in `?key=` or `x-goog-api-key`. */
async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${stack.proxy.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-loopers-provider-key': UPSTREAM_KEY, ...headers },
    body: JSON.stringify(body),
  })
}

const daily = () => currentDaily(stack.proxy, stack.hash)

/** The summary of this key's `n`th request, once the proxy has written it (after the answer went out). */
const summaryOf = (n: number) => summaryAt(stack.proxy, stack.hash, n)

/** Nothing the upstream received may contain the proxy key or a Loopers control header; the upstream key arrived. */
function expectProxyKeyNeverForwarded(): void {
  expect(stack.fake.received.length).toBeGreaterThan(0)
  for (const request of stack.fake.received) {
    expect(request.headers['x-goog-api-key']).toBe(UPSTREAM_KEY)
    expect(JSON.stringify(request.headers)).not.toContain(stack.key)
    expect(request.url).not.toContain('lp-')
    expect(new URL(request.url, 'http://x').searchParams.has('key')).toBe(false)
    expect(request.raw).not.toContain(stack.key)
    expect(Object.keys(request.headers).filter((h) => h.startsWith('x-loopers-'))).toEqual([])
  }
}

const contents = [{ role: 'user', parts: [{ text: 'go' }] }]

describe('@google/genai through the proxy', () => {
  it('generateContent: forwards with the upstream key, never the proxy key, and settles the reported usage', async () => {
    stack.fake.options = { thoughtsTokens: 5 }
    const response = await client().models.generateContent({ model: 'gemini-test', contents: 'hi', config: { maxOutputTokens: 200 } })
    expect(response.text).toBe('hello again from the fake server now')
    expect(stack.fake.received).toHaveLength(1)
    expect(stack.fake.received[0]?.url).toBe('/v1beta/models/gemini-test:generateContent')
    expect(stack.fake.received[0]?.headers['accept-encoding']).toBe('identity')
    expect(stack.fake.received[0]?.body).toMatchObject({ generationConfig: { maxOutputTokens: 200 } })
    expectProxyKeyNeverForwarded()
    // The prompt Gemini bills (the fake's ledger) + 7 candidates + 5 thinking tokens.
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7 + 5, held: 0 })
  })

  it('generateContentStream: uses alt=sse, relays every chunk, settles the reported usage', async () => {
    stack.fake.options = { chunks: 6 }
    let text = ''
    for await (const chunk of await client().models.generateContentStream({ model: 'gemini-test', contents: 'hi' })) text += chunk.text ?? ''
    expect(text).toBe(' tok'.repeat(6))
    expect(stack.fake.received[0]?.url).toBe('/v1beta/models/gemini-test:streamGenerateContent?alt=sse')
    expectProxyKeyNeverForwarded()
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 6, held: 0 })
  })

  it('a JSON-array stream (no alt) passes through byte for byte, with the ?key= form of the proxy key', async () => {
    stack.fake.options = { chunks: 4 }
    const body = { contents }
    const direct = await (await fetch(`${stack.fake.url}/v1beta/models/gemini-test:streamGenerateContent`, { method: 'POST', body: JSON.stringify(body) })).text()
    resetFake(stack.fake)
    stack.fake.options = { chunks: 4 }
    const response = await post(`${STREAM}?key=${stack.key}`, body)
    expect(response.status).toBe(200)
    const text = await response.text()
    expect(text).toBe(direct)
    const elements = JSON.parse(text) as Array<{ candidates: Array<{ content: { parts: Array<{ text: string }> } }> }>
    expect(elements.map((e) => e.candidates[0]?.content.parts[0]?.text).join('')).toBe(' tok'.repeat(4))
    expect(stack.fake.received[0]?.url).toBe('/v1beta/models/gemini-test:streamGenerateContent')
    expectProxyKeyNeverForwarded()
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 4, held: 0 })
  })

  it('v1 and the ?key= form work for generateContent too; other query parameters are kept', async () => {
    const response = await post(`/gemini/v1/models/gemini-test:generateContent?key=${stack.key}&prettyPrint=false`, { contents })
    expect(response.status).toBe(200)
    expect(stack.fake.received[0]?.url).toBe('/v1/models/gemini-test:generateContent?prettyPrint=false')
    expectProxyKeyNeverForwarded()
    expect((await daily()).spent).toBe(billedInput(stack.fake) + 7)
  })

  it('countTokens and the model list pass through free, with the upstream key', async () => {
    const counted = await client().models.countTokens({ model: 'gemini-test', contents: 'hi' })
    // The count endpoint answers what a generation with these contents bills.
    expect(counted.totalTokens).toBe(billedPrompt(stack.fake.received[0]?.body ?? {}, 'gemini', 'gemini-test'))
    expect(counted.totalTokens).toBeGreaterThan(0)
    const names: string[] = []
    for await (const model of await client().models.list()) names.push(model.name ?? '')
    expect(names).toEqual(['models/gemini-test'])
    expect(stack.fake.received.map((r) => r.method)).toEqual(['POST', 'GET'])
    expectProxyKeyNeverForwarded()
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('embeddings are metered on their input bound (Gemini reports no embedding usage)', async () => {
    const result = await client().models.embedContent({ model: 'gemini-embed-test', contents: ['hello', 'world'] })
    expect(result.embeddings).toHaveLength(2)
    expect(stack.fake.received[0]?.url).toBe('/v1beta/models/gemini-embed-test:batchEmbedContents')
    const bound = Number((await summaryOf(1)).inputBound)
    expect(bound).toBe(Buffer.byteLength(stack.fake.received[0]!.raw))
    expect(await daily()).toEqual({ spent: bound, held: 0 })
  })

  it('path auth: the SDK key becomes the upstream credential', async () => {
    const sdk = new GoogleGenAI({ apiKey: UPSTREAM_KEY, httpOptions: { baseUrl: `${stack.proxy.url}/${stack.key}/gemini` } })
    await sdk.models.generateContent({ model: 'gemini-test', contents: 'hi' })
    expect(stack.fake.received[0]?.url).toBe('/v1beta/models/gemini-test:generateContent')
    expectProxyKeyNeverForwarded()
    expect((await daily()).spent).toBe(billedInput(stack.fake) + 7)
  })

  it('unknown, revoked and foreign keys raise ApiError with Google status and the Loopers code; nothing reaches the upstream', async () => {
    const refused = async (sdk: GoogleGenAI): Promise<ApiError> =>
      (await sdk.models.generateContent({ model: 'gemini-test', contents: 'hi' }).catch((e: unknown) => e)) as ApiError
    const unknown = await refused(client({ apiKey: `lp-${'a'.repeat(43)}` }))
    expect(unknown).toBeInstanceOf(ApiError)
    expect(unknown.status).toBe(401)
    expect(JSON.parse(unknown.message)).toMatchObject({ error: { code: 401, status: 'UNAUTHENTICATED', details: [{ reason: 'invalid_key' }] } })
    expect((await refused(client({ apiKey: 'AIza-not-a-proxy-key' }))).status).toBe(401)
    const other = await stack.proxy.admin.createKey('openai only', ['openai'], { unlimited: true })
    const foreign = await refused(client({ apiKey: other.key }))
    expect(foreign.status).toBe(403)
    expect(foreign.message).toContain('PERMISSION_DENIED')
    await stack.proxy.admin.revokeKey(stack.hash)
    expect((await refused(client())).message).toContain('key_revoked')
    expect(stack.fake.received).toHaveLength(0)
  })

  it('a refused budget is a 429 RESOURCE_EXHAUSTED ApiError with the window details and Retry-After', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 5 } })
    const error = (await client().models.generateContent({ model: 'gemini-test', contents: 'hi' }).catch((e: unknown) => e)) as ApiError
    expect(error).toBeInstanceOf(ApiError)
    expect(error.status).toBe(429)
    const body = JSON.parse(error.message) as { error: { status: string; details: Array<{ reason: string; metadata: Record<string, string> }> } }
    expect(body.error.status).toBe('RESOURCE_EXHAUSTED')
    expect(body.error.details[0]).toMatchObject({ reason: 'budget_exceeded', metadata: { window: 'daily', limit_usd: '0.000005', spent_usd: '0' } })
    const raw = await post(`${GENERATE}?key=${stack.key}`, { contents })
    expect(raw.status).toBe(429)
    expect(raw.headers.get('x-loopers-error-code')).toBe('budget_exceeded')
    expect(Number(raw.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(metered(stack.fake.received)).toHaveLength(0)
  })

  it('an upstream error passes through unchanged and refunds the hold', async () => {
    const upstreamError = JSON.parse(readFileSync(new URL('../fixtures/gemini/error-429.json', import.meta.url), 'utf8')) as unknown
    stack.fake.options = { fail: { status: 429, body: upstreamError } }
    const error = (await client().models.generateContent({ model: 'gemini-test', contents: 'hi' }).catch((e: unknown) => e)) as ApiError
    expect(error).toBeInstanceOf(ApiError)
    expect(error.status).toBe(429)
    expect(JSON.parse(error.message)).toEqual(upstreamError)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it.each([
    ['an unpriced model', '/gemini/v1beta/models/gemini-unknown:generateContent', { contents }, 400, 'model_not_priced'],
    ['a stream format it cannot meter', `${STREAM}?alt=proto`, { contents }, 400, 'invalid_request'],
    ['an unmetered operation', '/gemini/v1beta/models/gemini-test:batchGenerateContent', { batch: {} }, 400, 'invalid_request'],
    ['a string maxOutputTokens', GENERATE, { contents, generationConfig: { maxOutputTokens: '9' } }, 400, 'invalid_request'],
  ])('refuses %s in Google error shape, before any reservation', async (_name, path, body, status, code) => {
    const response = await post(path, body, { 'x-goog-api-key': stack.key })
    expect(response.status).toBe(status)
    expect(response.headers.get('x-loopers-error-code')).toBe(code)
    const error = ((await response.json()) as { error: { code: number; details: Array<{ reason: string }> } }).error
    expect(error.code).toBe(status)
    expect(error.details[0]?.reason).toBe(code)
    expect(stack.fake.received).toHaveLength(0)
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })
})

describe('streams metered chunk by chunk', () => {
  /** The input bound of a request measured with an ample budget; the fake then reports it as the prompt, so costs line up. */
  async function calibrate(send: () => Promise<unknown>): Promise<number> {
    stack.fake.options = { chunks: 1 }
    await send()
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const bound = Number((await summaryOf(1)).inputBound)
    expect(bound).toBeGreaterThan(0)
    return bound
  }

  it('cuts an SSE stream at the budget with an error event the SDK raises, and closes the upstream', async () => {
    const request = { model: 'gemini-test', contents: 'go', config: { maxOutputTokens: 900 } }
    const bound = await calibrate(async () => {
      for await (const _ of await client().models.generateContentStream(request)) void _
    })
    const before = (await daily()).spent
    // Room for the input and 40 one-token chunks.
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + bound + 40 } })
    stack.fake.options = { chunks: 200, chunkDelayMs: 2, promptTokens: bound }
    let text = ''
    const error = await (async () => {
      for await (const chunk of await client().models.generateContentStream(request)) text += chunk.text ?? ''
    })().catch((e: unknown) => e)

    expect(error).toBeInstanceOf(ApiError)
    expect((error as ApiError).status).toBe(429)
    expect((error as ApiError).message).toContain('budget_exceeded')
    expect(text).toBe(' tok'.repeat(40))
    await eventually(() => stack.fake.ledger[stack.fake.ledger.length - 1]?.clientAborted === true, 'upstream closed')
    expect(stack.fake.ledger[stack.fake.ledger.length - 1]?.finished).toBe(false)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const summary = await summaryOf(2)
    expect(summary.outcome).toBe('cutoff')
    // Charged: the reported input and output, including the chunk that did not fit.
    expect(summary.outputTokens).toBe(41)
    expect((await daily()).spent - before).toBe(bound + 41)
  })

  it('cuts a JSON-array stream at the budget and keeps the array well-formed', async () => {
    const body = { contents }
    const bound = await calibrate(async () => (await post(STREAM, body, { 'x-goog-api-key': stack.key })).text())
    const before = (await daily()).spent
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + bound + 30 } })
    stack.fake.options = { chunks: 200, chunkDelayMs: 2, promptTokens: bound }
    const response = await post(STREAM, body, { 'x-goog-api-key': stack.key })
    const elements = JSON.parse(await response.text()) as Array<Record<string, unknown>>
    expect(elements).toHaveLength(31)
    expect(elements[30]).toMatchObject({ error: { code: 429, status: 'RESOURCE_EXHAUSTED', details: [{ reason: 'budget_exceeded' }] } })
    expect(elements.slice(0, 30).every((e) => Array.isArray(e.candidates))).toBe(true)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect((await summaryOf(2)).outcome).toBe('cutoff')
    expect((await daily()).spent - before).toBe(bound + 31)
  })

  it('a cut before the first element still yields a well-formed array', async () => {
    const body = { contents }
    const bound = await calibrate(async () => (await post(STREAM, body, { 'x-goog-api-key': stack.key })).text())
    const before = (await daily()).spent
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + bound + 16 } })
    // The first element alone reports more output than the first slice holds.
    stack.fake.options = { chunks: 3, tokensPerChunk: 50, promptTokens: bound }
    const response = await post(STREAM, body, { 'x-goog-api-key': stack.key })
    const elements = JSON.parse(await response.text()) as Array<Record<string, unknown>>
    expect(elements).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: 429 }) })])
    await eventually(async () => (await daily()).held === 0, 'settlement')
  })

  it('a client abort mid-stream aborts the upstream and settles input plus the output so far, once', async () => {
    stack.fake.options = { chunks: 500, chunkDelayMs: 5 }
    const controller = new AbortController()
    const stream = await client().models.generateContentStream({ model: 'gemini-test', contents: 'go', config: { abortSignal: controller.signal } })
    let received = 0
    await (async () => {
      for await (const chunk of stream) {
        if (chunk.text) received++
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
    expect(output).toBeGreaterThanOrEqual(3)
    expect(output).toBeLessThanOrEqual(written)
    const spent = (await daily()).spent
    expect(spent).toBe(Number(summary.inputTokens) + output)
    expect(Number(summary.inputTokens)).toBe(billedInput(stack.fake))
    await new Promise((r) => setTimeout(r, 200))
    expect((await daily()).spent).toBe(spent)
  })

  it('an upstream reset mid-stream ends the SSE stream with an error the SDK raises', async () => {
    stack.fake.options = { chunks: 50, resetAfterChunks: 5, chunkDelayMs: 5 }
    let text = ''
    const error = await (async () => {
      for await (const chunk of await client().models.generateContentStream({ model: 'gemini-test', contents: 'go' })) text += chunk.text ?? ''
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect((error as ApiError).status).toBe(502)
    expect(text).toBe(' tok'.repeat(5))
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect((await daily()).spent).toBe(billedInput(stack.fake) + 5)
  })

  it('holds the worst case for a model that thinks before it streams, and settles the thinking', async () => {
    stack.fake.options = { chunks: 2, chunkDelayMs: 100, thoughtsTokens: 30 }
    const stream = await client().models.generateContentStream({ model: 'gemini-test-thinking', contents: 'go' })
    const iterator = stream[Symbol.asyncIterator]()
    await iterator.next()
    // While the stream runs it holds input plus the model's full 1,000-token output.
    expect((await daily()).held).toBeGreaterThanOrEqual(1000)
    while (!(await iterator.next()).done);
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect((await daily()).spent).toBe(billedInput(stack.fake) + 2 + 30)
  })
})

describe('concurrency', () => {
  it('admits exactly as many of 200 concurrent requests as the budget holds, and the upstream sees only those', async () => {
    const sdk = client()
    const send = () => sdk.models.generateContent({ model: 'gemini-test', contents: 'flood', config: { maxOutputTokens: 10 } })
    stack.fake.options = { completionTokens: 10 }
    await send()
    const bound = Number((await summaryOf(1)).inputBound)
    const cost = bound + 10
    // The fake reports exactly what was reserved, so settling frees nothing for a later request.
    stack.fake.options = { completionTokens: 10, promptTokens: bound }
    stack.fake.received.length = 0
    const before = (await daily()).spent
    const admitted = 37
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + admitted * cost } })

    const { ok, refused } = await flood(200, send)
    expect(ok).toHaveLength(admitted)
    expect(refused.filter((e) => e instanceof ApiError && e.status === 429)).toHaveLength(200 - admitted)
    expect(metered(stack.fake.received)).toHaveLength(admitted)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect((await daily()).spent - before).toBe(admitted * cost)
  })
})
