import type { Config } from '../config.js'
import type { KeyAdmin } from '../budget/types.js'
import { createRedisClient } from '../budget/redis/redis-client.js'
import { createKeyAdmin } from '../budget/redis/admin.js'
import { StoreUnavailableError } from '../errors.js'
import { CliError, storeUnreachable } from './errors.js'

/** How long the CLI waits for the budget store before giving up; the client has no offline queue, so it must be ready first. */
export const CONNECT_TIMEOUT_MS = 3_000
/** How long a polite QUIT may take before the connection is simply dropped. */
const QUIT_TIMEOUT_MS = 500

type RedisClient = ReturnType<typeof createRedisClient>

/**
 * Connects to the store named by `config.redis`, runs `work` with a KeyAdmin, and always closes the connection.
 * Rejects with a CliError (store unreachable, exit 1) when the store does not answer within CONNECT_TIMEOUT_MS.
 */
export async function withKeyAdmin<T>(config: Config, work: (admin: KeyAdmin) => Promise<T>): Promise<T> {
  const where = describeStore(config)
  let settle: ((err?: Error) => void) | null = null
  const ready = new Promise<void>((resolve, reject) => {
    settle = (err) => (err === undefined ? resolve() : reject(err))
  })
  ready.catch(() => {}) // observed by waitReady; never an unhandled rejection
  const client: RedisClient = createRedisClient({
    url: config.redis.url,
    clusterNodes: config.redis.clusterNodes,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    // The first connection failure is final for a one-shot command: fail fast instead of retrying.
    onStatus: (status, err) => {
      if (status === 'ready') settle?.()
      else if (err !== undefined) settle?.(err)
    },
  })
  try {
    if (client.status !== 'ready') await waitReady(ready, where)
    return await work(createKeyAdmin(client))
  } catch (err) {
    if (err instanceof StoreUnavailableError || (!(err instanceof CliError) && client.status !== 'ready')) {
      throw storeUnreachable(where, reasonOf(err), err)
    }
    throw err
  } finally {
    settle = null
    await close(client)
  }
}

async function waitReady(ready: Promise<void>, where: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(storeUnreachable(where, `no answer within ${CONNECT_TIMEOUT_MS / 1000} s`)),
      CONNECT_TIMEOUT_MS,
    )
  })
  try {
    await Promise.race([ready, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** QUIT when connected (waits for pending replies), else drop the socket; never throws, never hangs. */
async function close(client: RedisClient): Promise<void> {
  if (client.status !== 'ready') {
    client.disconnect()
    return
  }
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, QUIT_TIMEOUT_MS)
  })
  try {
    await Promise.race([client.quit().then(() => undefined), timeout])
  } catch {
    // The connection is going away either way.
  } finally {
    clearTimeout(timer)
    client.disconnect()
  }
}

/** The store's address for messages, with any password masked. */
export function describeStore(config: Config): string {
  if (config.redis.clusterNodes !== null) return `cluster ${config.redis.clusterNodes.join(',')}`
  try {
    const url = new URL(config.redis.url)
    if (url.password !== '') url.password = '***'
    return url.toString().replace(/\/$/, '')
  } catch {
    return 'REDIS_URL'
  }
}

/** The root cause's message on one line (StoreUnavailableError wraps the Redis error). */
function reasonOf(err: unknown): string {
  const root = err instanceof StoreUnavailableError && err.cause instanceof Error ? err.cause : err
  const message = root instanceof Error ? root.message : String(root)
  // Keep it one line: ioredis aggregates sometimes carry newlines.
  return message.split('\n')[0]?.trim() || 'unknown error'
}
