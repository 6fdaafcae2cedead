import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { HISTORY_DAYS } from '../../src/budget/history.js'
import { TABLE_FIELD, TABLE_VALUE } from '../../src/budget/redis/redis-keys.js'
import { RESERVATION_TTL_SECONDS, SETTLED_RECORD_TTL_SECONDS } from '../../src/budget/validate.js'
import { PERIOD_GRACE_SECONDS } from '../../src/budget/windows.js'

// The reserve and settle scripts hold the store's fixed TTLs as literals (arguments cost Redis time on every call):
// they must be the release's, as the TypeScript constants (which the embedded store uses) have them.

const lua = (name: string): string => readFileSync(new URL(`../../lua/${name}.lua`, import.meta.url), 'utf8')

describe('lua scripts: the store\'s fixed TTLs', () => {
  it('reserve.lua keeps a reservation record RESERVATION_TTL_SECONDS and a period PERIOD_GRACE_SECONDS after it ends', () => {
    const line = lua('reserve').match(/^local recordTtl, periodGrace = '(\d+)', (\d+)$/m)
    expect([Number(line?.[1]), Number(line?.[2])]).toEqual([RESERVATION_TTL_SECONDS, PERIOD_GRACE_SECONDS])
  })

  it('reserve.lua keeps the string layout\'s current periods the longest month and PERIOD_GRACE_SECONDS past a turn', () => {
    const line = lua('reserve').match(/^local curTtl = '(\d+)'$/m)
    expect(Number(line?.[1])).toBe(31 * 86_400 + PERIOD_GRACE_SECONDS)
  })

  it('reserve-batch.lua keeps a reservation record RESERVATION_TTL_SECONDS, as reserve.lua', () => {
    const line = lua('reserve-batch').match(/^local recordTtl = '(\d+)'$/m)
    expect(Number(line?.[1])).toBe(RESERVATION_TTL_SECONDS)
  })

  it('settle.lua keeps a settled record SETTLED_RECORD_TTL_SECONDS and a recreated period PERIOD_GRACE_SECONDS', () => {
    const line = lua('settle').match(/^local settledTtl, periodGraceTtl = '(\d+)', '(\d+)'$/m)
    expect([Number(line?.[1]), Number(line?.[2])]).toEqual([SETTLED_RECORD_TTL_SECONDS, PERIOD_GRACE_SECONDS])
  })

  it('settle-batch.lua keeps a settled record SETTLED_RECORD_TTL_SECONDS and a day\'s spend history HISTORY_DAYS after the day', () => {
    const line = lua('settle-batch').match(/^local settledTtl, historyDays = '(\d+)', (\d+)$/m)
    expect([Number(line?.[1]), Number(line?.[2])]).toEqual([SETTLED_RECORD_TTL_SECONDS, HISTORY_DAYS])
  })

  it('settle.lua keeps a day\'s spend history HISTORY_DAYS after the day', () => {
    const line = lua('settle').match(/^local historyDays = (\d+)$/m)
    expect(Number(line?.[1])).toBe(HISTORY_DAYS)
  })

  it('reserve.lua writes the key record\'s TABLE_FIELD and TABLE_VALUE, past hash-max-listpack-value (64 by default)', () => {
    const line = lua('reserve').match(/^local tableField, tableValue = '([^']*)', '([^']*)'$/m)
    expect([line?.[1], line?.[2]]).toEqual([TABLE_FIELD, TABLE_VALUE])
    expect(TABLE_VALUE.length).toBeGreaterThan(64)
  })
})
