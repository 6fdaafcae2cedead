import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ProviderId } from '../../src/providers/types.js'
import { createTestKey, expectNoProxyKeyIn, settledDaily } from '../support/e2e.js'
import { startFakeAnthropic, type FakeAnthropic } from '../support/fake-anthropic.js'
import { startFakeGemini, type FakeGemini } from '../support/fake-gemini.js'
import { startFakeMistral, type FakeMistral } from '../support/fake-mistral.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import type { Received } from '../support/fake-server.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

/**
 * `loopers exec` end to end: the built CLI runs a child that configures an official SDK from its environment alone;
 * the request reaches the fake upstream with the real provider key through path auth, the proxy meters it, the
 * session given on the command line applies, and the child's exit code and signals pass through.
 */

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))
const child = (name: string): string => fileURLToPath(new URL(`../fixtures/exec/${name}`, import.meta.url))

let redis: TestRedis
let proxy: TestProxy
let openai: FakeOpenAi
let anthropic: FakeAnthropic
let gemini: FakeGemini
let mistral: FakeMistral

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `loopers exec <args>` with only PATH and `env` in its environment; `during` sees the process while it runs. */
function execCli(args: string[], env: Record<string, string>, during?: (p: ReturnType<typeof spawn>, out: () => string) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, 'exec', ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    p.once('error', reject)
    p.once('exit', (code) => resolve({ code, stdout, stderr }))
    during?.(p, () => stdout)
  })
}

const UPSTREAM = {
  openai: 'sk-openai-upstream-0123456789',
  anthropic: 'sk-ant-upstream-0123456789',
  gemini: 'gemini-upstream-0123456789',
  mistral: 'mistral-upstream-0123456789',
}
const PROVIDER_KEYS = {
  OPENAI_API_KEY: UPSTREAM.openai,
  ANTHROPIC_API_KEY: UPSTREAM.anthropic,
  GEMINI_API_KEY: UPSTREAM.gemini,
  MISTRAL_API_KEY: UPSTREAM.mistral,
}

beforeAll(async () => {
  redis = await startRedis()
  ;[openai, anthropic, gemini, mistral] = await Promise.all([startFakeOpenAi(), startFakeAnthropic(), startFakeGemini(), startFakeMistral()])
  proxy = await startProxy({
    REDIS_URL: redis.url,
    LOOPERS_OPENAI_BASE_URL: openai.url,
    LOOPERS_ANTHROPIC_BASE_URL: anthropic.url,
    LOOPERS_GEMINI_BASE_URL: gemini.url,
    LOOPERS_MISTRAL_BASE_URL: mistral.url,
  })
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([openai?.close(), anthropic?.close(), gemini?.close(), mistral?.close()])
  await redis?.stop()
})

/** The header each provider's SDK carries its key in, as the fake upstream received it. */
const upstreamKey: Record<'openai' | 'anthropic' | 'gemini' | 'mistral', (r: Received) => unknown> = {
  openai: (r) => r.headers.authorization,
  anthropic: (r) => r.headers['x-api-key'] ?? r.headers.authorization,
  gemini: (r) => r.headers['x-goog-api-key'],
  mistral: (r) => r.headers.authorization,
}
/** Gemini sends its key bare; Anthropic's recent SDKs send Bearer where older ones sent x-api-key. */
const expectedKey = (provider: keyof typeof UPSTREAM): RegExp =>
  new RegExp(`^${provider === 'gemini' ? '' : provider === 'anthropic' ? '(Bearer )?' : 'Bearer '}${UPSTREAM[provider]}$`)

