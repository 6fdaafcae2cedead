/**
 * Reading a key's periods on either layout (lua/reserve.lua): a period current in the key's string (curKey) is read
 * there, any other from its hash (periodKey). Admin reads only, never the request path; Redis faults are thrown as
 * they come.
 */
import type { RedisClient } from './redis-client.js'
import { curKey, periodKey } from './redis-keys.js'
import { WINDOW_NAMES, type WindowName } from '../types.js'

/** What one period holds (requests: the minute's admitted requests, 0 for the other windows). */
export interface PeriodCounts {
  spentMicros: number
  heldMicros: number
  requests: number
}

/** The string layout's fields: spent and held of each window, the minute's requests, then the five period ids. */
const CUR_FIELDS = 16

/** The counts of `hash`'s period `periodId` of each window of `wanted`, in their order; zeros for one never written. */
export async function readPeriods(redis: RedisClient, hash: string, wanted: readonly { window: WindowName; periodId: string }[]): Promise<PeriodCounts[]> {
  const cur = await redis.get(curKey(hash))
  const parts = cur === null ? [] : cur.split(' ')
  const string = parts.length === CUR_FIELDS ? parts : null
  return Promise.all(
    wanted.map(async ({ window, periodId }): Promise<PeriodCounts> => {
      const i = WINDOW_NAMES.indexOf(window)
      if (string !== null && string[11 + i] === periodId) {
        return { spentMicros: Number(string[2 * i]), heldMicros: Number(string[2 * i + 1]), requests: i === 0 ? Number(string[10]) : 0 }
      }
      const key = periodKey(hash, window, periodId)
      // A tombstone ('cur') names a period current in the string: not this one, so one the string since left.
      if ((await redis.type(key)) !== 'hash') return { spentMicros: 0, heldMicros: 0, requests: 0 }
      const [spent, held, requests] = await redis.hmget(key, 'spent', 'held', 'requests')
      return { spentMicros: Number(spent ?? 0), heldMicros: Number(held ?? 0), requests: Number(requests ?? 0) }
    }),
  )
}
