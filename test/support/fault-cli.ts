/** The built CLI (`node dist/cli.js serve`) as a child process, so a test can SIGKILL a real proxy. */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { TEST_PRICING_PATH } from './proxy.js'
import { listenPorts, REPORT_LISTEN_ARGS, REPORT_LISTEN_STDIO } from './listen-ports.js'

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))
const START_TIMEOUT_MS = 10_000

export interface ProxyProcess {
  url: string
  child: ChildProcess
  /** What the child wrote to stdout and stderr (the last 8 KB). */
  output(): string
  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<void>
}

const children = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/** Starts `loopers serve` on a free loopback port and resolves once its GET /health answers 200. */
/** `env` names the store: REDIS_URL, or LOOPERS_DB for the embedded one. */
export async function spawnProxy(env: ({ REDIS_URL: string } | { LOOPERS_DB: string }) & { LOOPERS_OPENAI_BASE_URL: string } & Record<string, string>): Promise<ProxyProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`)
  // Port 0: the proxy reports the port it was given (its first listener; the admin listener is second).
  const child = spawn(process.execPath, [...REPORT_LISTEN_ARGS, CLI, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: '0',
      LOOPERS_ADMIN_PORT: '0',
      LOOPERS_PRICING_PATH: TEST_PRICING_PATH,
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: REPORT_LISTEN_STDIO,
  })
  children.add(child)
  let output = ''
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-8_000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  void exited.then(() => children.delete(child))
  const [port] = await listenPorts(child, 1, START_TIMEOUT_MS, () => output).catch(async (error: unknown) => {
    child.kill('SIGKILL')
    await exited
    throw error
  })
  const proc: ProxyProcess = {
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => output,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
  }
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`loopers serve exited on start: ${output.trim()}`)
    const healthy = await fetch(`${proc.url}/health`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (healthy) return proc
    if (Date.now() > deadline) {
      await proc.kill()
      throw new Error(`loopers serve did not answer /health within ${START_TIMEOUT_MS} ms: ${output.trim()}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}
