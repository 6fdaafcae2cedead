import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { latestSummary, settle, settledDaily } from '../support/e2e.js'
import { startFakeOpenAi } from '../support/fake-openai.js'
import { billedInput, type LedgerEntry } from '../support/fake-server.js'
import { eventually } from '../support/proxy.js'
import { STORE_KINDS, type StoreKind } from '../support/stores.js'
import { SMALL_SLICES, useProviderStack } from '../support/provider-stack.js'

/** The embedded store (the default) and Redis: the same end-to-end behaviour on both. */
describe.each(STORE_KINDS)('%s store', (kind: StoreKind) => {
  // Test prices make one token cost one micro-USD, so micros below are token counts.
  const stack = useProviderStack('openai', () => startFakeOpenAi(), {
    kind,
    env: SMALL_SLICES,
    key: { name: 'budget' },
    preload: true,
  })

  function client(headers: Record<string, string> = {}): OpenAI {
    return new OpenAI({
      apiKey: stack.key,
      baseURL: `${stack.proxy.url}/openai/v1`,
      defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-upstream', ...headers },
      maxRetries: 0,
    })
  }

  /** The daily window once every request so far has settled. */
  const daily = () => settledDaily(stack.proxy, stack.hash)

  /** The proxy's summary line for the last request of this key. */
  async function lastSummary(): Promise<Record<string, unknown>> {
    await settle(stack.proxy)
    return latestSummary(stack.proxy, stack.hash)
  }

  describe('streams metered chunk by chunk', () => {
    it('extends a stream slice by slice when the budget allows, and settles the reported usage', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 100_000 } })
      stack.fake.options = { chunks: 40 }
      const stream = await client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true })
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
      expect(text).toBe(' tok'.repeat(40))
      await eventually(async () => (await daily()).held === 0, 'settlement')
      expect((await daily()).spent).toBe(billedInput(stack.fake) + 40)
    })

    it('cuts a stream at the budget with an error event the SDK raises, and closes the upstream', async () => {
      stack.fake.options = { chunks: 200, chunkDelayMs: 2 }
      // Measure this request's input bound with an ample budget first, then leave room for 20 chunks.
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      const body = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'go' }], stream: true as const, max_tokens: 900 }
      stack.fake.options = { chunks: 1 }
      for await (const _ of await client().chat.completions.create(body)) void _
      await eventually(async () => (await daily()).held === 0, 'settlement')
      const inputBound = Number((await lastSummary()).inputBound)
      expect(inputBound).toBeGreaterThan(0)
      const prompt = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens

      const before = (await daily()).spent
      // Room for the prompt as the provider bills it and 20 " tok" deltas (one o200k token each; more than the
      // 16-token first slice). The proxy holds the prompt's byte bound until an extension is refused, then counts
      // the prompt (tiktoken, message wrappers bounded from above) and the bound's surplus carries output.
      const room = prompt + 20
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: before + room } })
      stack.fake.options = { chunks: 200, chunkDelayMs: 1 }
      let text = ''
      const error = await (async () => {
        for await (const chunk of await client().chat.completions.create(body)) text += chunk.choices[0]?.delta.content ?? ''
      })().catch((e: unknown) => e)

      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded')
      // Exactly what the counted prompt leaves of the room, however the events were grouped into network
      // reads: the meter checks them one at a time.
      const delivered = text.length / 4
      expect(text).toBe(' tok'.repeat(delivered))
      expect(delivered).toBeGreaterThanOrEqual(18)
      await eventually(() => stack.fake.ledger[stack.fake.ledger.length - 1]?.clientAborted === true, 'upstream closed')
      expect(stack.fake.ledger[stack.fake.ledger.length - 1]?.finished).toBe(false)
      await eventually(async () => (await daily()).held === 0, 'settlement')
      const summary = await lastSummary()
      expect(summary.outcome).toBe('cutoff')
      // Charged: the input the provider bills (counted at the cut: tiktoken, message wrappers bounded from
      // above) and the output counted, including the event(s) that did not fit.
      const billed = (stack.fake.ledger.at(-1) as LedgerEntry).inputTokens
      expect(Number(summary.inputTokens)).toBeGreaterThanOrEqual(billed)
      expect(Number(summary.inputTokens)).toBeLessThanOrEqual(billed + 2)
      expect(Number(summary.inputTokens)).toBeLessThan(inputBound)
      const counted = Number(summary.outputTokens)
      expect((await daily()).spent - before).toBe(Number(summary.inputTokens) + counted)
      // The 21st event, the one that did not fit, is counted: the provider generated it.
      expect(counted).toBe(delivered + 1)
      expect(delivered).toBe(room - Number(summary.inputTokens))
    })

    it('n > 1: each choice is counted as its own text; a reset stream is charged what the provider generated', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      // Two choices of the realistic answer (code, non-English text) in 5-character deltas, interleaved:
      // counted as one text, one choice's word fragments would glue onto the other's.
      stack.fake.options = { answer: true, chunks: 150, charDeltas: 5, resetAfterChunks: 120 }
      const stream = await client().chat.completions.create({ model: 'gpt-test', n: 2, messages: [{ role: 'user', content: 'go' }], stream: true })
      const indexes = new Set<number>()
      await (async () => {
        for await (const chunk of stream) for (const choice of chunk.choices) indexes.add(choice.index)
      })().catch(() => undefined)
      expect([...indexes].sort()).toEqual([0, 1])
      await eventually(async () => (await daily()).held === 0, 'settlement')
      const entry = stack.fake.ledger.at(-1) as LedgerEntry
      expect(entry.finished).toBe(false)
      const summary = await lastSummary()
      expect(summary.outcome).toBe('upstream_failed')
      // No usage arrived: the proxy's count (tiktoken, per choice) is what is charged, within 2 tokens of the bill.
      const output = Number(summary.outputTokens)
      expect(Math.abs(output - entry.outputTokensWritten), `counted ${output}, billed ${entry.outputTokensWritten}`).toBeLessThanOrEqual(2)
      expect((await daily()).spent).toBe(Number(summary.inputTokens) + output)
    })

    it('a client abort mid-stream aborts the upstream and settles input plus the output so far, once', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      stack.fake.options = { chunks: 500, chunkDelayMs: 5 }
      const controller = new AbortController()
      const stream = await client().chat.completions.create(
        { model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true },
        { signal: controller.signal },
      )
      let received = 0
      await (async () => {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) received++
          if (received === 3) controller.abort()
        }
      })().catch(() => undefined)

      await eventually(() => stack.fake.ledger[0]?.clientAborted === true, 'upstream aborted')
      await eventually(async () => (await daily()).held === 0, 'settlement')
      const written = stack.fake.ledger[0]!.outputTokensWritten
      expect(written).toBeLessThan(500)
      const summary = (await lastSummary())
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

  describe('non-streamed requests', () => {
    it('lowers max tokens to what the budget holds and says so in X-Loopers-Max-Tokens', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 600 } })
      const { response } = await client()
        .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
        .withResponse()
      const lowered = Number(response.headers.get('x-loopers-max-tokens'))
      expect(lowered).toBeGreaterThan(16)
      expect(lowered).toBeLessThan(1000)
      expect(stack.fake.received[0]?.body?.max_completion_tokens).toBe(lowered)
      expect(Number((await lastSummary()).inputTokens) + lowered).toBeLessThanOrEqual(600)
    })

    it('refuses with 429 when not even a useful part fits', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 20 } })
      await expect(client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(
        OpenAI.RateLimitError,
      )
      expect(stack.fake.received).toHaveLength(0)
    })

    it('holds the worst case for models that bill reasoning they do not stream', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      stack.fake.options = { chunks: 2, chunkDelayMs: 100 }
      const stream = await client().chat.completions.create({ model: 'gpt-test-reasoning', messages: [{ role: 'user', content: 'go' }], stream: true })
      const iterator = stream[Symbol.asyncIterator]()
      await iterator.next()
      // While the stream runs it holds input plus the model's full 1,000-token output.
      expect((await stack.proxy.admin.status(stack.hash))!.daily.heldMicros).toBeGreaterThanOrEqual(1000)
      while (!(await iterator.next()).done);
      await eventually(async () => (await daily()).held === 0, 'settlement')
      expect((await daily()).spent).toBe(billedInput(stack.fake) + 2)
    })
  })

  describe('settlement without usage and exact counting', () => {
    it('charges the whole reservation for a 2xx answer that reports no usage', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      stack.fake.options = { omitUsage: true }
      await client().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 40 })
      const summary = (await lastSummary())
      expect(await daily()).toEqual({ spent: Number(summary.inputBound) + 40, held: 0 })
    })

    it('counts exactly with the tokenizer only when the byte bound does not fit, and admits what fits', async () => {
      // 'hello ' × 200 is 1,200 bytes but about 200 tokens: the bound refuses, the exact count admits.
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 400 } })
      const input = 'hello '.repeat(200)
      const result = await client().embeddings.create({ model: 'embed-test', input })
      expect(result.data).toHaveLength(1)
      const summary = (await lastSummary())
      expect(Number(summary.inputBound)).toBeLessThan(Buffer.byteLength(input))
      expect(Number(summary.inputBound)).toBeGreaterThanOrEqual(200)
    })
  })

  describe('sessions', () => {
    it('counts steps and refuses the step past the limit', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      const agent = client({ 'X-Loopers-Session-ID': `run-${Date.now()}`, 'X-Loopers-Session-Max-Steps': '2' })
      await agent.embeddings.create({ model: 'embed-test', input: 'a' })
      await agent.embeddings.create({ model: 'embed-test', input: 'b' })
      const error = await agent.embeddings.create({ model: 'embed-test', input: 'c' }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(OpenAI.RateLimitError)
      expect((error as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('session_steps_exceeded')
      expect(stack.fake.received).toHaveLength(2)
    })

    it('refuses a session past its budget while the key still has budget', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      const agent = client({ 'X-Loopers-Session-ID': `budget-${Date.now()}`, 'X-Loopers-Session-Budget': '0.0003' })
      await agent.embeddings.create({ model: 'embed-test', input: 'a' })
      // About 800 tokens even when counted exactly: past the 300 micro-USD session budget.
      const long = Array.from({ length: 400 }, (_, i) => `w${i}`).join(' ')
      const error = await agent.embeddings.create({ model: 'embed-test', input: long }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(OpenAI.RateLimitError)
      expect((error as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('session_budget_exceeded')
    })

    it('rejects malformed session headers with 400', async () => {
      await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
      const bad = client({ 'X-Loopers-Session-ID': 'has spaces', 'X-Loopers-Session-Budget': '1' })
      await expect(bad.embeddings.create({ model: 'embed-test', input: 'a' })).rejects.toBeInstanceOf(OpenAI.BadRequestError)
      const badBudget = client({ 'X-Loopers-Session-ID': 'ok', 'X-Loopers-Session-Budget': '-1' })
      await expect(badBudget.embeddings.create({ model: 'embed-test', input: 'a' })).rejects.toBeInstanceOf(OpenAI.BadRequestError)
      expect(stack.fake.received).toHaveLength(0)
    })
  })
})
