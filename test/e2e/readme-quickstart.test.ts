import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { freePort } from '../support/redis.js'

/**
 * The README's quick start, run as written so it cannot rot: every ```sh block marked
 * `<!-- quickstart: run -->` runs line by line in one bash (set -e), in a fresh copy of the checkout's
 * layout with an empty HOME (so the embedded store starts empty), against a fake OpenAI. The only changes: the environment names the fake as the OpenAI
 * upstream (variables already set win over .env) and free ports replace 8080/9090, so the run
 * shares nothing with the machine; npx works offline and runs no install scripts (CI built dist/).
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
const MARKER = '<!-- quickstart: run -->'

/** The marked blocks' commands, one per logical line (backslash continuations joined). */
function quickStartCommands(readme: string): string[][] {
  const blocks: string[][] = []
  // The marker on a line of its own, directly above the block it marks.
  for (const marked of readme.matchAll(new RegExp(`^${MARKER}\\n(.*)$`, 'gm'))) {
    const fence = /^```sh\n([\s\S]*?)^```$/m.exec(readme.slice(marked.index + MARKER.length + 1))
    if (marked[1] !== '```sh' || fence === null || fence.index !== 0) throw new Error(`${MARKER} must be followed by a \`\`\`sh block`)
    blocks.push(fence[1]!.replace(/\\\n/g, ' ').split('\n').filter((line) => line.trim() !== ''))
  }
  return blocks
}

let fake: FakeOpenAi
let dir: string

beforeAll(async () => {
  fake = await startFakeOpenAi()
  dir = mkdtempSync(join(tmpdir(), 'loopers-quickstart-'))
})
afterAll(async () => {
  await fake?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('README quick start', () => {
  const blocks = quickStartCommands(README)
  const quickStart = README.slice(README.indexOf('## Quick start'), README.indexOf('\n## ', README.indexOf('## Quick start') + 1))

  it('says what `loopers` is before its first command, and runs it in the checkout only', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(2)
    const firstUse = quickStart.search(/^(npx )?loopers /m)
    expect(firstUse).toBeGreaterThan(0)
    expect(quickStart.slice(0, firstUse)).toMatch(/command line, `loopers`/)
    expect(quickStart.slice(0, firstUse)).toMatch(/never type `npx loopers` outside a checkout/)
    // In the runnable blocks the CLI is always the checkout's own: `npx loopers` after `npm ci`.
    for (const line of blocks.flat()) expect(line, line).not.toMatch(/(^|[;&|(]\s*)loopers /)
  })

  it('puts the provider key on the server and gives the agent only its lp- key', () => {
    const commands = blocks.flat().join('\n')
    expect(commands).toMatch(/LOOPERS_OPENAI_API_KEY=\S+.*> \.env/)
    expect(commands).not.toContain('X-Loopers-Provider-Key')
    expect(commands).not.toMatch(/sk-[a-z-]+.*Bearer|Bearer sk-/)
  })

  it('runs line by line against a fake provider and gets an answer, metered on the key', { timeout: 150_000 }, async () => {
    // The checkout as `npm ci` leaves it (package.json copied: npx links the checkout through it).
    const checkout = join(dir, 'loopers')
    const home = join(dir, 'home')
    mkdirSync(checkout)
    mkdirSync(home)
    for (const entry of ['node_modules', 'dist', 'pricing', 'lua', '.env.example', 'package-lock.json']) symlinkSync(join(ROOT, entry), join(checkout, entry))
    copyFileSync(join(ROOT, 'package.json'), join(checkout, 'package.json'))
    const port = await freePort()
    const adminPort = await freePort()
    const script = [
      'set -euo pipefail',
      `trap 'echo "quick start failed at: $BASH_COMMAND" >&2' ERR`,
      ...blocks.flat().map((line) => line.replaceAll('localhost:8080', `localhost:${port}`).replaceAll(':9090', `:${adminPort}`)),
    ].join('\n')
    const env = {
      PATH: [dirname(process.execPath), process.env.PATH ?? ''].join(delimiter),
      HOME: home,
      PORT: String(port),
      LOOPERS_ADMIN_PORT: String(adminPort),
      LOOPERS_OPENAI_BASE_URL: fake.url,
      npm_config_offline: 'true',
      npm_config_ignore_scripts: 'true',
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
    }
    // Its own process group: `npx loopers serve &` and everything else it started is stopped below.
    const bash = spawn('bash', ['-c', script], { cwd: checkout, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    bash.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    bash.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const code = await new Promise<number | null>((resolve) => bash.once('exit', resolve))
    try {
      process.kill(-bash.pid!, 'SIGTERM')
    } catch {}
    expect(code, `${stderr}\n${stdout}`).toBe(0)

    // The demo: a refusal and a cut-off.
    expect(stdout).toMatch(/CUT OFF after \d+ words: budget_exceeded/)
    expect(stdout).toMatch(/REFUSED budget_exceeded/)
    // The chat request reached the fake with the key the server holds in .env, never the lp- key.
    const chats = fake.received.filter((r) => r.url === '/v1/chat/completions')
    expect(chats).toHaveLength(1)
    expect(chats[0]!.headers.authorization).toBe('Bearer sk-your-openai-key')
    expect(chats[0]!.raw).not.toMatch(/lp-[A-Za-z0-9]{43}/)
    expect(stdout).toContain('"content":"hello again from the fake server now"')
    expect(stdout).toContain('{"status":"ok"}')
    // budget status shows the limits set and the answer's cost (12 input + 7 output tokens of gpt-4o-mini, > $0).
    expect(stdout).toMatch(/^daily +\$10\.00 +\$0\.0000\d+ /m)
    expect(stdout).toMatch(/^hourly +\$2\.00 /m)
  })
})
