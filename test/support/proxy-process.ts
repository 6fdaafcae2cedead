import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TEST_PRICING_PATH } from './proxy.js'
import { freePort } from './redis.js'

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

export interface ProxyProcess {
  url: string
  child: ChildProcess
  /** Everything the process wrote to stdout and stderr. */
  output(): string
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>
  /** SIGKILL: the process dies with no chance to settle. */
  kill(): Promise<void>
}

/**
 * Runs the built CLI's `serve` as its own process, the way operators run it, and waits for /health.
 * With neither REDIS_URL nor LOOPERS_DB in `env` it runs on the embedded store in a fresh temporary file.
 */
export async function startProxyProcess(env: Record<string, string>): Promise<ProxyProcess> {
  const port = await freePort()
  const ownDir = env.REDIS_URL === undefined && env.LOOPERS_DB === undefined ? mkdtempSync(join(tmpdir(), 'loopers-db-')) : null
  const storeEnv = ownDir === null ? {} : { LOOPERS_DB: join(ownDir, 'loopers.db') }
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(port),
      LOOPERS_ADMIN_PORT: '0',
      LOOPERS_PRICING_PATH: TEST_PRICING_PATH,
      LOG_LEVEL: process.env.LOOPERS_TEST_PROXY_LOG_LEVEL ?? 'warn',
      ...storeEnv,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      if (ownDir !== null) rmSync(ownDir, { recursive: true, force: true })
      resolve(code)
    }),
  )
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`loopers serve exited (${child.exitCode}): ${output}`)
    const ok = await fetch(`${url}/health`).then((r) => r.status === 200, () => false)
    if (ok) break
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`loopers serve did not become healthy: ${output}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    url,
    child,
    output: () => output,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM')
      return exited
    },
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL')
      await exited
    },
  }
}
