import { describe, expect, it } from 'vitest'
import type { RedisClient } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'

// The Redis store gives its once-a-minute paths V8's feedback when it is made (so the first minute's turn is no new
// path for optimized code), and that warm-up sends Redis nothing: a store is made without a round trip.

describe('redis store: made without a round trip', () => {
  it('sends no command while it is made, its warm-up included', () => {
    const sent: string[] = []
    const redis = new Proxy({}, {
      get: (_target, name) => (...args: unknown[]) => {
        sent.push(`${String(name)} ${args.map(String).join(' ')}`)
        return Promise.resolve(null)
      },
    }) as unknown as RedisClient
    createBudgetStore(redis)
    createBudgetStore(redis, { now: () => Date.parse('2027-03-03T10:00:01.000Z') })
    expect(sent).toEqual([])
  })
})
