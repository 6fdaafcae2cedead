import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TEST_PRICING_PATH } from './proxy.js'
import { listenPorts, REPORT_LISTEN_ARGS, REPORT_LISTEN_STDIO } from './listen-ports.js'

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

/**
 * The environment and node flags of the `loopers` launcher, read from the CLI's first line
 * (`#!/usr/bin/env -S [VAR=value …] node [flag …]`), so the spawned proxy runs as `loopers serve` does,
 * but on this test run's node binary.
 */
function launcher(): { env: Record<string, string>; flags: string[] } {
  const line = readFileSync(CLI, 'utf8').split('\n', 1)[0] ?? ''
  const match = /^#!\S*env -S((?: [A-Za-z_]\w*=\S*)*) node\b(.*)$/.exec(line)
  if (match === null) throw new Error(`unexpected launcher line in dist/cli.js: ${line}`)
  const pairs = (match[1] ?? '').trim().split(/\s+/).filter(Boolean)
  return {
    env: Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)])),
    flags: (match[2] ?? '').trim().split(/\s+/).filter(Boolean),
  }
}

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
 * Runs the built CLI's `serve` as its own process, the way operators run it (with the launcher's environment
 * and node flags), and waits for /health.
 * With neither REDIS_URL nor LOOPERS_DB in `env` it runs on the embedded store in a fresh temporary file.
 */
export async function startProxyProcess(env: Record<string, string>): Promise<ProxyProcess> {
  const ownDir = env.REDIS_URL === undefined && env.LOOPERS_DB === undefined ? mkdtempSync(join(tmpdir(), 'loopers-db-')) : null
  const storeEnv = ownDir === null ? {} : { LOOPERS_DB: join(ownDir, 'loopers.db') }
  // Port 0: the proxy reports the port it was given (its first listener; the admin listener is second).
  const run = launcher()
  const child = spawn(process.execPath, [...run.flags, ...REPORT_LISTEN_ARGS, CLI, 'serve'], {
    env: {
      ...run.env,
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: '0',
      LOOPERS_ADMIN_PORT: '0',
      LOOPERS_PRICING_PATH: TEST_PRICING_PATH,
      LOG_LEVEL: process.env.LOOPERS_TEST_PROXY_LOG_LEVEL ?? 'warn',
      ...storeEnv,
      ...env,
    },
    stdio: REPORT_LISTEN_STDIO,
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
  const deadline = Date.now() + 15_000
  const [port] = await listenPorts(child, 1, 15_000, () => output).catch((error: unknown) => {
    child.kill('SIGKILL')
    throw error
  })
  const url = `http://127.0.0.1:${port}`
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
