import {
  AccessDeniedException,
  BedrockRuntimeClient,
  BedrockRuntimeServiceException,
  ConverseCommand,
  ConverseStreamCommand,
  CountTokensCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
  ListAsyncInvokesCommand,
  ThrottlingException,
  ValidationException,
} from '@aws-sdk/client-bedrock-runtime'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { countTextTokens } from '../../src/tokens/tiktoken.js'
import { createTestKey, currentDaily, metered, summaryAt } from '../support/e2e.js'
import { startFakeBedrock } from '../support/fake-bedrock.js'
import { billedInput, type LedgerEntry } from '../support/fake-server.js'
import { billedPrompt } from '../support/billing.js'
import { eventually } from '../support/proxy.js'
import { SMALL_SLICES, useProviderStack } from '../support/provider-stack.js'

// Test prices make one token cost one micro-USD, so micros below are token counts.
const SERVER_AWS = { accessKeyId: 'AKIDSERVERHELD', secret: 'server-held-secret' }
const CLIENT_AWS = { accessKeyId: 'AKIDFROMHEADERS', secret: 'header-secret', sessionToken: 'header-session-token' }
const UPSTREAM_API_KEY = 'ABSKupstreambedrockkey'
const AWS_HEADERS = {
  'x-loopers-aws-access-key': CLIENT_AWS.accessKeyId,
  'x-loopers-aws-secret-key': CLIENT_AWS.secret,
  'x-loopers-aws-session-token': CLIENT_AWS.sessionToken,
  'x-loopers-aws-region': 'eu-central-1',
}
const CLAUDE = 'us.anthropic.claude-test-v1:0'
const NOVA = 'amazon.nova-test-v1:0'

const stack = useProviderStack(
  'bedrock',
  () =>
    startFakeBedrock({
      aws: { [SERVER_AWS.accessKeyId]: { secret: SERVER_AWS.secret }, [CLIENT_AWS.accessKeyId]: { secret: CLIENT_AWS.secret, sessionToken: CLIENT_AWS.sessionToken } },
      apiKeys: [UPSTREAM_API_KEY],
    }),
  {
    env: {
      AWS_ACCESS_KEY_ID: SERVER_AWS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: SERVER_AWS.secret,
      AWS_REGION: 'us-west-2',
      ...SMALL_SLICES,
    },
    key: { name: 'bedrock-e2e', limits: { daily: 1_000_000 } },
    preload: true,
  },
)

beforeEach(() => {
  stack.fake.rejected.length = 0
})

const clients: BedrockRuntimeClient[] = []

interface ClientOptions {
  /** X-Loopers-* headers added to every request (default: the client-side AWS credential). */
  headers?: Record<string, string>
  /** Authenticate as a Bedrock API key (`Authorization: Bearer`) instead of SigV4. */
  token?: string
  accessKeyId?: string
  endpoint?: string
}

/** The official SDK pointed at the proxy, with the lp- key as its access key id (or API key). */
function client(options: ClientOptions = {}): BedrockRuntimeClient {
  const endpoint = options.endpoint ?? `${stack.proxy.url}/bedrock`
  const sdk =
    options.token === undefined
      ? new BedrockRuntimeClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: options.accessKeyId ?? stack.key, secretAccessKey: 'unused' }, maxAttempts: 1 })
      : new BedrockRuntimeClient({ endpoint, region: 'us-east-1', token: { token: options.token }, authSchemePreference: ['httpBearerAuth'], maxAttempts: 1 })
  const headers = options.headers ?? AWS_HEADERS
  sdk.middlewareStack.add(
    (next) => async (args) => {
      Object.assign((args.request as { headers: Record<string, string> }).headers, headers)
      return next(args)
    },
    { step: 'build', name: 'loopersHeaders' },
  )
  clients.push(sdk)
  return sdk
}

const claudeBody = (maxTokens = 100) => JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] })
const converseInput = (modelId = NOVA, maxTokens?: number) => ({
  modelId,
  messages: [{ role: 'user' as const, content: [{ text: 'go' }] }],
  ...(maxTokens === undefined ? {} : { inferenceConfig: { maxTokens } }),
})

const daily = () => currentDaily(stack.proxy, stack.hash)

