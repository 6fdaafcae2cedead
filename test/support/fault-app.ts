/**
 * The proxy built in-process from `buildApp` with the same dependencies `startServer` wires, except
 * that the budget store, key admin and pipeline read a hand-driven clock (server.ts takes none).
 */
import { Writable } from 'node:stream'
import { buildApp } from '../../src/app.js'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import { loadConfig } from '../../src/config.js'
import { createLogger } from '../../src/logger.js'
import { createMetrics } from '../../src/metrics.js'
import { loadPricing } from '../../src/pricing/table.js'
import { createInflight } from '../../src/proxy/inflight.js'
import { createUpstreamClient } from '../../src/proxy/upstream.js'
import { createAdapters } from '../../src/providers/registry.js'
import type { Clock } from './budget-fixture.js'
import { TEST_PRICING_PATH, waitReady } from './proxy.js'

export interface ClockedProxy {
  url: string
  /** Key admin on the same clock: `status` reads the periods current at `clock.now()`. */
  admin: KeyAdmin
  /** A key admin whose status reads the periods current at `iso`. */
  adminAt(iso: string): KeyAdmin
  logs: Array<Record<string, unknown>>
  close(): Promise<void>
}

export async function startClockedProxy(env: Record<string, string>, clock: Clock): Promise<ClockedProxy> {
  const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', LOOPERS_PRICING_PATH: TEST_PRICING_PATH, LOG_LEVEL: 'info', ...env })
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'))
      done()
    },
  })
  const logger = createLogger(config.logLevel, sink)
  if (config.redis === null) throw new Error('startClockedProxy runs on Redis: pass REDIS_URL')
  const redis = createRedisClient({ url: config.redis.url, clusterNodes: null, commandTimeoutMs: config.redis.commandTimeoutMs })
  await waitReady(redis)
  const metrics = createMetrics({ perKey: false })
  const store = metrics.instrumentStore(createBudgetStore(redis, { now: clock.now, sessionTtlSeconds: config.sessionTtlSeconds }))
  const upstream = createUpstreamClient({ connectTimeoutMs: config.upstream.connectTimeoutMs, timeoutMs: config.upstream.timeoutMs })
  const shutdown = new AbortController()
  const app = buildApp({
    config,
    logger,
    store,
    keys: createKeyAdmin(redis, { now: clock.now }),
    pricing: loadPricing({ filePath: config.pricingPath }),
    adapters: createAdapters(config),
    upstream,
    metrics,
    inflight: createInflight(),
    shutdown: shutdown.signal,
    now: clock.now,
  })
  const url = await app.listen({ host: config.listen.host, port: config.listen.port })
  return {
    url,
    admin: createKeyAdmin(redis, { now: clock.now }),
    adminAt: (iso) => createKeyAdmin(redis, { now: () => Date.parse(iso) }),
    get logs() {
      return lines.join('').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>)
    },
    async close() {
      shutdown.abort()
      await app.close()
      await upstream.close()
      redis.disconnect()
    },
  }
}
