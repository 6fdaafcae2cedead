import { setMaxListeners } from 'node:events'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from './app.js'
import { openStore, type OpenedStore } from './budget/open-store.js'
import type { RedisClient } from './budget/redis/redis-client.js'
import { checkAdminExposure, type Config } from './config.js'
import { createDualServer } from './http/dual-server.js'
import { startIdleRelease } from './idle-release.js'
import { createLogger } from './logger.js'
import { buildAdminApp } from './admin.js'
import { createMetrics } from './metrics.js'
import { createInflight, type Inflight } from './proxy/inflight.js'
import { blankKept, keepShapes } from './proxy/keep-shapes.js'
import { loadPricing } from './pricing/table.js'
import { createUpstreamClient } from './proxy/upstream.js'
import { createAdapters } from './providers/registry.js'

export interface RunningServer {
  app: FastifyInstance
  /** The Redis connection when the store is Redis, else null. */
  redis: RedisClient | null
  /** The bound proxy address, e.g. `http://127.0.0.1:8080`. */
  url: string
  /** The bound admin address. */
  adminUrl: string
  /** Requests in progress; each counts until it has settled. */
  inflight: Inflight
  /**
   * Graceful stop: refuses new requests, lets in-flight requests and streams finish for up to
   * `graceMs` (default from config), then cuts the rest like a budget cutoff, settles every
   * reservation, and closes the store. Idempotent.
   */
  close(graceMs?: number): Promise<void>
}

/**
 * Starts the proxy on `config.listen` with the store config selects (Redis, else the embedded SQLite
 * file). It starts even when the store is absent or cannot be opened: requests are refused with 503
 * until the store answers, and one log line says what to do.
 */
export async function startServer(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  checkAdminExposure(config)
  const pricing = loadPricing({ filePath: config.pricingPath, azureDeployments: config.azureDeployments })
  const fix = config.redis === null ? 'check LOOPERS_DB (folder writable, disk not full)' : 'start Redis or fix REDIS_URL'
  let opened: OpenedStore | null = null
  const where = (): string => opened?.description ?? 'budget store'
  opened = await openStore(config, {
    sessionTtlSeconds: config.sessionTtlSeconds,
    housekeeping: true,
    onStatus: (status, err) => {
      if (status === 'ready') logger.info({ store: where() }, 'budget store connected; serving')
      else
        logger.error(
          { store: where(), reason: err?.message },
          `budget store unreachable: every request is refused with 503 until it answers; ${fix}`,
        )
    },
  })
  const budgetStore = opened
  const metrics = createMetrics({ perKey: config.metricsPerKey })
  const store = metrics.instrumentStore(budgetStore.store)
  const keys = budgetStore.keys
  const inflight = createInflight()
  const shutdown = new AbortController()
  // Every in-flight request listens for shutdown; thousands at once are expected, not a leak.
  setMaxListeners(0, shutdown.signal)
  let stopping = false
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
    metrics,
    inflight,
    shutdown: shutdown.signal,
    serverFactory: (handler) => {
      // A stream may be silent as long as its upstream may be; past that the upstream side has given up too.
      dual = createDualServer(handler, { streamIdleTimeoutMs: config.upstream.timeoutMs + 60_000 })
      return dual
    },
  })
  const admin = buildAdminApp({ logger, store, keys, metrics, token: config.admin.token, isStopping: () => stopping })
  await budgetStore.ready(STARTUP_STORE_WAIT_MS)
  await Promise.all([app.ready(), admin.ready()])
  // Everything is loaded and no request can arrive yet: the first release costs no request its pause.
  keepShapes(config.idleReleaseMs > 0, inflight)
  const idleRelease = startIdleRelease({
    idleMs: config.idleReleaseMs,
    rounds: IDLE_RELEASE_ROUNDS,
    lullCollectBytes: LULL_COLLECT_BYTES,
    atStart: true,
    beforeRelease: blankKept,
    activity: () => ({ begun: inflight.begun, inflight: inflight.count }),
    onRelease: ({ after, ms, rssBefore, rssAfter }) =>
      logger.debug({ after, ms: Math.round(ms), rssBeforeMiB: mib(rssBefore), rssAfterMiB: mib(rssAfter) }, 'memory returned to the OS'),
  })
  let url: string
  let adminUrl: string
  try {
    url = await app.listen({ host: config.listen.host, port: config.listen.port })
    adminUrl = await admin.listen({ host: config.admin.host, port: config.admin.port })
  } catch (error) {
    idleRelease.stop()
    keepShapes(false)
    await app.close()
    await upstream.close()
    await budgetStore.close()
    throw error
  }
  logger.info({ url, admin: adminUrl, store: budgetStore.description }, `loopers listening on ${url}, budget store: ${budgetStore.description}`)

  let closed: Promise<void> | null = null
  async function stop(graceMs: number): Promise<void> {
    stopping = true
    idleRelease.stop()
    keepShapes(false)
    const server = dual as ReturnType<typeof createDualServer> | null
    // Stop accepting; idle keep-alive connections close, in-flight ones run on.
    const closing = app.close()
    server?.closeExtraConnections()
    const inflightAtStop = inflight.count
    const deadline = new Promise<'deadline'>((resolve) => setTimeout(() => resolve('deadline'), graceMs).unref())
    if ((await Promise.race([inflight.drained().then(() => 'drained' as const), deadline])) === 'deadline') {
      logger.warn({ inflight: inflight.count }, 'shutdown grace period over: cutting the remaining requests and streams')
      shutdown.abort()
    }
    // Every request settles before its handler returns, so this waits for all settlements.
    await inflight.drained()
    // Let the last responses flush before connections that are still open are destroyed.
    server?.closeIdleConnections()
    const flushed = await Promise.race([closing.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 1_000).unref())])
    if (!flushed) server?.closeAllConnections()
    await closing
    await admin.close()
    await upstream.close()
    await budgetStore.close()
    logger.info({ inflightAtStop }, 'loopers stopped; every reservation settled')
  }
  return {
    app,
    redis: budgetStore.redis,
    url,
    adminUrl,
    inflight,
    close(graceMs = config.shutdownGraceMs) {
      closed ??= stop(graceMs)
      return closed
    },
  }
}

