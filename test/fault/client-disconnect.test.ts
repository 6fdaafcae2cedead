import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { chargedMicros, daily, expectCountedInput, reservations, settleCalls, sleep, summaries } from '../support/fault-checks.js'
import { billed, DELTA_TEXT } from '../support/fault-upstream.js'
import { eventually } from '../support/proxy.js'
import { useFaultStack } from '../support/fault-stack.js'

// Client disconnects at the phases the e2e suite leaves out (mid-stream is covered there): before the
// upstream has answered, and while the upstream is about to send (or has just sent) its usage chunk.
const stack = useFaultStack({ name: 'disconnects' })

function sdk(): OpenAI {
  return new OpenAI({ apiKey: stack.key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
}

/** After the abort: one settle call, one settled reservation, nothing held, and the charge does not move. */
async function expectSettledOnce(settlesBefore: number, expectedMicros: number): Promise<void> {
  await eventually(async () => (await daily(stack.proxy.admin, stack.hash)).held === 0, 'settlement')
  await eventually(() => summaries(stack.proxy, stack.hash).length === 1, 'summary line')
  const summary = summaries(stack.proxy, stack.hash)[0]!
  expect(summary.outcome).toBe('client_closed')
  expect(chargedMicros(summary)).toBe(expectedMicros)
  expect(await daily(stack.proxy.admin, stack.hash)).toEqual({ spent: expectedMicros, held: 0 })
  expect(await reservations(stack.redis.url, stack.hash)).toEqual([{ state: 'settled', amount: expect.any(Number), charged: expectedMicros }])
  await sleep(150)
  expect((await settleCalls(stack.proxy.server.adminUrl)) - settlesBefore).toBe(1)
  expect(await daily(stack.proxy.admin, stack.hash)).toEqual({ spent: expectedMicros, held: 0 })
}

describe('client gone before the upstream answers', () => {
  it.each([
    // A stream has produced nothing yet: the input is charged, as the provider bills the prompt (counted).
    ['streamed', true, (s: Record<string, unknown>) => expectCountedInput(s, stack.upstream.last())],
    // A non-streamed answer may have been fully generated: the whole hold is kept.
    ['non-streamed', false, (s: Record<string, unknown>) => Math.round(Number(s.reservedUsd) * 1_000_000)],
  ])('%s: the proxy closes the upstream request and settles once', async (_name, stream, expected) => {
    stack.upstream.plan = { mode: 'hang' }
    const settles = await settleCalls(stack.proxy.server.adminUrl)
    const controller = new AbortController()
    const request = sdk()
      .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'wait' }], stream }, { signal: controller.signal })
      .catch((e: unknown) => e)
    await eventually(() => stack.upstream.exchanges.length === 1, 'request upstream')
    await sleep(50)
    controller.abort()
    expect(await request).toBeInstanceOf(OpenAI.APIUserAbortError)
    await eventually(() => stack.upstream.last().clientAborted, 'the upstream sees its connection closed')
    await eventually(() => summaries(stack.proxy, stack.hash).length === 1, 'summary line')
    await expectSettledOnce(settles, expected(summaries(stack.proxy, stack.hash)[0]!))
  })
})

describe('client gone at the end of a stream', () => {
  it.each([
    // Before the usage chunk: no usage reported, so the proxy's own counts are charged: the input within the
    // wrappers' margin of the upstream's bill, the output (o200k, as OpenAI bills it) exactly the upstream's.
    ['right before the usage chunk', 'usage' as const, (s: Record<string, unknown>) => expectCountedInput(s, stack.upstream.last()) + stack.upstream.last().outputTokensWritten],
    // After it: the provider's reported usage is charged, which is what the upstream billed.
    ['right after the usage chunk', 'done' as const, () => billed([stack.upstream.last()])],
  ])('%s: upstream aborted, settled once, nothing held', async (_name, stallAt, expected) => {
    const chunks = 6
    stack.upstream.plan = { chunks, stallAt, stallMs: 10_000 }
    const settles = await settleCalls(stack.proxy.server.adminUrl)
    const controller = new AbortController()
    const stream = await sdk().chat.completions.create(
      { model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true },
      { signal: controller.signal },
    )
    let text = ''
    let finished = false
    let usage = false
    const reading = (async () => {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? ''
        if (chunk.choices[0]?.finish_reason === 'stop') finished = true
        if (chunk.usage) usage = true
      }
    })().catch((e: unknown) => e)
    await eventually(() => finished && stack.upstream.last().stage === 'stalled', 'the upstream stalls at the end')
    if (stallAt === 'done') await eventually(() => usage, 'usage chunk relayed')
    controller.abort()
    // The SDK ends an aborted stream's iteration quietly.
    expect(await reading).toBeUndefined()
    expect(text).toBe(DELTA_TEXT.repeat(chunks))
    await eventually(() => stack.upstream.last().clientAborted, 'upstream aborted')
    expect(stack.upstream.last().stage).toBe('stalled')
    await eventually(() => summaries(stack.proxy, stack.hash).length === 1, 'summary line')
    await expectSettledOnce(settles, expected(summaries(stack.proxy, stack.hash)[0]!))
  })
})
