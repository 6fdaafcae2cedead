import { describe, expect, it } from 'vitest'
import { releasingOnSettle } from '../../src/proxy/admission.js'
import type { BudgetStore, Reservation } from '../../src/budget/types.js'

// Every settlement releases its key's hold queue, whether the store answers, rejects or throws.
const reservation = { keyHash: 'k'.repeat(64), requestId: 'r', reservedMicros: 10, bookedKeys: [] } as unknown as Reservation

function storeSettling(settle: BudgetStore['settle']): BudgetStore {
  return { settle } as unknown as BudgetStore
}

describe('a settling store releases the hold queue', () => {
  it('once the settlement ends, before its caller resumes', async () => {
    const order: string[] = []
    const store = releasingOnSettle(storeSettling(async () => ({ chargedMicros: 10, alreadySettled: false })), {
      released: (key) => order.push(`released ${key.slice(0, 1)}`),
    })
    const result = await store.settle(reservation, 10)
    order.push('resumed')
    expect(result).toEqual({ chargedMicros: 10, alreadySettled: false })
    expect(order).toEqual(['released k', 'resumed'])
  })

  it('when the store rejects: the caller gets the rejection', async () => {
    const released: string[] = []
    const store = releasingOnSettle(storeSettling(async () => { throw new Error('store down') }), { released: (k) => released.push(k) })
    await expect(store.settle(reservation, 10)).rejects.toThrow('store down')
    expect(released).toHaveLength(1)
  })

  it('when the store throws instead of rejecting: a rejected promise, as an async settle gives, and the queue released', async () => {
    const released: string[] = []
    const store = releasingOnSettle(storeSettling(() => { throw new RangeError('bad micros') }), { released: (k) => released.push(k) })
    const settled = store.settle(reservation, 10)
    expect(settled).toBeInstanceOf(Promise)
    await expect(settled).rejects.toThrow('bad micros')
    expect(released).toHaveLength(1)
  })
})
