import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from './app.js'
import { createKeyAdmin } from './budget/admin.js'
import { createRedisClient, type RedisClient } from './budget/redis-client.js'
import { createBudgetStore } from './budget/store.js'
import type { Config } from './config.js'
import { createDualServer } from './http/dual-server.js'
import { createLogger } from './logger.js'
import { loadPricing } from './pricing/table.js'
import { createUpstreamClient } from './proxy/upstream.js'
import { createAdapters } from './providers/registry.js'

export interface RunningServer {
  app: FastifyInstance
  redis: RedisClient
  /** The bound address, e.g. `http://127.0.0.1:8080`. */
  url: string
  /** Stops accepting, ends open connections, closes Redis and upstream pools. */
  close(): Promise<void>
}

/**
 * Starts the proxy on `config.listen`. It starts even when Redis is absent: requests are refused
 * with 503 until the store answers, and one log line says what to do.
 */
export async function startServer(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const pricing = loadPricing({ filePath: config.pricingPath })
  const redis = createRedisClient({
    url: config.redis.url,
    clusterNodes: config.redis.clusterNodes,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    onStatus: (status, err) => {
      if (status === 'ready') logger.info({ store: redactRedisUrl(config.redis.url) }, 'budget store connected; serving')
      else
        logger.error(
          { store: redactRedisUrl(config.redis.url), reason: err?.message },
          'budget store unreachable: every request is refused with 503 until it answers; start Redis or fix REDIS_URL',
        )
    },
  })
  const store = createBudgetStore(redis, { sessionTtlSeconds: config.sessionTtlSeconds })
  const keys = createKeyAdmin(redis)
  const upstream = createUpstreamClient({ connectTimeoutMs: config.upstream.connectTimeoutMs, timeoutMs: config.upstream.timeoutMs })
  let dual: ReturnType<typeof createDualServer> | null = null
  const app = buildApp({
    config,
    logger,
    store,
    keys,
    pricing,
    adapters: createAdapters(config),
    upstream,
    serverFactory: (handler) => {
      dual = createDualServer(handler)
      return dual
    },
  })
  await waitForStore(redis, STARTUP_STORE_WAIT_MS)
  const url = await app.listen({ host: config.listen.host, port: config.listen.port })
  logger.info({ url }, 'loopers listening')
  return {
    app,
    redis,
    url,
    async close() {
      const closing = app.close()
      // h2c sessions and silent sockets are not tracked by the HTTP/1 server and would keep `close` waiting.
      ;(dual as ReturnType<typeof createDualServer> | null)?.closeExtraConnections()
      await closing
      await upstream.close()
      redis.disconnect()
    },
  }
}

// Give Redis a moment at start-up so the first requests are not refused while it connects.
const STARTUP_STORE_WAIT_MS = 2_000

/** Resolves when Redis is ready or `ms` have passed; the proxy serves (fail-closed) either way. */
function waitForStore(redis: RedisClient, ms: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer)
      redis.off('ready', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    redis.once('ready', done)
  })
}

/** The Redis URL without its password, for logs. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'redis (unparseable URL)'
  }
}
