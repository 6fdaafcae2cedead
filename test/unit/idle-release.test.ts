import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { startIdleRelease, type IdleRelease } from '../../src/idle-release.js'

/** When the proxy returns a burst's memory: once per quiet period, never while a request is in flight. */
describe('idle release', () => {
  let release: IdleRelease | null = null
  const traffic = { begun: 0, inflight: 0 }
  const begin = (): void => {
    traffic.begun++
    traffic.inflight++
  }
  const end = (): void => {
    traffic.inflight--
  }
  let collections = 0
  const start = (idleMs: number): void => {
    release = startIdleRelease({ idleMs, activity: () => ({ ...traffic }), collect: () => void collections++ })
  }

  beforeEach(() => {
    vi.useFakeTimers()
    traffic.begun = 0
    traffic.inflight = 0
    collections = 0
  })
  afterEach(() => {
    release?.stop()
    release = null
    vi.useRealTimers()
  })

  it('releases once after start-up, then only after traffic and a whole quiet period', async () => {
    start(1_000)
    await vi.advanceTimersByTimeAsync(900)
    expect(collections).toBe(0)
    await vi.advanceTimersByTimeAsync(400)
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(10_000)
    expect(collections).toBe(1) // nothing happened since: nothing to give back
    begin()
    end()
    await vi.advanceTimersByTimeAsync(800)
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(800)
    expect(collections).toBe(2)
  })

  it('calls beforeRelease just before each release, and releases even when it throws', async () => {
    const order: string[] = []
    release = startIdleRelease({
      idleMs: 1_000,
      lullMs: 0,
      atStart: true,
      activity: () => ({ ...traffic }),
      beforeRelease: () => {
        order.push('before')
        throw new Error('fault')
      },
      collect: () => void order.push('collect'),
    })
    expect(order).toEqual(['before', 'collect'])
    begin()
    end()
    await vi.advanceTimersByTimeAsync(1_600)
    expect(order).toEqual(['before', 'collect', 'before', 'collect'])
  })

  it('with atStart, releases once at once, then as without it', async () => {
    const after: string[] = []
    release = startIdleRelease({
      idleMs: 1_000,
      atStart: true,
      activity: () => ({ ...traffic }),
      collect: () => void collections++,
      onRelease: (r) => void after.push(r.after),
    })
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(1_300)
    expect(collections).toBe(2)
    begin()
    end()
    await vi.advanceTimersByTimeAsync(1_600)
    expect(collections).toBe(3)
    expect(after).toEqual(['start', 'idle', 'idle'])
  })

  // V8 drops the code of a function that has not run through six full collections; one release makes two or more.
  it('with rounds, releases that many times per quiet period, roundGapMs apart, and again after traffic', async () => {
    release = startIdleRelease({ idleMs: 1_000, rounds: 4, roundGapMs: 100, activity: () => ({ ...traffic }), collect: () => void collections++ })
    await vi.advanceTimersByTimeAsync(900)
    expect(collections).toBe(0)
    await vi.advanceTimersByTimeAsync(100) // the check at 1,000 ms: the first
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(100) // the rest one gap apart, not all at once
    expect(collections).toBe(2)
    await vi.advanceTimersByTimeAsync(200)
    expect(collections).toBe(4)
    await vi.advanceTimersByTimeAsync(10_000)
    expect(collections).toBe(4) // the quiet period's rounds are spent
    begin()
    await vi.advanceTimersByTimeAsync(250)
    end()
    await vi.advanceTimersByTimeAsync(1_250 + 300)
    expect(collections).toBe(8)
  })

  it('with rounds, a request between two ends the series until a whole quiet period has passed again', async () => {
    release = startIdleRelease({ idleMs: 1_000, rounds: 4, roundGapMs: 100, activity: () => ({ ...traffic }), collect: () => void collections++ })
    await vi.advanceTimersByTimeAsync(1_050)
    expect(collections).toBe(1)
    begin()
    end()
    await vi.advanceTimersByTimeAsync(1_150) // to 2,200: the check at 1,250 saw the request; quiet again since
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(50) // the check at 2,250: a whole quiet period again, a new series
    expect(collections).toBe(2)
    await vi.advanceTimersByTimeAsync(300)
    expect(collections).toBe(5)
    await vi.advanceTimersByTimeAsync(5_000)
    expect(collections).toBe(5)
  })

  it('never releases while a request is in flight, however long it runs', async () => {
    start(1_000)
    begin()
    await vi.advanceTimersByTimeAsync(20_000)
    expect(collections).toBe(0)
    end()
    await vi.advanceTimersByTimeAsync(600)
    expect(collections).toBe(0)
    await vi.advanceTimersByTimeAsync(800)
    expect(collections).toBe(1)
  })

  it('counts a request that began and ended between two checks', async () => {
    start(1_000)
    await vi.advanceTimersByTimeAsync(1_300)
    expect(collections).toBe(1)
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(700)
      begin()
      end()
    }
    // Requests every 700 ms: never a whole quiet second.
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(1_300)
    expect(collections).toBe(2)
  })

  it('does nothing with idleMs 0', async () => {
    start(0)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(collections).toBe(0)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('gives up, without throwing, where the collection is not to be had', async () => {
    let calls = 0
    release = startIdleRelease({
      idleMs: 1_000,
      activity: () => ({ ...traffic }),
      collect: () => {
        calls++
        throw new Error('no gc here')
      },
    })
    await vi.advanceTimersByTimeAsync(1_300)
    begin()
    end()
    await vi.advanceTimersByTimeAsync(5_000)
    expect(calls).toBe(1)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('with atStart, gives up at once where the collection is not to be had', () => {
    let calls = 0
    release = startIdleRelease({
      idleMs: 1_000,
      atStart: true,
      activity: () => ({ ...traffic }),
      collect: () => {
        calls++
        throw new Error('no gc here')
      },
    })
    expect(calls).toBe(1)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('stops checking once stopped', async () => {
    start(1_000)
    release?.stop()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(collections).toBe(0)
  })
})
