import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WINDOW_NAMES, type KeyAdmin, type WindowName } from '../../src/budget/types.js'
import { createClock } from '../support/budget-fixture.js'
import { startClockedProxy, type ClockedProxy } from '../support/fault-app.js'
import { summaries } from '../support/fault-checks.js'
import { billed, startFaultUpstream, type FaultUpstream } from '../support/fault-upstream.js'
import { eventually } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// A stream that runs across the end of every window at once: Sunday 31 May 2026, 23:59:59 UTC, is the
// last second of a minute, an hour, a day, an ISO week and a month. server.ts takes no clock, so the
// proxy is built from buildApp with a hand-driven one (test/support/fault-app.ts).
const BEFORE = '2026-05-31T23:59:59.500Z'
const AFTER = '2026-06-01T00:00:00.500Z'

let redis: TestRedis
let upstream: FaultUpstream
let proxy: ClockedProxy
const clock = createClock(BEFORE)

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFaultUpstream()
  proxy = await startClockedProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_STREAM_SLICE_TOKENS: '16' }, clock)
})

afterAll(async () => {
  await proxy?.close()
  await upstream?.close()
  await redis?.stop()
})

async function windows(admin: KeyAdmin, hash: string): Promise<Record<WindowName, { spent: number; held: number }>> {
  const status = (await admin.status(hash))!
  return Object.fromEntries(WINDOW_NAMES.map((w) => [w, { spent: status[w].spentMicros, held: status[w].heldMicros }])) as Record<
    WindowName,
    { spent: number; held: number }
  >
}

const every = (totals: { spent: number; held: number }): Record<WindowName, { spent: number; held: number }> =>
  Object.fromEntries(WINDOW_NAMES.map((w) => [w, totals])) as Record<WindowName, { spent: number; held: number }>

describe('a stream that spans the end of every window', () => {
  it('extends and settles in the periods it was reserved in; the new periods show no phantom spend', async () => {
    clock.set(BEFORE)
    const { key, record } = await proxy.admin.createKey('rollover', ['openai'], { unlimited: true })
    const hash = record.hash
    await proxy.admin.setBudget(hash, { limits: { minute: 100_000, hourly: 100_000, daily: 100_000, weekly: 100_000, monthly: 100_000 } })
    const sdk = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    const chunks = 40
    // The upstream waits after the third delta until the clock has moved: the proxy is mid-stream at the rollover
    // however far it meters ahead of the client (on a loaded machine it could otherwise have read the whole stream).
    let resume = (): void => undefined
    const rolledOver = new Promise<void>((resolve) => (resume = resolve))
    upstream.plan = { chunks, chunkDelayMs: 10, pauseAfter: { deltas: 3, until: rolledOver } }

    const stream = await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true })
    let deltas = 0
    let atRollover: Record<WindowName, { spent: number; held: number }> | null = null
    let afterRolloverRequest: Record<WindowName, { spent: number; held: number }> | null = null
    let oldHeldAtRollover = 0
    let late: { old: Record<WindowName, { spent: number; held: number }>; current: Record<WindowName, { spent: number; held: number }> } | null = null
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas++
      if (deltas === 3 && atRollover === null) {
        oldHeldAtRollover = (await windows(proxy.adminAt(BEFORE), hash)).minute.held
        clock.set(AFTER)
        atRollover = await windows(proxy.admin, hash)
        // A request made in the new periods books there, and only there.
        upstream.plan = { chunks, chunkDelayMs: 10 }
        await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'now' }] })
        afterRolloverRequest = await windows(proxy.admin, hash)
        resume()
      }
      if (deltas === 30 && late === null) late = { old: await windows(proxy.adminAt(BEFORE), hash), current: await windows(proxy.admin, hash) }
    }
    resume()
    expect(deltas).toBe(chunks)
    // What the upstream billed (its ledger): the stream, then the request made after the rollover.
    expect(upstream.exchanges).toHaveLength(2)
    const streamed = upstream.exchanges[0]!
    const later = upstream.exchanges[1]!
    expect(atRollover).toEqual(every({ spent: 0, held: 0 }))
    expect(afterRolloverRequest).toEqual(every({ spent: billed([later]), held: 0 }))
    // Extensions after the rollover (16-token slices, one token a delta) grew the hold in the old periods only.
    await eventually(() => summaries(proxy, hash).length === 2, 'summary lines')
    const inputBound = Number(summaries(proxy, hash).find((s) => s.stream === true)?.inputBound)
    expect(oldHeldAtRollover).toBeGreaterThan(0)
    // The hold grew after the rollover, in the old periods. (Judged against the hold at the rollover, not a
    // fixed mark: the proxy meters ahead of what the client has read, by however far the client lags.)
    for (const w of WINDOW_NAMES) expect(late?.old[w].held).toBeGreaterThan(oldHeldAtRollover)
    for (const w of WINDOW_NAMES) expect(late?.old[w].held).toBeGreaterThanOrEqual(inputBound + 30)
    expect(late?.current).toEqual(every({ spent: billed([later]), held: 0 }))

    await eventually(async () => (await windows(proxy.adminAt(BEFORE), hash)).minute.held === 0, 'settlement')
    // Reported usage, what the upstream billed for the stream, charged where the reservation was made.
    expect(await windows(proxy.adminAt(BEFORE), hash)).toEqual(every({ spent: billed([streamed]), held: 0 }))
    expect(await windows(proxy.admin, hash)).toEqual(every({ spent: billed([later]), held: 0 }))
    expect(summaries(proxy, hash).map((s) => s.outcome)).toEqual(['completed', 'completed'])
  })
})