/** The proxy's summary line of this key's `n`th request, once written (it follows the response). */
const summary = (n: number) => summaryAt(stack.proxy, stack.hash, n)

/** Nothing the upstream received may contain the proxy key or a Loopers control header. */
function expectNoProxyKeyUpstream(): void {
  expect(stack.fake.received.length).toBeGreaterThan(0)
  for (const request of stack.fake.received) {
    expect(JSON.stringify(request.headers)).not.toContain(stack.key)
    expect(request.url).not.toContain('lp-')
    expect(request.raw).not.toContain(stack.key)
    expect(Object.keys(request.headers).filter((h) => h.startsWith('x-loopers-') || h.startsWith('amz-sdk-'))).toEqual([])
  }
}

async function collectConverse(stream: AsyncIterable<{ contentBlockDelta?: { delta?: { text?: string } } }> | undefined): Promise<string> {
  let text = ''
  for await (const event of stream ?? []) text += event.contentBlockDelta?.delta?.text ?? ''
  return text
}

async function collectInvoke(body: AsyncIterable<{ chunk?: { bytes?: Uint8Array } }> | undefined): Promise<string> {
  let text = ''
  for await (const event of body ?? []) {
    if (event.chunk?.bytes === undefined) continue
    const chunk = JSON.parse(Buffer.from(event.chunk.bytes).toString('utf8')) as { type?: string; delta?: { text?: string } }
    if (chunk.type === 'content_block_delta') text += chunk.delta?.text ?? ''
  }
  return text
}

afterEach(() => {
  for (const sdk of clients.splice(0)) sdk.destroy()
})

