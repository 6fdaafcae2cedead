import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { sessionKey } from '../../src/budget/redis/redis-keys.js'
import { chargedMicros, daily, expectCountedInput, reservations, settleCalls, summaries } from '../support/fault-checks.js'
import { eventually } from '../support/proxy.js'
import { useFaultStack } from '../support/fault-stack.js'

// The key's standing changes while one of its streams runs: the next extension re-checks it and cuts.
const stack = useFaultStack({ name: 'revocation', env: { LOOPERS_STREAM_SLICE_TOKENS: '16' }, plan: { chunks: 500, chunkDelayMs: 5 } })

describe('the key changes under a running stream', () => {
  // `withinSlice`: the change bites at the next extension, within a 16-token slice. A limit lowered to exactly
  // what is used leaves the stream its own hold (inside the limit): once an extension is refused, the prompt is
  // counted and the bound's surplus may carry output; the stream is cut when that is used too.
  it.each<[string, string, () => Promise<number | null>, boolean]>([
    ['the key is revoked', 'key_revoked', async () => (await stack.proxy.admin.revokeKey(stack.hash), null), true],
    [
      'the daily limit is lowered below what is already used',
      'budget_exceeded',
      async () => {
        const { spent, held } = await daily(stack.proxy.admin, stack.hash)
        await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: spent + held - 1 } })
        return spent + held - 1
      },
      true,
    ],
    [
      'the daily limit is lowered to what is already used',
      'budget_exceeded',
      async () => {
        const { spent, held } = await daily(stack.proxy.admin, stack.hash)
        await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: spent + held } })
        return spent + held
      },
      false,
    ],
    [
      "the key's session budget is lowered below what the session used",
      'session_budget_exceeded',
      async () => {
        // The session exists and holds the stream's reservation.
        expect(Number((await stack.proxy.server.redis!.hget(sessionKey(stack.hash, 'run-1'), 'held')) ?? 0)).toBeGreaterThan(0)
        await stack.proxy.admin.setBudget(stack.hash, { sessionBudgetMicros: 1 })
        return null
      },
      true,
    ],
  ])('%s: the stream is cut with %s, upstream closed, settled once', async (_name, code, change, withinSlice) => {
    const settles = await settleCalls(stack.proxy.server.adminUrl)
    const logged = summaries(stack.proxy, stack.hash).length
    const sdk = new OpenAI({
      apiKey: stack.key,
      baseURL: `${stack.proxy.url}/openai/v1`,
      defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up', 'X-Loopers-Session-ID': 'run-1' },
      maxRetries: 0,
    })
    let deltas = 0
    let limit: number | null = null
    const error = await (async () => {
      const stream = await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true })
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) deltas++
        if (deltas === 3) limit = await change()
      }
    })().catch((e: unknown) => e)

    expect(error).toBeInstanceOf(OpenAI.APIError)
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe(code)
    await eventually(() => stack.upstream.last().clientAborted, 'upstream closed')
    expect(stack.upstream.last().stage).toBe('streaming')
    expect(stack.upstream.last().outputTokensWritten).toBeLessThan(500)
    expect(deltas).toBeGreaterThanOrEqual(3)
    // 16-token slices of one-token deltas: the refusal comes within a slice of the change.
    if (withinSlice) expect(deltas).toBeLessThanOrEqual(3 + 17)

    await eventually(async () => (await daily(stack.proxy.admin, stack.hash)).held === 0, 'settlement')
    // The summary line is written after the settlement lands.
    await eventually(() => summaries(stack.proxy, stack.hash).length > logged, 'summary line')
    const summary = summaries(stack.proxy, stack.hash).at(-1)!
    expect(summary.outcome).toBe('cutoff')
    expect(summary.code).toBe(code)
    const { spent } = await daily(stack.proxy.admin, stack.hash)
    expect(spent).toBe(chargedMicros(summary))
    // Charged: input (counted as the provider bills the prompt: no usage arrived) and every delta relayed,
    // plus what was read but refused (at most a few deltas). Each "tok " delta is one o200k token, the trailing space one more.
    const input = expectCountedInput(summary, stack.upstream.last())
    expect(spent).toBeGreaterThan(input + deltas)
    expect(spent).toBeLessThanOrEqual(input + deltas + 4)
    // The budget holds: a lowered daily limit is passed by no more than the event the provider generated but the
    // meter refused (as above).
    if (limit !== null) expect(spent).toBeLessThanOrEqual(limit + 4)
    expect(await reservations(stack.redis.url, stack.hash)).toEqual([{ state: 'settled', amount: expect.any(Number), charged: spent }])
    expect((await settleCalls(stack.proxy.server.adminUrl)) - settles).toBe(1)
  })
})
