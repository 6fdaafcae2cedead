import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { chargedMicros, daily, expectCountedInput, settleCalls, summaries, type Totals } from '../support/fault-checks.js'
import { billed } from '../support/fault-upstream.js'
import { eventually } from '../support/proxy.js'
import { useFaultStack } from '../support/fault-stack.js'

// Redis faults on a persistent Redis (appendonly, fsync always): SIGKILL + restart between requests and
// in the middle of a stream, and a Redis frozen for longer than the command timeout mid-stream.
const SLICE_TOKENS = 16
const SETTLE_FAILED = 'settlement failed; the hold stays booked until its windows end'

const stack = useFaultStack({
  name: 'redis-faults',
  redis: { appendonly: true },
  env: { LOOPERS_REDIS_TIMEOUT_MS: '300', LOOPERS_STREAM_SLICE_TOKENS: String(SLICE_TOKENS) },
})

function sdk(): OpenAI {
  return new OpenAI({ apiKey: stack.key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
}

const ask = (): Promise<unknown> => sdk().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })

const totals = (): Promise<Totals> => daily(stack.proxy.admin, stack.hash)

async function health(): Promise<number> {
  return (await fetch(`${stack.proxy.url}/health`)).status
}

/**
 * Waits until the proxy serves again after a restart, and the test's own admin client has reconnected too (it
 * queues nothing while disconnected, so a read before its reconnect fails whatever the proxy does).
 */
async function storeBack(): Promise<void> {
  await eventually(async () => (await health()) === 200 && (await totals().then(() => true, () => false)), 'store back', 10_000)
}

/** Streams a long answer, calls `fault` once three deltas have arrived, and returns what the client got. */
async function streamThrough(fault: () => Promise<void> | void): Promise<{ error: unknown; deltas: number }> {
  stack.upstream.plan = { chunks: 400, chunkDelayMs: 10 }
  let deltas = 0
  const error = await (async () => {
    const stream = await sdk().chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true })
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas++
      if (deltas === 3) await fault()
    }
  })().catch((e: unknown) => e)
  return { error, deltas }
}

describe('Redis killed (SIGKILL) and restarted', () => {
  it('loses no settled spend, refuses with 503 without calling the provider while gone, then serves', async () => {
    await ask()
    await ask()
    // Spend is what the upstream billed (its ledger), at the test prices.
    expect(await totals()).toEqual({ spent: billed(stack.upstream.exchanges), held: 0 })
    const settled = billed(stack.upstream.exchanges)

    await stack.redis.kill()
    try {
      const refused = await ask().catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(OpenAI.InternalServerError)
      expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(503)
      expect((refused as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_unavailable')
      expect(await health()).toBe(503)
      expect(stack.upstream.exchanges).toHaveLength(2)
    } finally {
      await stack.redis.restart()
    }
    await storeBack()
    // The key, its limit and its spend came back from the append-only file.
    expect(await totals()).toEqual({ spent: settled, held: 0 })
    expect((await stack.proxy.admin.getKey(stack.hash))?.limits.daily).toBe(1_000_000)
    await ask()
    expect(await totals()).toEqual({ spent: billed(stack.upstream.exchanges), held: 0 })
    expect(stack.upstream.exchanges).toHaveLength(3)
  })

  it('mid-stream: the stream is cut with budget_unavailable, the lost settlement leaves the hold booked (conservative)', async () => {
    const before = await totals()
    const { error, deltas } = await streamThrough(() => stack.redis.kill())
    try {
      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_unavailable')
      await eventually(() => stack.upstream.last().clientAborted, 'upstream closed')
      expect(stack.upstream.last().outputTokensWritten).toBeLessThan(400)
      await eventually(() => stack.proxy.logText().includes(SETTLE_FAILED), 'the failed settlement is logged')
    } finally {
      await stack.redis.restart()
    }
    await storeBack()
    const inputBound = Number(summaries(stack.proxy, stack.hash).at(-1)!.inputBound)
    const after = await totals()
    // Nothing was handed back: the hold covers every byte the client received, plus at most the slice
    // reserved ahead; nothing was charged either (the settlement never reached Redis).
    expect(after.spent).toBe(before.spent)
    expect(after.held).toBeGreaterThanOrEqual(inputBound + deltas)
    expect(after.held).toBeLessThanOrEqual(inputBound + deltas + 2 * SLICE_TOKENS)
    // The hold covers all the upstream billed for the stream (its ledger).
    expect(after.spent + after.held).toBeGreaterThanOrEqual(before.spent + billed([stack.upstream.last()]))

    // The proxy serves again, settled at what the upstream billed; the orphaned hold stays until its windows end.
    await ask()
    expect(await totals()).toEqual({ spent: before.spent + billed([stack.upstream.last()]), held: after.held })
  })
})

describe('Redis frozen (SIGSTOP) past the command timeout mid-stream', () => {
  it('cuts the stream with budget_unavailable; the settlement is retried and lands when Redis wakes', async () => {
    const settles = await settleCalls(stack.proxy.server.adminUrl)
    const logged = stack.proxy.logText().split(SETTLE_FAILED).length
    let paused = false
    const { error, deltas } = await streamThrough(() => {
      if (!paused) stack.redis.pause()
      paused = true
    })
    try {
      expect(error).toBeInstanceOf(OpenAI.APIError)
      expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_unavailable')
      await eventually(() => stack.upstream.last().clientAborted, 'upstream closed')
      // The first settlement attempt times out while Redis is still frozen.
      await eventually(async () => (await settleCalls(stack.proxy.server.adminUrl)) - settles >= 1, 'a settle attempt timed out')
    } finally {
      stack.redis.resume()
    }
    // Redis runs what was queued (the extend, a settle) and a retry finds it settled: held returns to 0,
    // the charge is what the proxy counted at the cut, and no failure is logged.
    await eventually(async () => (await totals()).held === 0, 'the settlement lands', 8_000)
    await eventually(() => stack.proxy.inflight() === 0, 'the settle retries end', 8_000)
    expect(stack.proxy.logText().split(SETTLE_FAILED).length).toBe(logged)
    const attempts = (await settleCalls(stack.proxy.server.adminUrl)) - settles
    expect(attempts).toBeGreaterThanOrEqual(2)
    expect(attempts).toBeLessThanOrEqual(4)
    const summary = summaries(stack.proxy, stack.hash).at(-1)!
    expect(summary.outcome).toBe('cutoff')
    const inputBound = Number(summary.inputBound)
    const { spent } = await totals()
    expect(spent).toBe(chargedMicros(summary))
    // No usage before the cut: the input is counted as the upstream billed the prompt (message wrappers
    // bounded from above), not charged at its byte bound.
    const input = expectCountedInput(summary, stack.upstream.last())
    expect(input).toBeLessThan(inputBound)
    // Output counted in o200k tokens: each "tok " delta is one, and the trailing space one more.
    expect(spent).toBeGreaterThan(input + deltas)
    expect(spent).toBeLessThanOrEqual(input + deltas + 4)
    expect(await health()).toBe(200)
    await ask()
    expect(await totals()).toEqual({ spent: spent + billed([stack.upstream.last()]), held: 0 })
  })
})
