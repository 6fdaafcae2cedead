import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore } from '../../src/budget/open-store.js'
import type { RedisClient } from '../../src/budget/redis/redis-client.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import { loadConfig } from '../../src/config.js'
import { createLogger } from '../../src/logger.js'
import { startServer, type RunningServer } from '../../src/server.js'

/** Test prices: 1 USD per 1M tokens, so one token costs exactly one micro-USD. */
export const TEST_PRICING_PATH = fileURLToPath(new URL('../fixtures/pricing/test-prices.json', import.meta.url))

export interface TestProxy {
  url: string
  server: RunningServer
  admin: KeyAdmin
  /** Every log line the proxy wrote, parsed. */
  logs: Array<Record<string, unknown>>
  /** Raw log text, to check nothing secret was logged. */
  logText(): string
  /** Requests the proxy is still handling (a request counts until it has settled and logged). */
  inflight(): number
  close(): Promise<void>
}

/**
 * Starts the real proxy on a free loopback port with the given environment on top of test defaults.
 * With neither REDIS_URL nor LOOPERS_DB in `env` it runs on the embedded store in a fresh temporary file.
 */
export async function startProxy(env: Record<string, string>, options: { waitForStore?: boolean } = {}): Promise<TestProxy> {
  const ownDir = env.REDIS_URL === undefined && env.LOOPERS_DB === undefined ? mkdtempSync(join(tmpdir(), 'loopers-db-')) : null
  const storeEnv = ownDir === null ? {} : { LOOPERS_DB: join(ownDir, 'loopers.db') }
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', LOOPERS_ADMIN_PORT: '0', LOOPERS_PRICING_PATH: TEST_PRICING_PATH, LOG_LEVEL: 'info', ...storeEnv, ...env })
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'))
      done()
    },
  })
  const server = await startServer(config, createLogger(config.logLevel, sink))
  // The CLI's view: its own connection to the same store.
  const adminStore = await openStore({ ...config, redis: config.redis === null ? null : { ...config.redis, clusterNodes: null, commandTimeoutMs: 2000 } })
  if (options.waitForStore !== false && !(await adminStore.ready(5000))) throw new Error('the budget store did not become ready')
  const admin = adminStore.keys
  return {
    url: server.url,
    server,
    admin,
    get logs() {
      return lines.join('').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>)
    },
    logText: () => lines.join(''),
    inflight: () => server.inflight.count,
    async close() {
      await server.close(0)
      adminStore.redis?.disconnect()
      await adminStore.close()
      if (ownDir !== null) rmSync(ownDir, { recursive: true, force: true })
    },
  }
}

/**
 * How long a test waits, by default, for something the proxy does after answering (a settlement, its
 * summary line). A settle may first wait for an exact count: the counting worker starts on first use and
 * a count gives up after 5 s (src/tokens/worker.ts), which a loaded machine reaches while the worker boots.
 * A wait of exactly 5 s raced that bound (CI: "timed out waiting for summary line").
 */
export const SETTLE_WAIT_MS = 15_000

/** Polls `check` until it returns true or `timeoutMs` passes; throws with `what` on timeout. */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = SETTLE_WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Resolves once a fail-closed client (no offline queue) has connected. */
export async function waitReady(client: RedisClient): Promise<void> {
  if (client.status === 'ready') return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis did not become ready')), 5000)
    client.once('ready', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}
