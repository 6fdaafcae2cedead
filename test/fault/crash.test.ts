import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { openStore, type OpenedStore } from '../../src/budget/open-store.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import { spawnProxy, type ProxyProcess } from '../support/fault-cli.js'
import { daily } from '../support/fault-checks.js'
import { billedTokens, NON_STREAM_TEXT } from '../support/billing.js'
import { billed, DELTA_TEXT, startFaultUpstream, type FaultUpstream } from '../support/fault-upstream.js'
import { eventually } from '../support/proxy.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

// The proxy process dies (SIGKILL) in the middle of a stream: nothing can settle, so what was held must
// stay held, and everything settled before stays settled; a new process on the same store serves as usual.
describe.each(STORE_KINDS)('%s store', (kind) => {
  let store: TestStore
  let upstream: FaultUpstream
  let opened: OpenedStore
  let admin: KeyAdmin
  const processes: ProxyProcess[] = []

  beforeAll(async () => {
    store = await startTestStore(kind)
    upstream = await startFaultUpstream()
    opened = await openStore(loadConfig(store.env))
    if (!(await opened.ready(5_000))) throw new Error('the store did not become ready')
    admin = opened.keys
  })

  afterAll(async () => {
    for (const p of processes) await p.kill()
    await opened?.close()
    await upstream?.close()
    await store?.stop()
  })

  async function serve(): Promise<ProxyProcess> {
    const p = await spawnProxy({ ...(store.env as { LOOPERS_DB: string }), LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_STREAM_SLICE_TOKENS: '16' })
    processes.push(p)
    return p
  }

  function sdk(p: ProxyProcess, key: string): OpenAI {
    return new OpenAI({ apiKey: key, baseURL: `${p.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
  }

  describe('proxy killed with SIGKILL mid-stream', () => {
    it('leaves the hold booked (conservative), and a new process on the same store serves and settles; nothing settled is lost', async () => {
      const { key, record } = await admin.createKey('crash', ['openai'], { unlimited: true })
      const hash = record.hash
      await admin.setBudget(hash, { limits: { daily: 1_000_000 } })
      const first = await serve()
      // One request settles before the crash: kill -9 must not lose it.
      await sdk(first, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'first' }] })
      // What the upstream billed for it (prompt and answer), in micro-USD at the test prices.
      const ANSWER = billed([upstream.last()])
      await eventually(async () => (await daily(admin, hash)).spent === ANSWER, 'the first settlement')

      upstream.plan = { chunks: 1000, chunkDelayMs: 5 }
      let deltas = 0
      const error = await (async () => {
        const stream = await sdk(first, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true })
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta.content) deltas++
          if (deltas === 20) await first.kill()
        }
      })().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(Error)
      expect(first.child.signalCode).toBe('SIGKILL')
      await eventually(() => upstream.last().clientAborted, 'the upstream sees the connection drop')
      const served = upstream.last().outputTokensWritten
      expect(served).toBeGreaterThanOrEqual(20)
      expect(served).toBeLessThan(1000)

      // Nothing settled, nothing handed back: the reservation is still held, covering at least the input
      // and every delta the client got (billed as OpenAI bills them: tiktoken over the text, ~1 token a delta;
      // the client may count more than 20, read from its buffer after the kill); it covers what the upstream
      // billed (its ledger) too.
      const crashed = await daily(admin, hash)
      expect(crashed.spent).toBe(ANSWER)
      expect(crashed.held).toBeGreaterThanOrEqual(upstream.last().inputTokens + billedTokens(DELTA_TEXT.repeat(deltas), 'openai', 'gpt-test'))
      expect(crashed.held).toBeGreaterThanOrEqual(billed([upstream.last()]))
      expect(await store.reservations(hash)).toContainEqual({ state: 'held', amount: crashed.held, charged: null })

      const second = await serve()
      const answer = await sdk(second, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'again' }] })
      expect(answer.choices[0]?.message.content).toBe(NON_STREAM_TEXT)
      await eventually(async () => (await daily(admin, hash)).spent > ANSWER, 'settlement')
      // Settled at the reported usage, what the upstream billed; the orphaned hold is untouched (it ends with its windows).
      const AGAIN = billed([upstream.last()])
      expect(await daily(admin, hash)).toEqual({ spent: ANSWER + AGAIN, held: crashed.held })
      const records = await store.reservations(hash)
      expect(records).toHaveLength(3)
      // In charge order: the store lists its records in no particular order.
      const byCharge = (x: { charged: number | null }, y: { charged: number | null }): number => (x.charged ?? 0) - (y.charged ?? 0)
      expect(records.filter((r) => r.state === 'settled').sort(byCharge)).toEqual(
        [
          { state: 'settled', amount: expect.any(Number), charged: ANSWER },
          { state: 'settled', amount: expect.any(Number), charged: AGAIN },
        ].sort(byCharge),
      )
    })
  })
})
