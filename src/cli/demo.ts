import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../config.js'
import { startDemoProvider, type DemoProvider } from '../demo/fake-provider.js'
import { createLogger } from '../logger.js'
import { formatUsd } from '../money.js'
import { costMicros } from '../pricing/cost.js'
import { loadPricing } from '../pricing/table.js'
import type { RunningServer } from '../server.js'
import { budgetStatus } from './budget.js'
import { withKeyAdmin } from './store.js'

/**
 * `loopers demo`: the proxy in this process against the built-in fake provider, a key with a tiny budget,
 * and requests until one stream is cut and one request is refused. No real provider, no money, a few seconds.
 */

const MODEL = 'gpt-4o-mini'
const DAILY_LIMIT_MICROS = 500 // $0.0005
const QUESTION = [{ role: 'user', content: 'In one paragraph: what does a budget proxy do?' }]

type Print = (line: string) => void

/** Runs the demo, printing as it goes; resolves once everything it started has stopped. Throws if it could not show both. */
export async function runDemo(print: Print): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'loopers-demo-'))
  let provider: DemoProvider | null = null
  let server: RunningServer | null = null
  try {
    provider = await startDemoProvider()
    // Only what the demo sets: a throw-away embedded store, never the user's REDIS_URL or LOOPERS_DB.
    const config = loadConfig({
      LOOPERS_DB: join(dir, 'loopers.db'),
      HOST: '127.0.0.1',
      PORT: '0',
      LOOPERS_ADMIN_PORT: '0',
      LOOPERS_OPENAI_BASE_URL: provider.url,
      // The provider key stays on the server, as in production: the agent below holds only its lp- key.
      LOOPERS_OPENAI_API_KEY: 'demo-provider-key',
      LOOPERS_STREAM_SLICE_TOKENS: '64',
      LOG_LEVEL: 'silent',
    })
    const price = loadPricing({ filePath: null }).lookup('openai', MODEL)!
    const { startServer } = await import('../server.js')
    server = await startServer(config, createLogger('silent'))
    await waitForHealth(server.url)
    const { key, hash } = await withKeyAdmin(config, async (admin) => {
      const { key, record } = await admin.createKey('demo-agent', ['openai'], { limits: { daily: DAILY_LIMIT_MICROS } })
      return { key, hash: record.hash }
    })

    print('Loopers demo: the proxy and a built-in fake OpenAI on this machine. No real provider, no money.')
    print(`  proxy     ${server.url}, holding the provider key; the agent holds only its proxy key ${key.slice(0, 7)}…`)
    print(`  key       hash ${hash.slice(0, 8)}, daily budget ${formatUsd(DAILY_LIMIT_MICROS)}`)
    print(`  model     ${MODEL} at list price (${formatUsd(price.inputPer1M)} in, ${formatUsd(price.outputPer1M)} out per 1M tokens)`)
    print('')

    const agent = createAgent(server.url, key)
    let step = 0
    let cut = false
    let refused = false
    for (const maxTokens of [150, 150]) {
      const r = await agent.complete(maxTokens)
      const cost = r.usage === undefined ? '' : `, costs ${formatUsd(costMicros(price, r.usage))}`
      print(`${++step}. request  ${r.status}  ${r.summary}${cost}${r.left ?? ''}`)
    }
    // A long answer: admitted with a first slice of output, extended as it streams, cut when the budget is gone.
    const s = await agent.stream()
    cut = s.cut
    print(`${++step}. stream   ${s.status}  ${s.summary}`)
    for (let i = 0; i < 10 && !refused; i++) {
      const r = await agent.complete(150)
      refused = r.status === 429
      print(`${++step}. request  ${r.status}  ${r.summary}`)
    }

    print('')
    print(`$ loopers budget status ${hash.slice(0, 8)}`)
    print(await withKeyAdmin(config, (admin) => budgetStatus(admin, hash, false)))
    print('')
    const billed = costMicros(price, { inputTokens: provider.ledger.inputTokens, outputTokens: provider.ledger.outputTokens })
    print(
      `The fake provider served ${provider.ledger.requests} requests: ${provider.ledger.inputTokens} input and ` +
        `${provider.ledger.outputTokens} output tokens, ${formatUsd(billed)} at list price; ` +
        `the daily limit was ${formatUsd(DAILY_LIMIT_MICROS)}.`,
    )
    if (!cut || !refused) throw new Error(`the demo did not show ${cut ? 'a refusal' : 'a cut-off'}: please report this`)
    print('Next: README.md "Quick start" runs the same with your own provider key held by the proxy.')
  } finally {
    await server?.close(0)
    await provider?.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

interface Outcome {
  status: number
  summary: string
  usage?: { inputTokens: number; outputTokens: number }
  /** What the proxy reported as left (X-Loopers-Budget-Remaining-USD), or ''. */
  left?: string
  cut: boolean
}

/** An agent speaking OpenAI's wire format to the proxy with its lp- key, as an SDK would. */
function createAgent(url: string, key: string) {
  const post = (body: Record<string, unknown>) =>
    fetch(`${url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: QUESTION, ...body }),
    })

  return {
    async complete(maxTokens: number): Promise<Outcome> {
      const res = await post({ max_tokens: maxTokens })
      const json = (await res.json()) as { usage?: { prompt_tokens: number; completion_tokens: number }; error?: { code?: string; message?: string } }
      if (!res.ok) return { status: res.status, summary: refusal(res, json.error), cut: false }
      const usage = { inputTokens: json.usage?.prompt_tokens ?? 0, outputTokens: json.usage?.completion_tokens ?? 0 }
      const summary = `answered: ${usage.inputTokens} input + ${usage.outputTokens} output tokens`
      return { status: res.status, summary, usage, left: remaining(res), cut: false }
    },

    async stream(): Promise<Outcome> {
      const res = await post({ stream: true, max_tokens: 1000 })
      if (!res.ok || res.body === null) {
        const json = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } }
        return { status: res.status, summary: refusal(res, json.error), cut: false }
      }
      let text = ''
      let deltas = 0
      let error: { code?: string; message?: string } | null = null
      const decoder = new TextDecoder()
      for await (const chunk of res.body) {
        text += decoder.decode(chunk as Uint8Array, { stream: true })
        let end: number
        while ((end = text.indexOf('\n\n')) >= 0) {
          const data = text.slice(0, end).replace(/^data: /, '')
          text = text.slice(end + 2)
          if (data === '[DONE]') continue
          const event = JSON.parse(data) as { error?: { code?: string; message?: string }; choices?: Array<{ delta?: { content?: string } }> }
          if (event.error !== undefined) error = event.error
          else if (event.choices?.[0]?.delta?.content !== undefined) deltas += 1
        }
      }
      if (error === null) return { status: res.status, summary: `streamed ${deltas} words to the end`, cut: false }
      return { status: res.status, summary: `CUT OFF after ${deltas} words: ${error.code} (${error.message ?? ''})`, cut: true }
    },
  }
}

/** What the proxy says the tightest limit has left, when it says so. */
function remaining(res: Response): string {
  const usd = res.headers.get('x-loopers-budget-remaining-usd')
  return usd === null ? '' : `, $${usd} left`
}

function refusal(res: Response, error: { code?: string; message?: string } | undefined): string {
  const code = res.headers.get('x-loopers-error-code') ?? error?.code ?? 'error'
  return `REFUSED ${code}: ${error?.message ?? ''} (never reached the provider)`
}

async function waitForHealth(url: string): Promise<void> {
  const deadline = Date.now() + 10_000
  while ((await fetch(`${url}/health`).then((r) => r.status, () => 0)) !== 200) {
    if (Date.now() > deadline) throw new Error('the demo proxy did not become healthy: is the budget store reachable?')
    await new Promise((r) => setTimeout(r, 50))
  }
}
