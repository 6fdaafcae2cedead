import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { useOpenAiStack } from '../support/openai-stack.js'
import { STORE_KINDS } from '../support/stores.js'
import { runCli as cli } from '../support/cli-run.js'

/** Safe keys as a user meets them: the built CLI makes keys, the OpenAI SDK uses them (`npm test` builds first). */


describe.each(STORE_KINDS)('%s store: safe keys end to end', (kind) => {
  const stack = useOpenAiStack(kind)

  const sdk = (key: string): OpenAI =>
    new OpenAI({ apiKey: key, baseURL: `${stack.proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
  const ask = (key: string) => sdk(key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 })

  it('a key created without limits is refused with budget_not_set until `budget set --unlimited`', async () => {
    const created = await cli(stack.store.env, 'keys', 'create', '--name', 'bare', '--provider', 'openai', '--env')
    expect(created.code, created.stderr).toBe(0)
    const lines = created.stdout.trimEnd().split('\n')
    expect(lines).toHaveLength(2)
    const key = /^LOOPERS_KEY=(lp-[A-Za-z0-9]{43})$/.exec(lines[0] ?? '')?.[1] as string
    const hash = /^LOOPERS_HASH=([0-9a-f]{64})$/.exec(lines[1] ?? '')?.[1] as string
    expect(key).toBeDefined()
    expect(hash).toBeDefined()
    // The usual announcement still reaches a human (stderr), with the hint to set a budget.
    expect(created.stderr).toContain(hash)
    expect(created.stderr).toContain(`loopers budget set ${hash.slice(0, 8)} --daily USD`)

    const before = stack.fake.received.length
    const refused = await ask(key).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError)
    const error = refused as InstanceType<typeof OpenAI.PermissionDeniedError>
    expect(error.status).toBe(403)
    expect(error.code).toBe('budget_not_set')
    expect(error.headers.get('x-loopers-error-code')).toBe('budget_not_set')
    expect(error.headers.get('x-should-retry')).toBe('false')
    expect(error.message).toContain(`loopers budget set ${hash.slice(0, 8)} --daily USD`)
    expect(error.message).toContain('--unlimited')
    expect(stack.fake.received.length).toBe(before)

    const set = await cli(stack.store.env, 'budget', 'set', hash, '--unlimited', '--json')
    expect(set.code, set.stderr).toBe(0)
    expect(JSON.parse(set.stdout)).toMatchObject({ hash, unlimited: true })
    const answer = await ask(key)
    expect(answer.usage?.total_tokens).toBeGreaterThan(0)
    expect(stack.fake.received.length).toBe(before + 1)
  })

  it('`keys create --daily` makes a usable, limited key in one step', async () => {
    const created = await cli(stack.store.env, 'keys', 'create', '--name', 'ready', '--provider', 'openai', '--daily', '10', '--json')
    expect(created.code, created.stderr).toBe(0)
    const { key, hash } = JSON.parse(created.stdout) as { key: string; hash: string }
    const answer = await ask(key)
    expect(answer.usage?.total_tokens).toBeGreaterThan(0)
    const status = await cli(stack.store.env, 'budget', 'status', hash, '--json')
    expect(JSON.parse(status.stdout)).toMatchObject({ windows: { daily: { limit_usd: 10 } } })
  })

  it('`keys create` refuses a bad limit flag and --json with --env, creating nothing', async () => {
    const listed = async (): Promise<number> => (JSON.parse((await cli(stack.store.env, 'keys', 'list', '--json')).stdout) as unknown[]).length
    const count = await listed()
    const bad = await cli(stack.store.env, 'keys', 'create', '--name', 'x', '--provider', 'openai', '--daily', 'ten')
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toMatch(/^loopers: --daily/)
    const both = await cli(stack.store.env, 'keys', 'create', '--name', 'x', '--provider', 'openai', '--json', '--env')
    expect(both.code).not.toBe(0)
    expect(await listed()).toBe(count)
  })
})