describe('loopers exec with each official SDK', () => {
  const fakes = () => ({ openai, anthropic, gemini, mistral })
  it.each(['openai', 'anthropic', 'gemini', 'mistral'] as const)(
    '%s: the SDK reaches the upstream with its own key through Loopers, metered, in a one-step session',
    async (provider) => {
      const { key, hash } = await createTestKey(proxy, `exec-${provider}`, [provider as ProviderId], { daily: 1_000_000 })
      const fake = fakes()[provider]
      const before = fake.received.length
      const run = await execCli(
        ['--key', key, '--url', proxy.url, '--session', `run-${provider}`, '--session-max-steps', '1', '--', process.execPath, child(`${provider}.mjs`), '3'],
        PROVIDER_KEYS,
      )
      expect(run.stderr).toBe('')
      expect(run.code).toBe(3)
      const result = JSON.parse(run.stdout.trim()) as { text: string; second: { ok?: boolean; status: number | null; code: string | null } }
      expect(result.text.length).toBeGreaterThan(0)
      // The second request of a one-step session is refused by the proxy and never reaches the upstream.
      expect(result.second.ok).toBeUndefined()
      expect(result.second.status).toBe(429)
      if (result.second.code !== null) expect(result.second.code).toBe('session_steps_exceeded')
      const received = fake.received.slice(before)
      expect(received).toHaveLength(1)
      expect(upstreamKey[provider](received[0]!)).toMatch(expectedKey(provider))
      expectNoProxyKeyIn(received, key)
      const daily = await settledDaily(proxy, hash)
      expect(daily.spent).toBeGreaterThan(0)
      expect(daily.held).toBe(0)
    },
  )

  it('--session-budget travels with the session: a budget below one request refuses it before the upstream', async () => {
    const { key, hash } = await createTestKey(proxy, 'exec-budget', ['openai'], { daily: 1_000_000 })
    const before = openai.received.length
    const run = await execCli(
      ['--key', key, '--url', proxy.url, '--session', 'tiny', '--session-budget', '0.000001', '--', process.execPath, child('openai.mjs')],
      PROVIDER_KEYS,
    )
    expect(run.code).not.toBe(0)
    expect(run.stderr).toContain('session_budget_exceeded')
    expect(openai.received.length).toBe(before)
    expect((await settledDaily(proxy, hash)).spent).toBe(0)
  })

  it('LOOPERS_PROXY_KEY and LOOPERS_PROXY_URL stand for --key and --url; no session means no step limit', async () => {
    const { key, hash } = await createTestKey(proxy, 'exec-env', ['openai'], { daily: 1_000_000 })
    const run = await execCli(['--', process.execPath, child('openai.mjs')], { ...PROVIDER_KEYS, LOOPERS_PROXY_KEY: key, LOOPERS_PROXY_URL: proxy.url })
    expect(run.code).toBe(0)
    expect(JSON.parse(run.stdout.trim()).second).toEqual({ ok: true })
    expect((await settledDaily(proxy, hash)).spent).toBeGreaterThan(0)
  })
})

describe('loopers exec as a process', () => {
  const key = `lp-${'x'.repeat(43)}`
  it.each([
    ['SIGTERM', 55],
    ['SIGINT', 42],
    ['SIGHUP', 41],
  ] as const)('passes %s to the child and exits with its code', async (signal, code) => {
    const run = await execCli(['--key', key, '--', process.execPath, child('wait-signal.mjs')], {}, (p, out) => {
      const poll = setInterval(() => {
        if (out().includes('ready')) {
          clearInterval(poll)
          p.kill(signal)
        }
      }, 20)
    })
    expect(run.stdout).toContain(`got ${signal}`)
    expect(run.code).toBe(code)
  })

  it('a child killed by a signal makes loopers exit with 128 + its number; a missing command with 127', async () => {
    const killed = await execCli(['--key', key, '--', 'sh', '-c', 'kill -KILL $$'], {})
    expect(killed.code).toBe(128 + 9)
    const missing = await execCli(['--key', key, '--', 'no-such-command-for-loopers'], {})
    expect(missing.code).toBe(127)
    expect(missing.stderr.trim()).toBe('loopers: command not found: no-such-command-for-loopers')
  })

  it('refuses a bad key or session with one line and exit 2, running nothing', async () => {
    const bad = await execCli(['--key', 'sk-not-a-proxy-key', '--', 'sh', '-c', 'echo ran'], {})
    expect(bad.code).toBe(2)
    expect(bad.stdout).toBe('')
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    const session = await execCli(['--key', key, '--session', 'has space', '--', 'sh', '-c', 'echo ran'], {})
    expect(session.code).toBe(2)
    expect(session.stdout).toBe('')
  })
})
