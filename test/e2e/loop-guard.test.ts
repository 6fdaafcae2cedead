import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { loadLoopFixtures } from '../support/loop-fixtures.js'
import { startProxyProcess, type ProxyProcess } from '../support/proxy-process.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'
import { runCli as cli } from '../support/cli-run.js'

/**
 * The loop guard as an OpenAI-SDK agent meets it, through two proxy processes sharing one store (Redis,
 * or one SQLite file): requests alternate between them, so the loop state must live in the store.
 */

const fixtures = new Map(loadLoopFixtures().map((f) => [f.name, f]))

type ChatBody = OpenAI.Chat.ChatCompletionCreateParamsNonStreaming

describe.each(STORE_KINDS)('%s store: loop guard across two proxy processes', (kind) => {
  let store: TestStore
  let fake: FakeOpenAi
  let proxies: ProxyProcess[] = []

  beforeAll(async () => {
    store = await startTestStore(kind)
    fake = await startFakeOpenAi()
    const env = { ...store.env, LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_OPENAI_API_KEY: 'sk-up' }
    proxies = await Promise.all([startProxyProcess(env), startProxyProcess(env)])
  })
  afterAll(async () => {
    for (const p of proxies) await p.stop()
    await fake?.close()
    await store?.stop()
  })

  async function newKey(...limits: string[]): Promise<string> {
    const created = await cli(store.env, 'keys', 'create', '--name', 'agent', '--provider', 'openai', '--daily', '100', ...limits, '--json')
    expect(created.code, created.stderr).toBe(0)
    return (JSON.parse(created.stdout) as { key: string }).key
  }

  /** The SDK with its default retries: a loop refusal must not be retried (x-should-retry: false). */
  const sdks = (key: string, headers: Record<string, string> = {}): OpenAI[] =>
    proxies.map((p) => new OpenAI({ apiKey: key, baseURL: `${p.url}/openai/v1`, defaultHeaders: headers }))

  it('stops an agent re-issuing the same tool call on its 11th repeat with the typed error; nothing more reaches the upstream', async () => {
    const fixture = fixtures.get('loop-openai-chat-same-tool-call')!
    const clients = sdks(await newKey())
    const before = fake.received.length
    let stoppedAt: number | null = null
    let error: unknown = null
    for (const [i, request] of fixture.requests.entries()) {
      const body = { ...(request.body as object), model: 'gpt-test', max_tokens: 5 } as ChatBody
      try {
        await clients[i % 2]!.chat.completions.create(body)
      } catch (e) {
        stoppedAt = i
        error = e
        break
      }
    }
    expect(stoppedAt).toBe(fixture.tripsAt)
    expect(fake.received.length - before).toBe(fixture.tripsAt)
    expect(error).toBeInstanceOf(OpenAI.RateLimitError)
    const refused = error as InstanceType<typeof OpenAI.RateLimitError>
    expect(refused.code).toBe('loop_detected')
    expect(refused.headers.get('x-should-retry')).toBe('false')
    expect(refused.headers.get('x-loopers-error-code')).toBe('loop_detected')
    expect(refused.message).toMatch(/same step \([0-9a-f]{16}\) was already sent 11 times/)
    // No prompt text in the refusal.
    expect(JSON.stringify(refused.error)).not.toContain('read_file')
  })

  it('a 40-turn healthy agent conversation is never refused', async () => {
    const fixture = fixtures.get('healthy-openai-chat-40-turn-agent')!
    expect(fixture.requests.length).toBeGreaterThanOrEqual(40)
    const clients = sdks(await newKey(), { 'X-Loopers-Session-ID': 'healthy-run' })
    const before = fake.received.length
    for (const [i, request] of fixture.requests.entries()) {
      const body = { ...(request.body as object), model: 'gpt-test', max_tokens: 5 } as ChatBody
      await clients[i % 2]!.chat.completions.create(body)
    }
    expect(fake.received.length - before).toBe(fixture.requests.length)
  })

  it('byte-identical opening requests fired at once without a session are independent work, not a loop', async () => {
    const body: ChatBody = { model: 'gpt-test', max_tokens: 5, messages: [{ role: 'user', content: 'classify this ticket' }] }
    const clients = sdks(await newKey())
    const before = fake.received.length
    // The fake answers once all 40 wait, so they overlap at the proxies however slow this machine is.
    fake.options = { gather: 40 }
    const answers = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => clients[i % 2]!.chat.completions.create(body))).finally(() => {
      fake.options = {}
    })
    expect(answers.filter((a) => a.status === 'fulfilled')).toHaveLength(40)
    expect(fake.received.length - before).toBe(40)
    // The same request repeated within a session is a loop: the default limit (10 repeats) stops the 12th.
    const session = sdks(await newKey(), { 'X-Loopers-Session-ID': 'one-run' })
    for (let i = 0; i < 11; i++) await session[i % 2]!.chat.completions.create(body)
    await expect(session[0]!.chat.completions.create(body)).rejects.toMatchObject({ code: 'loop_detected' })
  })

  it('a client resending the same opening request one after another without a session is stopped at the limit', async () => {
    const body: ChatBody = { model: 'gpt-test', max_tokens: 5, messages: [{ role: 'user', content: 'retry me all night' }] }
    const clients = sdks(await newKey())
    const before = fake.received.length
    for (let i = 0; i < 11; i++) await clients[i % 2]!.chat.completions.create(body)
    await expect(clients[1]!.chat.completions.create(body)).rejects.toMatchObject({ code: 'loop_detected' })
    expect(fake.received.length - before).toBe(11)
  })

  it('X-Loopers-Loop-Limit lowers the limit for a session; --loop-limit 0 turns the guard off', async () => {
    const body: ChatBody = { model: 'gpt-test', max_tokens: 5, messages: [{ role: 'user', content: 'same question' }] }
    const clients = sdks(await newKey(), { 'X-Loopers-Session-ID': 'strict', 'X-Loopers-Loop-Limit': '2' })
    for (let i = 0; i < 3; i++) await clients[i % 2]!.chat.completions.create(body)
    await expect(clients[1]!.chat.completions.create(body)).rejects.toMatchObject({ code: 'loop_detected' })
    const off = sdks(await newKey('--loop-limit', '0'))
    for (let i = 0; i < 15; i++) await off[i % 2]!.chat.completions.create(body)
    void kind
  })
})
