/**
 * `loopers store use-string-periods`: moves every key of a Redis store, and every key created after, to the string
 * layout of its current periods (lua/reserve.lua). A store that held no key when this release created its first one
 * is on it already.
 */
import type { RedisClient } from '../budget/redis/redis-client.js'
import { usageError } from './errors.js'

export const USE_STRING_PERIODS_HELP =
  'Run it once, and only after every proxy and CLI sharing this Redis runs this release: a previous release cannot\n' +
  'use a key once it is moved (its requests on the key fail instead of being admitted), so it must not be rolled back\n' +
  'to afterwards. Each key moves on its next request, with what its current periods hold and every hold in flight.\n' +
  'A store that held no key when this release created its first key is on the string layout already.'

/** Marks the store and every key; the line to print. Rejects on the embedded store, which has no such layout. */
export async function useStringPeriodsCommand(redis: RedisClient | null): Promise<string> {
  if (redis === null) throw usageError('store use-string-periods is for a Redis store (REDIS_URL); the embedded store keeps no such layout')
  const { useStringPeriods } = await import('../budget/redis/admin.js')
  const marked = await useStringPeriods(redis)
  return `${marked} key${marked === 1 ? '' : 's'} moved to the string layout of the current periods; keys created from now on use it too`
}