/** Stops gracefully on SIGTERM and SIGINT, then exits; a second signal exits at once. */
export function stopOnSignals(running: RunningServer, logger: Logger): void {
  let signalled = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) process.exit(1)
    signalled = true
    logger.info({ signal }, 'stopping: finishing in-flight requests')
    // Buffered log lines are written out before the process ends.
    const exit = (code: number) => logger.flush(() => process.exit(code))
    running.close().then(
      () => exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed')
        exit(1)
      },
    )
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}

const mib = (bytes: number): number => Math.round(bytes / 2 ** 20)

// Give the store a moment at start-up so the first requests are not refused while it connects.
const STARTUP_STORE_WAIT_MS = 2_000

/**
 * Releases per quiet period, a second apart: enough full collections for V8 to drop the bytecode and baseline code
 * of what ran only at start-up or before the lull (the launcher's `--flush-baseline-code` lets baseline code go
 * too), and a last one to give back the code space that freed. Optimized code stays.
 */
const IDLE_RELEASE_ROUNDS = 4

/**
 * Old-generation growth that makes the release a lull after traffic a full collection: ~20,000-28,000 of the bench's
 * small requests (~1.2-1.7 KiB of each reaches the old generation at 1,000 req/s: bench/gc-promote.mjs,
 * bench/thread-work.mjs). V8 starts its own once ~50 MiB more than the last one kept is held (its limit's floor is the
 * launcher's 128 MiB; the first came ~45,000 requests after a warm-up's), so a burst of up to ~12,000 more requests
 * before the next lull still meets none. Each such collection in a quiet period throws away the optimized code that
 * embedded objects only the last requests held (0-23 functions, recompiled in the next burst; V8's own under load
 * throws none): at 12 MiB with a 64 MiB floor, a lull before about every other run of 5,000 requests had one
 * (bench/thread-work.mjs --close-late).
 */
const LULL_COLLECT_BYTES = 32 * 2 ** 20
