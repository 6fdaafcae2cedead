import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import { periodOf } from '../../src/budget/windows.js'
import { WINDOW_NAMES } from '../../src/budget/types.js'
import { startRedis } from '../support/redis.js'

/** Drives the built `dist/cli.js` as a user's script would (`npm test` builds first). */

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))
const KEY_FORMAT = /^lp-[A-Za-z0-9]{43}$/
const UNKNOWN_HASH = 'f'.repeat(64)

interface Run {
  code: number | null
  stdout: string
  stderr: string
  ms: number
}

/** Runs the CLI with only PATH and `env` in its environment (nothing leaks in from the test runner). */
function cli(args: string[], env: Record<string, string>): Promise<Run> {
  const started = Date.now()
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
        resolve({ code, stdout, stderr, ms: Date.now() - started })
      },
    )
  })
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex')

/** One error line: "loopers: …", no stack trace, nothing on stdout. */
function expectOneErrorLine(run: Run, pattern: RegExp): void {
  expect(run.code, run.stderr).not.toBe(0)
  expect(run.code).not.toBeNull()
  expect(run.stdout).toBe('')
  const lines = run.stderr.trimEnd().split('\n')
  expect(lines, run.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^loopers: /)
  expect(lines[0]).toMatch(pattern)
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

describe('loopers CLI (built)', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>
  let env: Record<string, string>
  const run = (...args: string[]): Promise<Run> => cli(args, env)

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
    redis = await startRedis()
    env = { REDIS_URL: redis.url }
  })
  afterAll(async () => {
    await redis?.stop()
  })

  describe('a key from creation to revocation', () => {
    let jsonKey: { key: string; hash: string }
    let humanKey: { key: string; hash: string }

    it('keys create --json prints one object with the raw key and its sha256 hash', async () => {
      const r = await run('keys', 'create', '--name', 'agent-1', '--provider', 'openai,anthropic', '--json')
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toBe('')
      const created = JSON.parse(r.stdout) as Record<string, unknown>
      expect(created).toMatchObject({ name: 'agent-1', providers: ['openai', 'anthropic'], active: true })
      expect(created.key).toMatch(KEY_FORMAT)
      expect(created.hash).toBe(sha256(created.key as string))
      expect(Number.isNaN(Date.parse(created.created_at as string))).toBe(false)
      jsonKey = { key: created.key as string, hash: created.hash as string }
    })

    it('keys create (human) shows the key once with a warning, plus hash, name and providers', async () => {
      const r = await run('keys', 'create', '--name', 'agent two', '--provider', 'gemini', '--provider', 'bedrock,azure')
      expect(r.code, r.stderr).toBe(0)
      const key = /^\s+(lp-\S+)$/m.exec(r.stdout)?.[1] ?? ''
      expect(key).toMatch(KEY_FORMAT)
      expect(r.stdout).toContain('Store it now, it is not kept')
      expect(r.stdout).toMatch(new RegExp(`^\\s+hash\\s+${sha256(key)}$`, 'm'))
      expect(r.stdout).toMatch(/^\s+name\s+agent two$/m)
      expect(r.stdout).toMatch(/^\s+providers\s+gemini, bedrock, azure$/m)
      humanKey = { key, hash: sha256(key) }
    })

    it('keys list --json gives {hash, name, providers, active, created_at} per key', async () => {
      const r = await run('keys', 'list', '--json')
      expect(r.code, r.stderr).toBe(0)
      const list = JSON.parse(r.stdout) as Array<Record<string, unknown>>
      expect(list).toHaveLength(2)
      for (const item of list) expect(Object.keys(item).sort()).toEqual(['active', 'created_at', 'hash', 'name', 'providers'])
      expect(list.find((k) => k.hash === jsonKey.hash)).toMatchObject({ name: 'agent-1', providers: ['openai', 'anthropic'], active: true })
      expect(list.find((k) => k.hash === humanKey.hash)).toMatchObject({ name: 'agent two', providers: ['gemini', 'bedrock', 'azure'] })
      expect(r.stdout).not.toContain(jsonKey.key)
    })

    it('keys list shows a table', async () => {
      const r = await run('keys', 'list')
      expect(r.code, r.stderr).toBe(0)
      const [header, ...rows] = r.stdout.trimEnd().split('\n')
      expect(header).toMatch(/^HASH\s+NAME\s+PROVIDERS\s+ACTIVE\s+CREATED$/)
      expect(rows).toHaveLength(2)
      expect(rows.find((l) => l.startsWith(jsonKey.hash))).toMatch(/agent-1\s+openai,anthropic\s+yes\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/)
    })

    it('budget set applies limits and confirms them', async () => {
      const r = await run('budget', 'set', jsonKey.hash, '--hourly', '10', '--monthly', '100.5', '--session', '0.25', '--session-max-steps', '40')
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^\s+hourly\s+\$10\.00$/m)
      expect(r.stdout).toMatch(/^\s+monthly\s+\$100\.50$/m)
      expect(r.stdout).toMatch(/^\s+minute\s+no limit$/m)
      expect(r.stdout).toMatch(/^\s+session\s+\$0\.25 per session, at most 40 steps$/m)

      const json = await run('budget', 'set', jsonKey.hash.toUpperCase(), '--daily', '2.000001', '--json')
      expect(json.code, json.stderr).toBe(0)
      expect(JSON.parse(json.stdout)).toEqual({
        hash: jsonKey.hash,
        limits_usd: { minute: null, hourly: 10, daily: 2.000001, weekly: null, monthly: 100.5 },
        session_budget_usd: 0.25,
        session_max_steps: 40,
        unlimited: false,
        rpm: null,
        loop: { limit: 10, window_seconds: 600, default_limit: true, default_window: true },
      })
    })

    it('budget status --json gives every window exactly', async () => {
      const before = Date.now()
      const r = await run('budget', 'status', jsonKey.hash, '--json')
      const after = Date.now()
      expect(r.code, r.stderr).toBe(0)
      const status = JSON.parse(r.stdout) as { hash: string; windows: Record<string, Record<string, unknown>> }
      // The contract's {hash, windows}, plus the added key settings (unlimited, request rate, loop guard).
      expect(Object.keys(status).sort()).toEqual(['hash', 'loop', 'rate', 'unlimited', 'windows'])
      expect(status.hash).toBe(jsonKey.hash)
      expect(Object.keys(status.windows)).toEqual([...WINDOW_NAMES])
      const limits = { minute: null, hourly: 10, daily: 2.000001, weekly: null, monthly: 100.5 }
      for (const window of WINDOW_NAMES) {
        const { resets_at, ...amounts } = status.windows[window] ?? {}
        expect(amounts, window).toEqual({ limit_usd: limits[window], spent_usd: 0, held_usd: 0, remaining_usd: limits[window] })
        const possible = [periodOf(window, before), periodOf(window, after)].map((p) => p.resetsAt.toISOString())
        expect(possible, window).toContain(resets_at)
      }
    })

    it('budget status reports settled spend and in-flight holds', async () => {
      // Every window rolls over on a minute boundary: keep clear of one so all reads see the same periods.
      const msToNextMinute = 60_000 - (Date.now() % 60_000)
      if (msToNextMinute < 5_000) await new Promise((resolve) => setTimeout(resolve, msToNextMinute + 50))
      // Real spend through the budget engine: $0.800001 settled, $0.25 still held by an open request.
      const client = new Redis(redis.url, { maxRetriesPerRequest: 0 })
      try {
        const store = createBudgetStore(client)
        const reserve = (requestId: string, micros: number) =>
          store.reserve({ keyHash: jsonKey.hash, provider: 'openai', requestId, minMicros: micros, maxMicros: micros, session: null })
        const settled = await reserve('req-settled', 1_000_000)
        if (!settled.ok) throw new Error(`reserve refused: ${settled.reason}`)
        await store.settle(settled.reservation, 800_001)
        expect((await reserve('req-open', 250_000)).ok).toBe(true)
      } finally {
        client.disconnect()
      }
      const status = JSON.parse((await run('budget', 'status', jsonKey.hash, '--json')).stdout) as {
        windows: Record<string, Record<string, unknown>>
      }
      expect(status.windows.daily).toMatchObject({ limit_usd: 2.000001, spent_usd: 0.800001, held_usd: 0.25, remaining_usd: 0.95 })
      expect(status.windows.minute).toMatchObject({ limit_usd: null, spent_usd: 0.800001, held_usd: 0.25, remaining_usd: null })
      expect(status.windows.hourly).toMatchObject({ limit_usd: 10, remaining_usd: 8.949999 })

      const table = await run('budget', 'status', jsonKey.hash)
      expect(table.code, table.stderr).toBe(0)
      const lines = table.stdout.split('\n')
      expect(table.stdout).toContain(`Budget of key ${jsonKey.hash} ("agent-1", active, openai, anthropic)`)
      expect(lines.some((l) => /^WINDOW\s+LIMIT\s+SPENT\s+HELD\s+REMAINING\s+RESETS AT\s+USED$/.test(l))).toBe(true)
      const row = (w: string): string => lines.find((l) => l.startsWith(`${w} `)) ?? ''
      // 0.800001 of 2.000001 is 40 %: 8 of 20 cells.
      expect(row('daily')).toMatch(/^daily\s+\$2\.000001\s+\$0\.800001\s+\$0\.25\s+\$0\.95\s+\S+ \S+ UTC\s+\[#{8}-{12}\]  40%$/)
      expect(row('hourly')).toMatch(/^hourly\s+\$10\.00\s+\$0\.800001\s+\$0\.25\s+\$8\.949999\s+\S+ \S+ UTC\s+\[#-{19}\]   8%$/)
      expect(row('minute')).toMatch(/^minute\s+—\s+\$0\.800001\s+\$0\.25\s+—\s+\S+ \S+ UTC\s+—$/)
      expect(row('weekly')).toMatch(/—$/)
      expect(table.stdout).toContain('Session defaults: $0.25 per session, at most 40 steps')
    })

    it('budget set 0 removes a limit', async () => {
      const r = await run('budget', 'set', jsonKey.hash, '--monthly', '0', '--session', '0', '--session-max-steps', '0')
      expect(r.code, r.stderr).toBe(0)
      const status = JSON.parse((await run('budget', 'status', jsonKey.hash, '--json')).stdout) as {
        windows: Record<string, { limit_usd: number | null; remaining_usd: number | null }>
      }
      expect(status.windows.monthly).toMatchObject({ limit_usd: null, remaining_usd: null })
      expect(status.windows.hourly).toMatchObject({ limit_usd: 10, remaining_usd: 8.949999 })
      expect((await run('budget', 'status', jsonKey.hash)).stdout).toContain('Session defaults: no budget, no step limit')
    })

    it('keys revoke marks the key inactive in the list', async () => {
      const r = await run('keys', 'revoke', jsonKey.hash)
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^Revoked key /)
      const list = JSON.parse((await run('keys', 'list', '--json')).stdout) as Array<{ hash: string; active: boolean }>
      expect(list.find((k) => k.hash === jsonKey.hash)?.active).toBe(false)
      expect(list.find((k) => k.hash === humanKey.hash)?.active).toBe(true)
      expect((await run('keys', 'list')).stdout).toMatch(new RegExp(`^${jsonKey.hash}\\s.*\\srevoked\\s`, 'm'))
      const again = await run('keys', 'revoke', jsonKey.hash)
      expect(again.code).toBe(0)
      expect(again.stdout).toContain('already revoked')
    })
  })

  describe('errors: one line on stderr, non-zero exit', () => {
    it.each([
      [['keys', 'revoke', UNKNOWN_HASH]],
      [['budget', 'status', UNKNOWN_HASH]],
      [['budget', 'status', UNKNOWN_HASH, '--json']],
      [['budget', 'set', UNKNOWN_HASH, '--daily', '1']],
    ])('unknown hash: %j', async (args) => {
      const r = await run(...args)
      expectOneErrorLine(r, new RegExp(`unknown key hash ${UNKNOWN_HASH}`))
      expect(r.code).toBe(1)
    })

    it.each([
      [['--daily', 'abc'], /--daily: not a USD amount/],
      [['--daily', '-1'], /--daily: amount cannot be negative/],
      [['--weekly=-0.5'], /--weekly: amount cannot be negative/],
      [['--hourly', '1e3'], /--hourly: not a USD amount/],
      [['--minute', '0.0000001'], /--minute: too many decimals/],
      [['--session-max-steps', '2.5'], /--session-max-steps/],
      [[], /at least one of --minute, --hourly/],
    ])('budget set %j is a usage error', async (flags, message) => {
      const r = await run('budget', 'set', UNKNOWN_HASH, ...flags)
      expectOneErrorLine(r, message)
      expect(r.code).toBe(2)
    })

    it('unknown provider', async () => {
      const r = await run('keys', 'create', '--name', 'x', '--provider', 'openai,copilot')
      expectOneErrorLine(r, /unknown provider 'copilot' \(expected one of openai, anthropic, gemini, bedrock, azure, mistral\)/)
    })

    it('missing --name and unknown options are reported by one line', async () => {
      expectOneErrorLine(await run('keys', 'create', '--provider', 'openai'), /required option '--name <name>'/)
      expectOneErrorLine(await run('keys', 'list', '--jsn'), /unknown option '--jsn'/)
    })

    it('store unreachable (closed port) fails fast and points at REDIS_URL', async () => {
      const probe = createServer()
      const port = await listen(probe)
      await new Promise((resolve) => probe.close(resolve))
      const r = await cli(['keys', 'list'], { REDIS_URL: `redis://127.0.0.1:${port}` })
      expectOneErrorLine(r, new RegExp(`cannot reach the budget store at redis://127\\.0\\.0\\.1:${port} .*check REDIS_URL`))
      expect(r.code).toBe(1)
      expect(r.ms).toBeLessThan(5_000)
    })

    it('store that accepts connections but never answers gives up after ~3 s', async () => {
      const sockets = new Set<Socket>()
      const silent = createServer((socket) => sockets.add(socket))
      const port = await listen(silent)
      try {
        const r = await cli(['budget', 'status', UNKNOWN_HASH], { REDIS_URL: `redis://:secret@127.0.0.1:${port}` })
        expectOneErrorLine(r, /cannot reach the budget store .*check REDIS_URL/)
        expect(r.stderr).not.toContain('secret')
        expect(r.ms).toBeLessThan(6_000)
      } finally {
        for (const socket of sockets) socket.destroy()
        await new Promise((resolve) => silent.close(resolve))
      }
    })

    it('bad configuration: one line per problem, exit 1, no stack trace', async () => {
      const r = await cli(['keys', 'list'], { REDIS_URL: redis.url, PORT: 'abc', LOG_LEVEL: 'loud' })
      expect(r.code).toBe(1)
      expect(r.stdout).toBe('')
      const lines = r.stderr.trimEnd().split('\n')
      expect(lines).toHaveLength(2)
      expect(lines.find((l) => l.includes('PORT'))).toMatch(/^loopers: bad configuration: PORT/)
      expect(lines.find((l) => l.includes('LOG_LEVEL'))).toMatch(/^loopers: bad configuration: LOG_LEVEL/)
      expect(r.stderr).not.toMatch(/\n\s+at /)
    })
  })
})
