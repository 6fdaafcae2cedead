/**
 * Store selection: Redis when config names one (REDIS_URL or REDIS_CLUSTER_NODES), else the embedded
 * SQLite store at config.db.path. Both sit behind the same BudgetStore / KeyAdmin. Only the selected
 * store's modules are loaded (ioredis costs ~6 MB of RSS that the embedded default never needs).
 */
import type { Config } from '../config.js'
import type { RedisClient } from './redis/redis-client.js'
import type { Checkpointer } from './sqlite/checkpointer.js'
import type { BudgetStore, KeyAdmin } from './types.js'

type StoreStatus = 'ready' | 'down'

export interface OpenedStore {
  /** For people: `embedded SQLite at /path` or `Redis at redis://host:6379` (password masked). */
  description: string
  store: BudgetStore
  keys: KeyAdmin
  /** The Redis connection (Redis store only). */
  redis: RedisClient | null
  /** Resolves once the store answers or `ms` have passed; true when it answered. */
  ready(ms: number): Promise<boolean>
  close(): Promise<void>
}

interface OpenStoreOptions {
  sessionTtlSeconds?: number
  /** Called on each transition between answering and not answering. */
  onStatus?: (status: StoreStatus, err?: Error) => void
  /**
   * Background work of a long-running process on the embedded store (the server: yes; a one-shot CLI:
   * no): expired rows deleted on a timer, WAL checkpoints in a worker thread.
   */
  housekeeping?: boolean
}

/** Opens the store `config` selects. Never rejects for an unreachable store: its calls fail closed. */
export async function openStore(config: Config, opts: OpenStoreOptions = {}): Promise<OpenedStore> {
  const ttl = opts.sessionTtlSeconds === undefined ? {} : { sessionTtlSeconds: opts.sessionTtlSeconds }
  if (config.redis === null) {
    const [{ createSqliteKeyAdmin }, { createDb }, { startCheckpointer }, { startHousekeeping, SWEEP_TRANSACTION }, { createSqliteBudgetStore }] = await Promise.all([
      import('./sqlite/admin.js'),
      import('./sqlite/database.js'),
      import('./sqlite/checkpointer.js'),
      import('./sqlite/housekeeping.js'),
      import('./sqlite/store.js'),
    ])
    // The checkpoint worker runs while commits happen (the empty sweeps every 250 ms do not count).
    let checkpointer: Checkpointer | null = null
    const db = createDb(config.db.path, {
      ...(opts.onStatus === undefined ? {} : { onStatus: opts.onStatus }),
      onCommit: (what) => {
        if (what !== SWEEP_TRANSACTION) checkpointer?.wake()
      },
      checkpointing: () => checkpointer?.truncating() === true,
    })
    const store = createSqliteBudgetStore(db, ttl)
    const sweeper = opts.housekeeping === true ? startHousekeeping(db) : null
    // The worker needs the file to exist: it may start once the store has answered. What earlier runs left
    // in the WAL is checkpointed here, once, before the server listens; the worker (a thread with its own
    // V8 heap) then starts with the first commit, so a proxy that has served nothing does not carry it.
    const startBackground = (): void => {
      if (opts.housekeeping !== true || checkpointer !== null) return
      try {
        db.read('startup checkpoint', () => db.statement('PRAGMA wal_checkpoint(PASSIVE)').get())
      } catch {
        // The worker's checkpoints catch up with the first commit.
      }
      db.setAutoCheckpoint(false)
      checkpointer = startCheckpointer(config.db.path, () => db.setAutoCheckpoint(true))
    }
    return {
      description: describeStore(config),
      store,
      keys: createSqliteKeyAdmin(db),
      redis: null,
      ready: async () =>
        store.ping().then(
          () => {
            startBackground()
            return true
          },
          () => false,
        ),
      close: async () => {
        sweeper?.stop()
        await checkpointer?.stop()
        db.close()
      },
    }
  }
  const [{ createKeyAdmin }, { createRedisClient }, { createBudgetStore }] = await Promise.all([
    import('./redis/admin.js'),
    import('./redis/redis-client.js'),
    import('./redis/store.js'),
  ])
  const redis = createRedisClient({
    url: config.redis.url,
    clusterNodes: config.redis.clusterNodes,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    ...(opts.onStatus === undefined ? {} : { onStatus: opts.onStatus }),
  })
  return {
    description: describeStore(config),
    store: createBudgetStore(redis, ttl),
    keys: createKeyAdmin(redis),
    redis,
    ready: (ms) => waitForRedis(redis, ms),
    close: async () => {
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}

/** Resolves true when Redis is ready, false after `ms`. */
function waitForRedis(redis: RedisClient, ms: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true)
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      redis.off('ready', onReady)
      resolve(ok)
    }
    const onReady = (): void => done(true)
    const timer = setTimeout(() => done(false), ms)
    redis.once('ready', onReady)
  })
}

/** The store `config` selects, for people: `embedded SQLite at /path`, `Redis at redis://host:6379` (password masked). */
export function describeStore(config: Config): string {
  if (config.redis === null) return `embedded SQLite at ${config.db.path}`
  if (config.redis.clusterNodes !== null) return `Redis Cluster ${config.redis.clusterNodes.join(',')}`
  try {
    const parsed = new URL(config.redis.url)
    if (parsed.password !== '') parsed.password = '***'
    return `Redis at ${parsed.toString().replace(/\/$/, '')}`
  } catch {
    return 'Redis (unparseable REDIS_URL)'
  }
}
