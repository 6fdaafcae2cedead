import type { Config } from '../config.js'
import type { KeyAdmin } from '../budget/types.js'
import type { RedisClient } from '../budget/redis/redis-client.js'
import { describeStore, openStore, type OpenedStore } from '../budget/open-store.js'
import { StoreUnavailableError } from '../errors.js'
import { CliError, storeUnreachable } from './errors.js'

/** How long the CLI waits for the budget store before giving up; the Redis client has no offline queue, so it must be ready first. */
const CONNECT_TIMEOUT_MS = 3_000
/** How long a polite QUIT may take before the connection is simply dropped. */
const QUIT_TIMEOUT_MS = 500

/**
 * Opens the store `config` selects (Redis, else the embedded SQLite file), runs `work` with a KeyAdmin (and the
 * Redis connection, null on the embedded store), and always closes it. Rejects with a CliError (store unreachable, exit 1) when the store does not
 * answer within CONNECT_TIMEOUT_MS or fails on the way.
 */
export async function withKeyAdmin<T>(config: Config, work: (admin: KeyAdmin, redis: RedisClient | null) => Promise<T>): Promise<T> {
  let firstError: Error | undefined
  const opened = await openStore(config, {
    // The first connection failure is final for a one-shot command: fail fast instead of retrying.
    onStatus: (status, err) => {
      if (status === 'down' && err !== undefined) firstError ??= err
    },
  })
  const where = storeAddress(config)
  const check = config.redis === null ? 'LOOPERS_DB' : 'REDIS_URL'
  try {
    if (!(await readyOrFailed(opened, () => firstError))) {
      const reason = firstError === undefined ? `no answer within ${CONNECT_TIMEOUT_MS / 1000} s` : reasonOf(firstError)
      throw storeUnreachable(where, reason, firstError, check)
    }
    return await work(opened.keys, opened.redis)
  } catch (err) {
    if (err instanceof StoreUnavailableError || (!(err instanceof CliError) && !(err instanceof RangeError) && firstError !== undefined)) {
      throw storeUnreachable(where, reasonOf(err), err, check)
    }
    throw err
  } finally {
    await close(opened)
  }
}

/** The line the CLI's human output ends with: which store it worked on. */
export function storeNote(config: Config): string {
  return `budget store: ${describeStore(config)}`
}

/** Waits until the store answers, the first failure is seen, or CONNECT_TIMEOUT_MS pass. */
async function readyOrFailed(opened: OpenedStore, failure: () => Error | undefined): Promise<boolean> {
  const deadline = Date.now() + CONNECT_TIMEOUT_MS
  for (;;) {
    if (await opened.ready(Math.min(100, Math.max(1, deadline - Date.now())))) return true
    if (failure() !== undefined || Date.now() >= deadline) return false
  }
}

/** Closes the store; never throws, never hangs. */
async function close(opened: OpenedStore): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, QUIT_TIMEOUT_MS)
  })
  try {
    await Promise.race([opened.close(), timeout])
  } catch {
    // The connection is going away either way.
  } finally {
    clearTimeout(timer)
    opened.redis?.disconnect()
  }
}

/** The store's address for error messages: the SQLite path, or the Redis URL / cluster nodes with any password masked. */
function storeAddress(config: Config): string {
  if (config.redis === null) return config.db.path
  return describeStore(config).replace(/^Redis (at )?/, '')
}

/** The root cause's message on one line (StoreUnavailableError wraps the Redis or SQLite error). */
function reasonOf(err: unknown): string {
  const root = err instanceof StoreUnavailableError && err.cause instanceof Error ? err.cause : err
  const message = root instanceof Error ? root.message : String(root)
  // Keep it one line: ioredis aggregates sometimes carry newlines.
  return message.split('\n')[0]?.trim() || 'unknown error'
}
