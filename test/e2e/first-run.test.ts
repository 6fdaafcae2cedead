import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { TEST_PRICING_PATH } from '../support/proxy.js'
import { listenPorts, REPORT_LISTEN_ARGS, REPORT_LISTEN_STDIO } from '../support/listen-ports.js'

/**
 * The done-check: on a machine with Node and nothing else, the built CLI serves a budgeted
 * OpenAI request end to end. A fresh home folder, no Redis variables, no LOOPERS_DB: the embedded store
 * is created at ~/.loopers/loopers.db on first use; keys and budgets come from the CLI in other processes.
 */

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

let home: string
let fake: FakeOpenAi
let env: Record<string, string>

function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, cwd: home, timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
  home = mkdtempSync(join(tmpdir(), 'loopers-home-'))
  fake = await startFakeOpenAi()
  // Only what a new user has: PATH and HOME, plus where the (fake) provider lives and the test prices.
  env = { PATH: process.env.PATH ?? '', HOME: home, LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_PRICING_PATH: TEST_PRICING_PATH }
})
afterAll(async () => {
  await fake?.close()
  rmSync(home, { recursive: true, force: true })
})

describe('first run: `loopers serve` with nothing but Node', () => {
  it('serves a budgeted OpenAI request on the embedded store, keys and budget set with the CLI', async () => {
    const serve = spawn(process.execPath, [...REPORT_LISTEN_ARGS, CLI, 'serve'], {
      env: { ...env, HOST: '127.0.0.1', PORT: '0', LOOPERS_ADMIN_PORT: '0' },
      cwd: home,
      stdio: REPORT_LISTEN_STDIO,
    })
    let output = ''
    serve.stdout!.on('data', (c: Buffer) => (output += c.toString()))
    serve.stderr!.on('data', (c: Buffer) => (output += c.toString()))
    const exited = new Promise<number | null>((resolve) => serve.once('exit', resolve))
    try {
      const [port] = await listenPorts(serve, 1, 15_000, () => output)
      const url = `http://127.0.0.1:${port}`
      const deadline = Date.now() + 15_000
      while (!(await fetch(`${url}/health`).then((r) => r.status === 200, () => false))) {
        if (Date.now() > deadline || serve.exitCode !== null) throw new Error(`loopers serve did not become healthy: ${output}`)
        await new Promise((r) => setTimeout(r, 50))
      }
      const dbPath = join(home, '.loopers', 'loopers.db')
      expect(statSync(join(home, '.loopers')).mode & 0o777).toBe(0o700)
      expect(statSync(dbPath).mode & 0o777).toBe(0o600)

      // A second terminal: the CLI, another process on the same database file.
      const created = await cli('keys', 'create', '--name', 'first', '--provider', 'openai', '--json')
      expect(created.code, created.stderr).toBe(0)
      const { key, hash } = JSON.parse(created.stdout) as { key: string; hash: string }
      const set = await cli('budget', 'set', hash, '--daily', '0.001')
      expect(set.code, set.stderr).toBe(0)
      expect(set.stderr).toBe(`budget store: embedded SQLite at ${dbPath}\n`)

      const sdk = new OpenAI({ apiKey: key, baseURL: `${url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
      const answer = await sdk.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 })
      expect(answer.usage?.total_tokens).toBeGreaterThan(0)
      expect(fake.received).toHaveLength(1)

      // The budget bites: what was spent is on the books, read by the CLI.
      const costMicros = answer.usage!.total_tokens
      let status: { windows: { daily: { spent_usd: number; held_usd: number; limit_usd: number } } } | undefined
      for (let i = 0; i < 100; i++) {
        const r = await cli('budget', 'status', hash, '--json')
        expect(r.code, r.stderr).toBe(0)
        status = JSON.parse(r.stdout) as typeof status
        if (status?.windows.daily.held_usd === 0) break
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(status?.windows.daily).toMatchObject({ limit_usd: 0.001, spent_usd: costMicros / 1e6, held_usd: 0 })
    } finally {
      if (serve.exitCode === null) serve.kill('SIGTERM')
      expect(await exited).toBe(0)
    }
    // The start-up line names the store in use.
    expect(output).toContain('embedded SQLite at')
    expect(output).toContain(join(home, '.loopers', 'loopers.db'))
  })
})
