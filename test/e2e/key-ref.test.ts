import { existsSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { plantKey } from '../support/plant-key.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'
import { runCli as cli, CLI, type CliRun as Run } from '../support/cli-run.js'

/** Keys named by short hash, ambiguous prefix and name through the built CLI (issue 14 item 4, issue 9), on both stores. */

function expectOneErrorLine(run: Run, pattern: RegExp): void {
  expect(run.code, run.stderr).toBe(1)
  expect(run.stdout).toBe('')
  const lines = run.stderr.trimEnd().split('\n')
  expect(lines, run.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(pattern)
}

describe.each(STORE_KINDS)('%s store: a key named by hash prefix or name', (kind) => {
  let store: TestStore
  let hash: string
  const run = (...args: string[]): Promise<Run> => cli(store.env, ...args)

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
    store = await startTestStore(kind)
    const created = await run('keys', 'create', '--name', 'ref-agent', '--provider', 'openai', '--json')
    hash = (JSON.parse(created.stdout) as { hash: string }).hash
  })
  afterAll(async () => {
    await store?.stop()
  })

  it('budget set, budget status and keys revoke take the 8-digit prefix logs show, and the name', async () => {
    const set = await run('budget', 'set', hash.slice(0, 8), '--daily', '3', '--json')
    expect(set.code, set.stderr).toBe(0)
    expect(JSON.parse(set.stdout)).toMatchObject({ hash, limits_usd: { daily: 3 } })

    const status = await run('budget', 'status', 'ref-agent', '--json')
    expect(status.code, status.stderr).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ hash, windows: { daily: { limit_usd: 3 } } })

    const revoked = await run('keys', 'revoke', hash.slice(0, 12).toUpperCase())
    expect(revoked.code, revoked.stderr).toBe(0)
    expect(revoked.stdout).toContain(`Revoked key ${hash}`)
  })

  it('refuses an ambiguous prefix, an ambiguous name, a too-short prefix and an unknown name with one line', async () => {
    await plantKey(store, `0123abcd${'0'.repeat(56)}`, 'twin')
    await plantKey(store, `0123abcd${'1'.repeat(56)}`, 'twin')
    expectOneErrorLine(await run('budget', 'status', '0123abcd'), /^loopers: ambiguous key '0123abcd': 2 keys match/)
    expectOneErrorLine(await run('budget', 'set', 'twin', '--daily', '1'), /^loopers: ambiguous key 'twin': 2 keys match/)
    expectOneErrorLine(await run('keys', 'revoke', hash.slice(0, 7)), /^loopers: unknown key '[0-9a-f]{7}': .*at least 8 hex digits/)
    expectOneErrorLine(await run('budget', 'status', 'nobody'), /^loopers: unknown key 'nobody'/)
    // A longer prefix that is unique still works.
    const one = await run('budget', 'status', '0123abcd1', '--json')
    expect(one.code, one.stderr).toBe(0)
    expect((JSON.parse(one.stdout) as { hash: string }).hash).toBe(`0123abcd${'1'.repeat(56)}`)
  })
})
