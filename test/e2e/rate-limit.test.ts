import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { createTestKey, flood } from '../support/e2e.js'
import { useOpenAiStack } from '../support/openai-stack.js'
import { STORE_KINDS } from '../support/stores.js'
import { runCli as cli } from '../support/cli-run.js'


describe.each(STORE_KINDS)('%s store: --rpm through the proxy', (kind) => {
  const stack = useOpenAiStack(kind)

  it('admits --rpm requests a minute; the rest get a retryable 429 rate_limited and never reach the upstream', async () => {
    const { key, hash } = await createTestKey(stack.proxy, 'rpm', ['openai'], { daily: 10_000_000 })
    const set = await cli(stack.store.env, 'budget', 'set', hash, '--rpm', '5')
    expect(set.code, set.stderr).toBe(0)
    const sdk = new OpenAI({ apiKey: key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    const before = stack.fake.received.length
    // Near a minute's end the count would start over mid-test: wait for a fresh minute then.
    if (new Date().getUTCSeconds() > 45) await new Promise((r) => setTimeout(r, (61 - new Date().getUTCSeconds()) * 1000))
    const started = Date.now()
    const { ok, refused } = await flood(20, () => sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 }))
    expect(ok).toHaveLength(5)
    expect(stack.fake.received.length - before).toBe(5)
    expect(refused).toHaveLength(15)
    for (const e of refused) {
      expect(e).toBeInstanceOf(OpenAI.RateLimitError)
      const error = e as InstanceType<typeof OpenAI.RateLimitError>
      expect(error.code).toBe('rate_limited')
      expect(error.headers.get('x-loopers-error-code')).toBe('rate_limited')
      expect(error.headers.get('x-should-retry')).toBeNull()
      const retryAfter = Number(error.headers.get('retry-after'))
      const untilNextMinute = 60 - new Date(started).getUTCSeconds()
      expect(retryAfter).toBeGreaterThanOrEqual(1)
      expect(retryAfter).toBeLessThanOrEqual(untilNextMinute + 1)
    }
    const status = await cli(stack.store.env, 'budget', 'status', hash, '--json')
    expect(JSON.parse(status.stdout)).toMatchObject({ rate: { rpm: 5, requests_this_minute: 5 } })
    const human = await cli(stack.store.env, 'budget', 'status', hash)
    expect(human.stdout).toContain('Request rate: 5 of 5 requests this minute')
    const metrics = await fetch(`${stack.proxy.server.adminUrl}/metrics`).then((r) => r.text())
    expect(metrics).toMatch(/loopers_refusals_total\{[^}]*reason="rate_limited"[^}]*\} 15/)
    void kind
  })
})
