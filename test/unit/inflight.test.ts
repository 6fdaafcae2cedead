import { describe, expect, it } from 'vitest'
import { createInflight } from '../../src/proxy/inflight.js'

/** Whether `promise` has settled once pending microtasks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  void promise.then(() => (done = true))
  await new Promise((resolve) => setImmediate(resolve))
  return done
}

describe('requests in flight', () => {
  it('counts requests begun and in progress', () => {
    const inflight = createInflight()
    inflight.begin()
    inflight.begin()
    inflight.end()
    expect({ count: inflight.count, begun: inflight.begun }).toEqual({ count: 1, begun: 2 })
    inflight.end()
    expect({ count: inflight.count, begun: inflight.begun }).toEqual({ count: 0, begun: 2 })
  })

  it('drains at once when nothing is in flight', async () => {
    expect(await settled(createInflight().drained())).toBe(true)
  })

  it('drains every waiter when the last request ends, not before', async () => {
    const inflight = createInflight()
    inflight.begin()
    inflight.begin()
    const first = inflight.drained()
    const second = inflight.drained()
    inflight.end()
    expect(await settled(first)).toBe(false)
    inflight.end()
    expect([await settled(first), await settled(second)]).toEqual([true, true])
  })

  it('drains waiters of a later busy spell after requests that ended alone', async () => {
    const inflight = createInflight()
    for (let i = 0; i < 3; i++) {
      inflight.begin()
      inflight.end()
    }
    inflight.begin()
    const waiting = inflight.drained()
    expect(await settled(waiting)).toBe(false)
    inflight.end()
    expect(await settled(waiting)).toBe(true)
  })
})
