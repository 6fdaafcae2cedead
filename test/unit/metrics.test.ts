import { describe, expect, it } from 'vitest'
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

  it('refuses a spend that is not a finite amount when it is recorded, not at the next scrape', async () => {
    const metrics = createMetrics({ perKey: false })
    expect(() => metrics.recordRequest(record({ spendUsd: Infinity }))).toThrow(TypeError)
    await expect(metrics.registry.metrics()).resolves.toContain('loopers_requests_total')
  })
})
