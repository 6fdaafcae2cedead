import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { createTestKey, settle } from '../support/e2e.js'
import { useOpenAiStack } from '../support/openai-stack.js'
import { STORE_KINDS } from '../support/stores.js'
import { runCli as cli } from '../support/cli-run.js'

/** `loopers budget history` and `GET /api/keys/{key}/history` after real requests, on both stores (issue 11). */


describe.each(STORE_KINDS)('%s store: spend history', (kind) => {
  const stack = useOpenAiStack(kind, { LOOPERS_OPENAI_API_KEY: 'sk-server-held-0123456789' })

  it('shows today what the requests settled, every earlier day at zero, in the CLI and the API alike', async () => {
    const { key, hash } = await createTestKey(stack.proxy, 'history-agent', ['openai'], { daily: 5_000_000 })
    const client = new OpenAI({ baseURL: `${stack.proxy.url}/openai/v1`, apiKey: key, maxRetries: 0 })
    for (let i = 0; i < 2; i++) {
      await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: `hi ${i}` }], max_tokens: 20 })
    }
    await settle(stack.proxy)
    const status = await stack.proxy.admin.status(hash)
    const settledMicros = status?.daily.spentMicros ?? 0
    expect(settledMicros).toBeGreaterThan(0)

    const r = await cli(stack.store.env, 'budget', 'history', hash.slice(0, 8), '--days', '7', '--json')
    expect(r.code, r.stderr).toBe(0)
    const json = JSON.parse(r.stdout) as { hash: string; days: Array<{ date: string; spent_usd: number }> }
    const today = new Date().toISOString().slice(0, 10)
    expect(json.hash).toBe(hash)
    expect(json.days).toHaveLength(7)
    expect(json.days.at(-1)).toEqual({ date: today, spent_usd: settledMicros / 1e6 })
    expect(json.days.slice(0, 6).every((d) => d.spent_usd === 0)).toBe(true)
    expect(json.days.map((d) => d.date)).toEqual([...json.days.map((d) => d.date)].sort())

    const api = await fetch(`${stack.proxy.server.adminUrl}/api/keys/history-agent/history?days=7`)
    expect(api.status).toBe(200)
    expect(await api.json()).toEqual(json)
    expect((await fetch(`${stack.proxy.server.adminUrl}/api/keys/${hash}/history?days=401`)).status).toBe(400)

    const human = await cli(stack.store.env, 'budget', 'history', 'history-agent')
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout.trimEnd().split('\n')).toHaveLength(2 + 1 + 30 + 2)
    expect(human.stdout).toContain(`Total: $${(settledMicros / 1e6).toFixed(6).replace(/0+$/, '').replace(/\.(\d)$/, '.$10')}`)
    const bad = await cli(stack.store.env, 'budget', 'history', hash, '--days', '0')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/^loopers: --days must be a whole number from 1 to 400/)
  })
})
