import { describe, expect, it } from 'vitest'
import type { Logger } from 'pino'
import type { BudgetStore, Reservation } from '../../src/budget/types.js'
import { createSettlement } from '../../src/proxy/settlement.js'
import { createSummary } from '../../src/proxy/summary.js'

// Every settlement attempt releases its key's hold queue, whether the store answers, rejects or throws; a failed
// one is retried (not once shutdown came), and one that fails for good is logged, never thrown at the caller.
const reservation = { keyHash: 'k'.repeat(64), requestId: 'r', reservedMicros: 10, bookedKeys: [] } as unknown as Reservation

function settlementWith(settle: BudgetStore['settle'], { shuttingDown = true } = {}) {
  const order: string[] = []
  const errors: unknown[] = []
  const logger = { error: (fields: unknown) => errors.push(fields) } as unknown as Logger
  const shutdown = new AbortController()
  if (shuttingDown) shutdown.abort()
  const settle$ = createSettlement({ store: { settle }, logger, shutdown: shutdown.signal, released: (key) => order.push(`released ${key.slice(0, 1)}`) })
  return { settle: settle$, order, errors }
}

describe('a settlement', () => {
  it('releases the hold queue once the store answers, before its caller resumes', async () => {
    const calls: unknown[] = []
    const s = settlementWith(async (r, micros) => {
      calls.push([r, micros])
      return { chargedMicros: 10, alreadySettled: false }
    })
    await s.settle(reservation, 10, createSummary())
    s.order.push('resumed')
    expect(calls).toEqual([[reservation, 10]])
    expect(s.order).toEqual(['released k', 'resumed'])
    expect(s.errors).toHaveLength(0)
  })

  it('when the store rejects: the queue released, the failure logged (shutdown: no retry), the caller not failed', async () => {
    const s = settlementWith(async () => {
      throw new Error('store down')
    })
    const summary = createSummary()
    summary.key = 'abcd1234'
    await expect(s.settle(reservation, 10, summary)).resolves.toBeUndefined()
    expect(s.order).toEqual(['released k'])
    expect(s.errors).toEqual([expect.objectContaining({ key: 'abcd1234', err: expect.objectContaining({ message: 'store down' }) })])
  })

  it('when the store throws instead of rejecting: a promise all the same, and the queue released', async () => {
    const s = settlementWith(() => {
      throw new RangeError('bad micros')
    })
    const settled = s.settle(reservation, 10, createSummary())
    expect(settled).toBeInstanceOf(Promise)
    await settled
    expect(s.order).toEqual(['released k'])
    expect(s.errors).toHaveLength(1)
  })

  it('retries a failed attempt after a pause, releasing after each', async () => {
    let calls = 0
    const s = settlementWith(
      async () => {
        calls++
        if (calls === 1) throw new Error('timed out')
        return { chargedMicros: 10, alreadySettled: false }
      },
      { shuttingDown: false },
    )
    await s.settle(reservation, 10, createSummary())
    expect(calls).toBe(2)
    expect(s.order).toEqual(['released k', 'released k'])
    expect(s.errors).toHaveLength(0)
  })

  it('a first attempt that finds the request settled is logged as a fault; a retry that finds it is not', async () => {
    const first = settlementWith(async () => ({ chargedMicros: 7, alreadySettled: true }))
    const summary = createSummary()
    summary.key = 'abcd1234'
    await first.settle(reservation, 10, summary)
    expect(first.order).toEqual(['released k'])
    expect(first.errors).toEqual([expect.objectContaining({ key: 'abcd1234', requestId: 'r', chargedMicros: 7, notBookedMicros: 10 })])

    let calls = 0
    const retried = settlementWith(
      async () => {
        calls++
        if (calls === 1) throw new Error('timed out')
        return { chargedMicros: 10, alreadySettled: true }
      },
      { shuttingDown: false },
    )
    await retried.settle(reservation, 10, createSummary())
    expect(calls).toBe(2)
    expect(retried.errors).toHaveLength(0)
  })
})

// A quiet period's full collection keeps a function's optimized code only while one function made by its expression
// lives: a reaction made per settlement was compiled again after each quiet period (bench/thread-work.mjs --keep-log).
describe("a settlement's reactions", () => {
  it('are no function made per settlement: the store promise is handed bound functions only', async () => {
    const handed: unknown[] = []
    const answer = { chargedMicros: 10, alreadySettled: false }
    const s = settlementWith(() => {
      const promise = Promise.resolve(answer)
      const then = promise.then
      // This promise's own `then`: records what the settlement hands it.
      promise.then = function (this: Promise<typeof answer>, ...callbacks: unknown[]) {
        handed.push(...callbacks)
        return Reflect.apply(then, this, callbacks) as Promise<never>
      } as typeof then
      return promise
    })
    await s.settle(reservation, 10, createSummary())
    await s.settle(reservation, 10, createSummary())
    expect(handed).toHaveLength(4)
    // A bound function's source is native; a closure made in the settlement would show its own.
    const made = handed.filter((fn) => typeof fn !== 'function' || !Function.prototype.toString.call(fn).includes('[native code]')).map(String)
    expect(made).toEqual([])
    expect(s.order).toEqual(['released k', 'released k'])
  })
})