describe('AWS SDK (SigV4 over h2c) through the proxy', () => {
  it('InvokeModel: signs upstream with the X-Loopers-AWS credential over the exact bytes, settles the reported usage', async () => {
    const response = await client().send(new InvokeModelCommand({ modelId: CLAUDE, body: claudeBody(), contentType: 'application/json', accept: 'application/json' }))
    const answer = JSON.parse(Buffer.from(response.body).toString('utf8')) as { content: Array<{ text: string }> }
    expect(answer.content[0]?.text).toBe('hello again from the fake server now')
    expect(stack.fake.received).toHaveLength(1)
    const request = stack.fake.received[0]!
    expect(request.url).toBe('/model/us.anthropic.claude-test-v1%3A0/invoke')
    expect(request.auth).toMatchObject({ kind: 'sigv4', accessKeyId: CLIENT_AWS.accessKeyId, region: 'eu-central-1' })
    expect(request.headers['x-amz-security-token']).toBe(CLIENT_AWS.sessionToken)
    expect(request.headers['accept-encoding']).toBe('identity')
    expect(request.raw).toBe(claudeBody())
    expectNoProxyKeyUpstream()
    // The prompt as the model's family bills it (the fake's ledger) + 7 output tokens.
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('InvokeModel usage from the x-amzn-bedrock token headers when the body has none (Mistral), and embeddings', async () => {
    await client().send(new InvokeModelCommand({ modelId: 'mistral.mistral-test-v1:0', body: JSON.stringify({ prompt: '<s>[INST] hi [/INST]', max_tokens: 50 }) }))
    const mistralPrompt = billedInput(stack.fake)
    expect(await daily()).toEqual({ spent: mistralPrompt + 7, held: 0 })
    expect(await summary(1)).toMatchObject({ inputTokens: mistralPrompt, outputTokens: 7, outcome: 'completed' })
    const embedded = await client().send(new InvokeModelCommand({ modelId: 'amazon.titan-embed-test-v1', body: JSON.stringify({ inputText: 'hello world' }) }))
    expect(JSON.parse(Buffer.from(embedded.body).toString('utf8'))).toMatchObject({ embedding: [0.5, 0.25, 0.125] })
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('Converse with an ARN model id: the path goes upstream exactly as the SDK encoded it; pricing sees the decoded id', async () => {
    const arn = 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-test-v1:0'
    const response = await client().send(new ConverseCommand(converseInput(arn, 64)))
    expect(response.output?.message?.content?.[0]?.text).toBe('hello again from the fake server now')
    expect(response.usage).toMatchObject({ inputTokens: billedInput(stack.fake), outputTokens: 7 })
    expect(stack.fake.received[0]?.url).toBe(`/model/${encodeURIComponent(arn)}/converse`)
    expect(await summary(1)).toMatchObject({ model: arn, op: 'converse' })
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('without X-Loopers credentials the server-held AWS_* credentials sign, in AWS_REGION', async () => {
    await client({ headers: {} }).send(new ConverseCommand(converseInput(NOVA, 64)))
    expect(stack.fake.received[0]?.auth).toMatchObject({ kind: 'sigv4', accessKeyId: SERVER_AWS.accessKeyId, region: 'us-west-2' })
    expect(stack.fake.received[0]?.headers['x-amz-security-token']).toBeUndefined()
    expectNoProxyKeyUpstream()
  })

  it('a Converse request above 1 MiB (read in shared memory, hashed in slices) is signed over the exact bytes the SDK sent', async () => {
    const big = await createTestKey(stack.proxy, 'bedrock-big', ['bedrock'], { daily: 100_000_000 })
    const text = Array.from({ length: 120_000 }, (_, i) => `word${i}`).join(' ')
    const input = { ...converseInput(NOVA, 64), messages: [{ role: 'user' as const, content: [{ text }] }] }
    const response = await client({ accessKeyId: big.key, headers: {} }).send(new ConverseCommand(input))
    expect(response.output?.message?.role).toBe('assistant')
    expect(stack.fake.rejected).toEqual([])
    expect(stack.fake.received).toHaveLength(1)
    expect(stack.fake.received[0]?.auth).toMatchObject({ kind: 'sigv4', accessKeyId: SERVER_AWS.accessKeyId })
    expect(stack.fake.received[0]!.raw.length).toBeGreaterThan(1024 * 1024)
    expect(JSON.parse(stack.fake.received[0]!.raw)).toMatchObject({ messages: [{ role: 'user', content: [{ text }] }], inferenceConfig: { maxTokens: 64 } })
  })

  it('X-Loopers-Provider-Key is sent upstream as a Bedrock API key', async () => {
    await client({ headers: { 'x-loopers-provider-key': UPSTREAM_API_KEY } }).send(new ConverseCommand(converseInput(NOVA, 64)))
    expect(stack.fake.received[0]?.auth).toEqual({ kind: 'bearer', token: UPSTREAM_API_KEY })
    expect(stack.fake.received[0]?.headers['x-amz-date']).toBeUndefined()
    expectNoProxyKeyUpstream()
  })

  it('the SDK with the lp- key as a Bedrock API key (Bearer) works the same', async () => {
    const response = await client({ token: stack.key, headers: {} }).send(new ConverseCommand(converseInput(NOVA, 64)))
    expect(response.stopReason).toBe('end_turn')
    expect(stack.fake.received[0]?.auth).toMatchObject({ kind: 'sigv4', accessKeyId: SERVER_AWS.accessKeyId })
    expectNoProxyKeyUpstream()
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 7, held: 0 })
  })

  it('path auth: the Bedrock API key the SDK sends becomes the upstream credential', async () => {
    await client({ endpoint: `${stack.proxy.url}/${stack.key}/bedrock`, token: UPSTREAM_API_KEY, headers: {} }).send(new ConverseCommand(converseInput(NOVA, 64)))
    expect(stack.fake.received[0]?.auth).toEqual({ kind: 'bearer', token: UPSTREAM_API_KEY })
    expect(stack.fake.received[0]?.url).toBe(`/model/${encodeURIComponent(NOVA)}/converse`)
    expectNoProxyKeyUpstream()
  })

  it('InvokeModelWithResponseStream: relays every chunk and settles the invocation metrics', async () => {
    stack.fake.options = { chunks: 6 }
    const response = await client().send(new InvokeModelWithResponseStreamCommand({ modelId: CLAUDE, body: claudeBody() }))
    expect(await collectInvoke(response.body)).toBe(' tok'.repeat(6))
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 6, held: 0 })
    expect(stack.fake.received[0]?.url).toBe('/model/us.anthropic.claude-test-v1%3A0/invoke-with-response-stream')
    expectNoProxyKeyUpstream()
  })

  it('ConverseStream: relays every event and settles the metadata usage', async () => {
    stack.fake.options = { chunks: 9 }
    const response = await client().send(new ConverseStreamCommand(converseInput()))
    expect(await collectConverse(response.stream)).toBe(' tok'.repeat(9))
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await daily()).toEqual({ spent: billedInput(stack.fake) + 9, held: 0 })
    expectNoProxyKeyUpstream()
  })

  it('CountTokens passes through free, signed; ListAsyncInvokes (it lists every job of the account) is refused (issue 13)', async () => {
    const list = await client().send(new ListAsyncInvokesCommand({ maxResults: 5 })).catch((e: unknown) => e)
    expect(list).toMatchObject({ code: 'invalid_request', $metadata: { httpStatusCode: 400 } })
    const counted = await client().send(new CountTokensCommand({ modelId: CLAUDE, input: { invokeModel: { body: new TextEncoder().encode(claudeBody()) } } }))
    // The count endpoint answers what the invoke body bills.
    expect(counted.inputTokens).toBe(billedPrompt(JSON.parse(claudeBody()) as Record<string, unknown>, 'claude', CLAUDE))
    expect(counted.inputTokens).toBeGreaterThan(0)
    expect(stack.fake.received.map((r) => [r.method, r.url.split('?')[0], r.auth.kind])).toEqual([
      ['POST', '/model/us.anthropic.claude-test-v1%3A0/count-tokens', 'sigv4'],
    ])
    expect(stack.fake.rejected).toEqual([])
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })
})

describe('errors the SDK raises as typed exceptions', () => {
  it('a refused budget raises ThrottlingException carrying the Loopers code and window', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 5 } })
    const error = await client()
      .send(new ConverseCommand(converseInput(NOVA, 64)))
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ThrottlingException)
    expect(error).toMatchObject({ code: 'budget_exceeded', window: 'daily', limit_usd: 0.000005, $metadata: { httpStatusCode: 429 } })
    expect(metered(stack.fake.received)).toHaveLength(0)
  })

  it('unknown key, foreign key and unpriced model raise UnrecognizedClient, AccessDenied and Validation exceptions', async () => {
    const unknown = await client({ accessKeyId: `lp-${'a'.repeat(43)}` })
      .send(new ConverseCommand(converseInput(NOVA, 64)))
      .catch((e: unknown) => e)
    expect(unknown).toBeInstanceOf(BedrockRuntimeServiceException)
    expect(unknown).toMatchObject({ name: 'UnrecognizedClientException', code: 'invalid_key', $metadata: { httpStatusCode: 401 } })
    const other = await stack.proxy.admin.createKey('openai only', ['openai'], { unlimited: true })
    await expect(client({ accessKeyId: other.key }).send(new ConverseCommand(converseInput(NOVA, 64)))).rejects.toBeInstanceOf(AccessDeniedException)
    const unpriced = await client()
      .send(new ConverseCommand(converseInput('amazon.nova-unknown-v9:0', 64)))
      .catch((e: unknown) => e)
    expect(unpriced).toBeInstanceOf(ValidationException)
    expect(unpriced).toMatchObject({ code: 'model_not_priced' })
    expect(stack.fake.received).toHaveLength(0)
  })

  it('an upstream error passes through unchanged (its own typed exception) and refunds the hold', async () => {
    stack.fake.options = { fail: { status: 400, type: 'ValidationException', message: 'Malformed input request: #: extraneous key [foo] is not permitted' } }
    const error = await client()
      .send(new InvokeModelCommand({ modelId: CLAUDE, body: claudeBody() }))
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ValidationException)
    expect((error as Error).message).toContain('extraneous key')
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })

  it('a wrong upstream secret is caught by the upstream signature check (403) and nothing is charged', async () => {
    const error = await client({ headers: { ...AWS_HEADERS, 'x-loopers-aws-secret-key': 'not-the-secret' } })
      .send(new ConverseCommand(converseInput(NOVA, 64)))
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ name: 'InvalidSignatureException', $metadata: { httpStatusCode: 403 } })
    expect(stack.fake.rejected).toEqual([{ url: `/model/${encodeURIComponent(NOVA)}/converse`, reason: 'InvalidSignatureException' }])
    expect(await daily()).toEqual({ spent: 0, held: 0 })
  })
})

