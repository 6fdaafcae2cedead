import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ENVIRONMENT } from '../../src/config.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { TEST_PRICING_PATH } from '../support/proxy.js'
import { listenPorts, REPORT_LISTEN_ARGS, REPORT_LISTEN_STDIO } from '../support/listen-ports.js'
import { startRedis, type TestRedis } from '../support/redis.js'

/**
 * The built CLI started the way a user starts it: from a folder holding a `.env`, with nothing else in its
 * environment. The provider key lives only in that file, so the fake upstream seeing it proves the file was read.
 */

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PROVIDER_KEY = 'sk-held-by-the-server-in-dotenv-0123456789'

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function cli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: cwd, ...env }, timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : null, stdout, stderr })
    })
  })
}

let redis: TestRedis
let fake: FakeOpenAi
let dir: string
let serving: ChildProcess | null = null

beforeAll(async () => {
  redis = await startRedis()
  fake = await startFakeOpenAi()
  dir = mkdtempSync(join(tmpdir(), 'loopers-dotenv-'))
})

afterAll(async () => {
  serving?.kill('SIGKILL')
  await fake?.close()
  await redis?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('loopers serve reads ./.env', () => {
  it('uses the provider key and upstream held in .env; variables already set win over the file', async () => {
    writeFileSync(
      join(dir, '.env'),
      [
        '# server-held credentials: agents get only lp- keys',
        `LOOPERS_OPENAI_API_KEY=${PROVIDER_KEY}`,
        // Nothing listens there: requests only reach the fake because the environment's value wins.
        'LOOPERS_OPENAI_BASE_URL=http://127.0.0.1:9',
        `REDIS_URL=${redis.url}`,
        `LOOPERS_PRICING_PATH=${TEST_PRICING_PATH}`,
        'LOG_LEVEL=warn',
        '',
      ].join('\n'),
    )
    // The CLI reads the same file, so the key lands in the store serve uses.
    const created = await cli(['keys', 'create', '--name', 'dotenv', '--provider', 'openai', '--json'], dir)
    expect(created.code, created.stderr).toBe(0)
    const { key, hash } = JSON.parse(created.stdout) as { key: string; hash: string }
    expect((await cli(['budget', 'set', hash, '--daily', '1'], dir)).code).toBe(0)

    const child = spawn(process.execPath, [...REPORT_LISTEN_ARGS, CLI, 'serve'], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', HOME: dir, PORT: '0', HOST: '127.0.0.1', LOOPERS_ADMIN_PORT: '0', LOOPERS_OPENAI_BASE_URL: fake.url },
      stdio: REPORT_LISTEN_STDIO,
    })
    serving = child
    let output = ''
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()))
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()))
    const [port] = await listenPorts(child, 1, 15_000, () => output)
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 15_000
    while ((await fetch(`${url}/health`).then((r) => r.status, () => 0)) !== 200) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not come up: ${output}`)
      await new Promise((r) => setTimeout(r, 50))
    }

    // The agent holds only its lp- key.
    const openai = new OpenAI({ baseURL: `${url}/openai/v1`, apiKey: key, maxRetries: 0 })
    const reply = await openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
    expect(reply.choices[0]?.message.content).toBe('hello again from the fake server now')
    expect(fake.received).toHaveLength(1)
    expect(fake.received[0]!.headers.authorization).toBe(`Bearer ${PROVIDER_KEY}`)
    expect(fake.received[0]!.raw).not.toContain(key)
    expect(output).not.toContain(PROVIDER_KEY)

    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
  })

  it('a bad .env value is reported in one line, like any bad configuration', async () => {
    const other = mkdtempSync(join(dir, 'bad-'))
    writeFileSync(join(other, '.env'), 'PORT=not-a-port\n')
    const run = await cli(['serve'], other)
    expect(run.code).not.toBe(0)
    expect(run.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^loopers: bad configuration: PORT: /)])
  })
})

describe('help that answers', () => {
  it('serve --help lists every variable the schema reads, with its default, as .env.example does', async () => {
    const run = await cli(['serve', '--help'], dir)
    expect(run.code, run.stderr).toBe(0)
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8')
    for (const [name, { default: shown }] of Object.entries(ENVIRONMENT)) {
      expect(run.stdout).toMatch(new RegExp(`^  ${name} +\\[${shown.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\] `, 'm'))
      expect(example, name).toMatch(new RegExp(`^#? ?${name}=`, 'm'))
    }
    expect(run.stdout).toContain('.env')
  })

  it('--version prints package.json version', async () => {
    const run = await cli(['--version'], dir)
    expect(run.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version)
  })
})
