import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { startIdleRelease, type IdleRelease } from '../../src/idle-release.js'

/** The short release: one scavenge a lull after traffic, before the full release, never among traffic. */
describe('idle release: the short release after a lull', () => {
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
  let scavenges = 0
  let after: string[] = []
  const start = (options: { idleMs?: number; lullMs?: number; atStart?: boolean; scavenge?: () => void } = {}): void => {
    release = startIdleRelease({
      idleMs: options.idleMs ?? 10_000,
      lullMs: options.lullMs ?? 1_000,
      atStart: options.atStart ?? true,
      activity: () => ({ ...traffic }),
      collect: () => void collections++,
      scavenge: options.scavenge ?? (() => void scavenges++),
      onRelease: (r) => void after.push(r.after),
    })
  }

  beforeEach(() => {
    vi.useFakeTimers()
    traffic.begun = 0
    traffic.inflight = 0
    collections = 0
    scavenges = 0
    after = []
  })
  afterEach(() => {
    release?.stop()
    release = null
    vi.useRealTimers()
  })

  it('scavenges once a lull after traffic, then releases in full once the whole quiet period has passed', async () => {
    start()
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(5_000)
    expect(scavenges).toBe(0) // the release at start-up left nothing for it
    begin()
    await vi.advanceTimersByTimeAsync(200)
    end()
    await vi.advanceTimersByTimeAsync(800) // the check at 5,500 saw the request
    expect(scavenges).toBe(0)
    await vi.advanceTimersByTimeAsync(600) // the check at 6,500: a whole lull since
    expect(scavenges).toBe(1)
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(8_000) // to 14,600: one scavenge a quiet period
    expect(scavenges).toBe(1)
    expect(collections).toBe(1)
    await vi.advanceTimersByTimeAsync(1_000) // the check at 15,500: the whole quiet period
    expect(collections).toBe(2)
    await vi.advanceTimersByTimeAsync(30_000)
    expect(scavenges).toBe(1)
    expect(collections).toBe(2)
    expect(after).toEqual(['start', 'lull', 'idle'])
    begin()
    end()
    await vi.advanceTimersByTimeAsync(2_000)
    expect(scavenges).toBe(2) // a new quiet period, a new scavenge
  })

  it('never scavenges while a request is in flight, nor when one began since the last check', async () => {
    start()
    begin()
    await vi.advanceTimersByTimeAsync(20_000)
    expect(scavenges).toBe(0)
    end()
    // A request every 700 ms: each check sees one begun since the last, never a whole lull.
    for (let i = 0; i < 10; i++) {
      await vi.advanceTimersByTimeAsync(700)
      begin()
      end()
    }
    expect(scavenges).toBe(0)
    await vi.advanceTimersByTimeAsync(1_600)
    expect(scavenges).toBe(1)
    expect(collections).toBe(1)
  })

  it('a request during the lull puts the scavenge off until a whole lull has passed again', async () => {
    start()
    begin()
    end()
    await vi.advanceTimersByTimeAsync(1_000) // the check at 500 saw it; quiet since
    begin()
    end()
    await vi.advanceTimersByTimeAsync(1_000) // the check at 1,500 saw the second; 2,000 is half a lull after it
    expect(scavenges).toBe(0)
    await vi.advanceTimersByTimeAsync(500)
    expect(scavenges).toBe(1)
  })

  it('is off with idleMs 0 (LOOPERS_IDLE_RELEASE_MS=0), with lullMs 0, and with a lull no shorter than idleMs', async () => {
    start({ idleMs: 0 })
    begin()
    end()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(scavenges + collections).toBe(0)
    expect(vi.getTimerCount()).toBe(0)
    release?.stop()

    start({ lullMs: 0 })
    begin()
    end()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(scavenges).toBe(0)
    expect(collections).toBe(2)
    release?.stop()

    start({ idleMs: 1_000, lullMs: 2_000 })
    begin()
    end()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(scavenges).toBe(0)
    expect(collections).toBe(4)
  })

  it('where the scavenge is not to be had, stops trying and still releases in full', async () => {
    let calls = 0
    start({
      scavenge: () => {
        calls++
        throw new Error('no gc here')
      },
    })
    for (let i = 0; i < 3; i++) {
      begin()
      end()
      await vi.advanceTimersByTimeAsync(12_000)
    }
    expect(calls).toBe(1)
    expect(collections).toBe(4)
  })
})
