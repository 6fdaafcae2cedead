import { Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import type { BudgetStore, StoreCallObserver } from '../../src/budget/types.js'
import { createMetrics, type RequestRecord } from '../../src/metrics.js'

const record = (over: Partial<RequestRecord>): RequestRecord => ({
  provider: 'openai',
  model: 'gpt-4o',
  outcome: 'completed',
  cutoff: false,
  spendUsd: 0,
  inputTokens: 0,
  outputTokens: 0,
  durationSeconds: 0.01,
  ...over,
})

/** The value of one exported sample line, e.g. `loopers_requests_total{provider="openai",…}`. */
function sample(text: string, line: string): number | undefined {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `))
  return found === undefined ? undefined : Number(found.slice(line.length + 1))
}

describe('request metrics', () => {
  it('exports every increment, summed as prom-client sums them, at every scrape', async () => {
    const metrics = createMetrics({ perKey: true })
    const spends = [0.1, 0.2, 0.000003, 1e-7]
    for (const spendUsd of spends) metrics.recordRequest(record({ spendUsd, inputTokens: 3, outputTokens: 5, key: 'abcd1234' }))
    metrics.recordRequest(record({ outcome: 'refused', refusal: { reason: 'budget_exceeded', window: 'daily' } }))
    const first = await metrics.registry.metrics()
    expect(sample(first, 'loopers_requests_total{provider="openai",model="gpt-4o",outcome="completed",key="abcd1234"}')).toBe(4)
    expect(sample(first, 'loopers_requests_total{provider="openai",model="gpt-4o",outcome="refused",key=""}')).toBe(1)
    expect(sample(first, 'loopers_spend_usd_total{provider="openai",key="abcd1234"}')).toBe(spends.reduce((sum, x) => sum + x))
    expect(sample(first, 'loopers_tokens_total{provider="openai",kind="input"}')).toBe(12)
    expect(sample(first, 'loopers_tokens_total{provider="openai",kind="output"}')).toBe(20)
    expect(sample(first, 'loopers_refusals_total{reason="budget_exceeded",window="daily"}')).toBe(1)
    // A second scrape after more requests: the totals go on from where they were, never counted twice.
    metrics.recordRequest(record({ spendUsd: 0.5, key: 'abcd1234' }))
    const second = await metrics.registry.metrics()
    expect(sample(second, 'loopers_requests_total{provider="openai",model="gpt-4o",outcome="completed",key="abcd1234"}')).toBe(5)
    expect(sample(second, 'loopers_spend_usd_total{provider="openai",key="abcd1234"}')).toBe(spends.reduce((sum, x) => sum + x) + 0.5)
    expect(sample(second, 'loopers_refusals_total{reason="budget_exceeded",window="daily"}')).toBe(1)
  })

  it('counts each request in its own series when the kinds of request alternate', async () => {
    const metrics = createMetrics({ perKey: true })
    const kinds: Array<Partial<RequestRecord>> = [
      { model: 'gpt-4o', outcome: 'completed', key: 'aaaa1111' },
      { model: 'gpt-4o', outcome: 'completed', key: 'bbbb2222' },
      { model: 'gpt-4o-mini', outcome: 'completed', key: 'aaaa1111' },
      { model: 'gpt-4o', outcome: 'refused', key: 'aaaa1111' },
      { provider: 'anthropic', model: 'gpt-4o', outcome: 'completed', key: 'aaaa1111' },
    ]
    for (const kind of [...kinds, ...kinds, kinds[0]!]) metrics.recordRequest(record({ ...kind, spendUsd: 0.5, inputTokens: 1 }))
    const text = await metrics.registry.metrics()
    const requests = (provider: string, model: string, outcome: string, key: string) =>
      sample(text, `loopers_requests_total{provider="${provider}",model="${model}",outcome="${outcome}",key="${key}"}`)
    expect(requests('openai', 'gpt-4o', 'completed', 'aaaa1111')).toBe(3)
    expect(requests('openai', 'gpt-4o', 'completed', 'bbbb2222')).toBe(2)
    expect(requests('openai', 'gpt-4o-mini', 'completed', 'aaaa1111')).toBe(2)
    expect(requests('openai', 'gpt-4o', 'refused', 'aaaa1111')).toBe(2)
    expect(requests('anthropic', 'gpt-4o', 'completed', 'aaaa1111')).toBe(2)
    expect(sample(text, 'loopers_spend_usd_total{provider="openai",key="aaaa1111"}')).toBe(3.5)
    expect(sample(text, 'loopers_spend_usd_total{provider="openai",key="bbbb2222"}')).toBe(1)
    expect(sample(text, 'loopers_spend_usd_total{provider="anthropic",key="aaaa1111"}')).toBe(1)
    expect(sample(text, 'loopers_tokens_total{provider="openai",kind="input"}')).toBe(9)
    expect(sample(text, 'loopers_tokens_total{provider="anthropic",kind="input"}')).toBe(2)
    expect(sample(text, 'loopers_request_duration_seconds_count{provider="openai"}')).toBe(9)
    expect(sample(text, 'loopers_request_duration_seconds_count{provider="anthropic"}')).toBe(2)
  })

  it('refuses a spend that is not a finite amount when it is recorded, not at the next scrape', async () => {
    const metrics = createMetrics({ perKey: false })
    expect(() => metrics.recordRequest(record({ spendUsd: Infinity }))).toThrow(TypeError)
    await expect(metrics.registry.metrics()).resolves.toContain('loopers_requests_total')
  })

  it('exports histograms byte for byte as prom-client histograms fed the same values, at every scrape', async () => {
    const metrics = createMetrics({ perKey: false })
    const { registry: plainRegistry, observe } = plainHistograms()
    const section = (text: string, name: string) => text.split('\n').filter((l) => l.includes(name)).join('\n')
    const names = ['loopers_request_duration_seconds', 'loopers_added_latency_seconds']
    // Before any request: the histogram without labels already has its series, the labelled one none.
    for (const name of names) expect(section(await metrics.registry.metrics(), name)).toBe(section(await plainRegistry.metrics(), name))
    // On bucket bounds, between them, past the last one, zero, and sums that round.
    const values = [0.005, 0.0051, 0.1, 0.2, 0.3, 300, 301, 0, 1e-9, 0.0005, 1, 1.0000001, 7]
    for (const [i, durationSeconds] of values.entries()) {
      const provider = i % 3 === 0 ? 'anthropic' : 'openai'
      metrics.recordRequest(record({ provider, durationSeconds, addedSeconds: durationSeconds }))
      observe.duration.observe({ provider }, durationSeconds)
      observe.added.observe(durationSeconds)
    }
    const first = await metrics.registry.metrics()
    for (const name of names) expect(section(first, name)).toBe(section(await plainRegistry.metrics(), name))
    metrics.recordRequest(record({ provider: 'gemini', durationSeconds: 0.02 }))
    observe.duration.observe({ provider: 'gemini' }, 0.02)
    expect(section(await metrics.registry.metrics(), names[0]!)).toBe(section(await plainRegistry.metrics(), names[0]!))
  })

  it('times every store call, failed ones too, in the store latency histogram', async () => {
    const metrics = createMetrics({ perKey: false })
    const fail = new Error('down')
    // Reserve, extend and settle are timed by the store itself, which tells the observer instrumentStore gives it.
    let observer: StoreCallObserver = () => undefined
    const store = metrics.instrumentStore({
      reserve: async () => ({ ok: false, reason: 'invalid_key' }),
      extend: async () => ({ ok: false, reason: 'not_found' }),
      settle: async () => {
        observer('settle', performance.now(), true)
        throw fail
      },
      abandon: () => { throw fail },
      ping: async () => undefined,
      observeCalls: (next: StoreCallObserver) => {
        observer = next
      },
    } as unknown as BudgetStore)
    await store.ping()
    await store.ping()
    await expect(store.settle({} as never, 0)).rejects.toBe(fail)
    // A store that throws before returning a promise still answers with a rejected one, counted.
    await expect(store.abandon('k', 'r')).rejects.toBe(fail)
    const text = await metrics.registry.metrics()
    expect(sample(text, 'loopers_store_latency_seconds_count{op="ping"}')).toBe(2)
    expect(sample(text, 'loopers_store_latency_seconds_count{op="settle"}')).toBe(1)
    expect(sample(text, 'loopers_store_latency_seconds_count{op="abandon"}')).toBe(1)
    expect(sample(text, 'loopers_store_errors_total{op="settle"}')).toBe(1)
    expect(sample(text, 'loopers_store_errors_total{op="abandon"}')).toBe(1)
  })

  it("counts each store call the store reports under its own op, failures under that op's errors", async () => {
    const metrics = createMetrics({ perKey: false })
    let observer: StoreCallObserver = () => undefined
    metrics.instrumentStore({
      ping: async () => undefined,
      abandon: async () => undefined,
      observeCalls: (next: StoreCallObserver) => {
        observer = next
      },
    } as unknown as BudgetStore)
    const calls: Array<[Parameters<StoreCallObserver>[0], boolean, number]> = [['reserve', false, 3], ['extend', false, 1], ['extend', true, 1], ['settle', false, 4], ['settle', true, 2], ['reserve', true, 1]]
    for (const [op, failed, times] of calls) for (let i = 0; i < times; i++) observer(op, performance.now(), failed)
    const text = await metrics.registry.metrics()
    expect(['reserve', 'extend', 'settle'].map((op) => sample(text, `loopers_store_latency_seconds_count{op="${op}"}`))).toEqual([4, 2, 6])
    expect(['reserve', 'extend', 'settle'].map((op) => sample(text, `loopers_store_errors_total{op="${op}"}`))).toEqual([1, 1, 2])
  })
})

/** prom-client's own histograms with Loopers' names, help and buckets (those of src/metrics.ts). */
function plainHistograms() {
  const registry = new Registry()
  return {
    registry,
    observe: {
      duration: new Histogram({
        name: 'loopers_request_duration_seconds',
        help: 'Whole request duration, streams included',
        labelNames: ['provider'],
        buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
        registers: [registry],
      }),
      added: new Histogram({
        name: 'loopers_added_latency_seconds',
        help: 'Time the proxy spends on a request before calling the upstream',
        buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
        registers: [registry],
      }),
    },
  }
}