describe('budgets', () => {
  it('a non-streamed request the budget cannot fully hold is sent with a lowered cap, signed over the rewritten body', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
    await client().send(new ConverseCommand(converseInput(NOVA, 900)))
    const inputBound = Number((await summary(1)).inputBound)
    const before = (await daily()).spent
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + inputBound + 300 } })
    stack.fake.received.length = 0
    await client().send(new ConverseCommand(converseInput(NOVA, 900)))
    const lowered = (stack.fake.received[0]?.body?.inferenceConfig as { maxTokens: number }).maxTokens
    expect(lowered).toBeLessThanOrEqual(300)
    expect(lowered).toBeGreaterThan(16)
    expect((await summary(2)).maxTokens).toBe(lowered)
    expect(stack.fake.rejected).toEqual([])
  })

  it('cuts a ConverseStream at the budget with a throttlingException event the SDK raises, and closes the upstream', async () => {
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
    stack.fake.options = { chunks: 1 }
    await collectConverse((await client().send(new ConverseStreamCommand(converseInput(NOVA, 900)))).stream)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const inputBound = Number((await summary(1)).inputBound)
    expect(inputBound).toBeGreaterThan(0)

    const prompt = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens
    const before = (await daily()).spent
    // The prompt as billed, and output for 20 one-token deltas: Nova's output is estimated as o200k × 1.35
    // (bedrock's factor), 20 count 27, 21 count 29. The proxy holds the byte bound until an extension is
    // refused, then counts the prompt at CountTokens and the bound's surplus carries output.
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + prompt + 27 } })
    stack.fake.options = { chunks: 200, chunkDelayMs: 2 }
    let text = ''
    const error = await (async () => {
      const response = await client().send(new ConverseStreamCommand(converseInput(NOVA, 900)))
      for await (const event of response.stream ?? []) text += event.contentBlockDelta?.delta?.text ?? ''
    })().catch((e: unknown) => e)

    expect(error).toBeInstanceOf(ThrottlingException)
    // The SDK keeps only the message of a stream exception; it leads with the Loopers code.
    expect((error as Error).message).toBe('budget_exceeded: the daily budget cannot hold this request')
    expect(text).toBe(' tok'.repeat(20))
    await eventually(() => stack.fake.ledger[stack.fake.ledger.length - 1]?.clientAborted === true, 'upstream closed')
    expect(stack.fake.ledger[stack.fake.ledger.length - 1]?.finished).toBe(false)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const line = await summary(2)
    expect(line.outcome).toBe('cutoff')
    expect(line.code).toBe('budget_exceeded')
    // No usage before the cut: the input is counted at CountTokens, as the provider bills it.
    const billed = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens
    expect(billed).toBeLessThan(inputBound)
    expect(line.inputTokens).toBe(billed)
    expect(Number(line.outputTokens)).toBe(29)
    expect((await daily()).spent - before).toBe(billed + 29)
  })

  it('cuts an InvokeModelWithResponseStream too (input reported early): the SDK raises ThrottlingException', async () => {
    const llama = (): InvokeModelWithResponseStreamCommand =>
      new InvokeModelWithResponseStreamCommand({ modelId: 'meta.llama-test-v1:0', body: JSON.stringify({ prompt: 'go', max_gen_len: 900 }) })
    await collectInvoke((await client().send(llama())).body)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const inputBound = Number((await summary(1)).inputBound)
    const before = (await daily()).spent
    // Room for admission only: the stream runs on its first slice, priced with the input tokens Llama reports.
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + inputBound + 16 } })
    const word = 'twenty-byte-token-- '
    stack.fake.options = { chunks: 400, chunkDelayMs: 2, word }
    let generated = ''
    const error = await (async () => {
      for await (const event of (await client().send(llama())).body ?? []) {
        if (event.chunk?.bytes) generated += (JSON.parse(Buffer.from(event.chunk.bytes).toString('utf8')) as { generation: string }).generation
      }
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ThrottlingException)
    // Output is estimated as o200k × 1.35 (bedrock's factor): the words that fit the room left after the input reported.
    const prompt = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens
    const estimate = (words: number): number => Math.ceil(countTextTokens(word.repeat(words), 'o200k_base') * 1.35)
    let delivered = 0
    while (estimate(delivered + 1) <= inputBound + 16 - prompt) delivered++
    expect(delivered).toBeGreaterThan(0)
    expect(generated).toBe(word.repeat(delivered))
    await eventually(async () => (await daily()).held === 0, 'settlement')
    expect(await summary(2)).toMatchObject({ outcome: 'cutoff', inputTokens: prompt, outputTokens: estimate(delivered + 1) })
    expect((await daily()).spent - before).toBe(prompt + estimate(delivered + 1))
  })

  it('a client abort mid-stream aborts the upstream and settles input plus the output so far, once', async () => {
    stack.fake.options = { chunks: 500, chunkDelayMs: 5 }
    const controller = new AbortController()
    const response = await client().send(new ConverseStreamCommand(converseInput()), { abortSignal: controller.signal })
    let received = 0
    await (async () => {
      for await (const event of response.stream ?? []) {
        if (event.contentBlockDelta?.delta?.text) received++
        if (received === 3) controller.abort()
      }
    })().catch(() => undefined)

    await eventually(() => stack.fake.ledger[0]?.clientAborted === true, 'upstream aborted')
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const written = stack.fake.ledger[0]!.outputTokensWritten
    expect(written).toBeLessThan(500)
    const line = await summary(1)
    expect(line.outcome).toBe('client_closed')
    const output = Number(line.outputTokens)
    // Estimated in tokens (× 1.35): at least the three the client read, at most 1.35 × what the provider generated.
    expect(output).toBeGreaterThanOrEqual(3)
    expect(output).toBeLessThanOrEqual(Math.ceil(1.35 * written))
    const spent = (await daily()).spent
    expect(spent).toBe(Number(line.inputTokens) + output)
    await new Promise((r) => setTimeout(r, 200))
    expect((await daily()).spent).toBe(spent)
  })

  it('a corrupted upstream frame reaches the SDK, which raises on its checksum; the stream settles on what was counted', async () => {
    stack.fake.options = { chunks: 20, corruptAfterChunks: 3 }
    const error = await (async () => {
      const response = await client().send(new ConverseStreamCommand(converseInput()))
      await collectConverse(response.stream)
    })().catch((e: unknown) => e)
    expect(String(error)).toMatch(/checksum/i)
    await eventually(async () => (await daily()).held === 0, 'settlement')
    const line = await summary(1)
    // Input bound plus the three good deltas and every byte from the corrupt frame on.
    expect(Number(line.outputTokens)).toBeGreaterThan(4 * 3)
    expect((await daily()).spent).toBe(Number(line.inputTokens) + Number(line.outputTokens))
  })

  it('a flood of 200 concurrent requests against a budget for exactly 37 admits 37, and the upstream sees 37', async () => {
    await client().send(new ConverseCommand(converseInput(NOVA, 10)))
    const inputBound = Number((await summary(1)).inputBound)
    const before = (await daily()).spent
    const admitted = 37
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + admitted * (inputBound + 10) } })
    stack.fake.received.length = 0
    let release!: () => void
    // The provider counts (and bills) the bound: the budget holds 37 at its count too.
    stack.fake.options = { promptTokens: inputBound, gate: new Promise<void>((resolve) => (release = resolve)) }
    let refused = 0
    const sdk = client()
    const all = Array.from({ length: 200 }, () =>
      sdk.send(new ConverseCommand(converseInput(NOVA, 10))).then(
        () => 'ok',
        (e: unknown) => {
          refused++
          return e instanceof ThrottlingException ? 'throttled' : String(e)
        },
      ),
    )
    await eventually(() => metered(stack.fake.received).length + refused === 200, 'every request admitted or refused', 20_000)
    expect(metered(stack.fake.received)).toHaveLength(admitted)
    release()
    const outcomes = await Promise.all(all)
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(admitted)
    expect(outcomes.filter((o) => o === 'throttled')).toHaveLength(200 - admitted)
    await new Promise((r) => setTimeout(r, 100))
    expect(metered(stack.fake.received)).toHaveLength(admitted)
    // Each bills its input (the bound, as the fake counts it) and the fake's 7 output tokens.
    expect(await daily()).toEqual({ spent: before + admitted * (inputBound + 7), held: 0 })
  })
})
