import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { startIdleRelease, type IdleRelease } from '../../src/idle-release.js'

/**
 * The release a lull after traffic is a full collection once the old generation has grown `lullCollectBytes` since
 * the last full one, so V8's own does not come among the next burst's requests (issue 12: mark-compacts inside
 * measured 1,000 req/s runs); below that, the scavenge as before.
 */
describe('idle release: a full collection in the lull once the old generation has grown', () => {
  const MIB = 2 ** 20
  let release: IdleRelease | null = null
  const traffic = { begun: 0, inflight: 0 }
  let oldBytes = 0
  let log: string[] = []
  let keptByReducing = 20 * MIB
  const burst = (grownBytes: number): void => {
    traffic.begun++
    oldBytes += grownBytes
  }
  const start = (lullCollectBytes: number | undefined): void => {
    release = startIdleRelease({
      idleMs: 30_000,
      lullMs: 1_000,
      ...(lullCollectBytes === undefined ? {} : { lullCollectBytes }),
      atStart: true,
      activity: () => ({ ...traffic }),
      oldGeneration: () => oldBytes,
      collect: () => {
        log.push('reducing')
        oldBytes = keptByReducing
      },
      lullCollect: () => {
        log.push('full')
        oldBytes = 20 * MIB
      },
      scavenge: () => void log.push('scavenge'),
    })
  }

  beforeEach(() => {
    vi.useFakeTimers()
    traffic.begun = 0
    traffic.inflight = 0
    oldBytes = 40 * MIB
    keptByReducing = 20 * MIB
    log = []
  })
  afterEach(() => {
    release?.stop()
    release = null
    vi.useRealTimers()
  })

  it('scavenges after a burst that grew the old generation less, collects in full after one that grew it as much', async () => {
    start(12 * MIB)
    expect(log).toEqual(['reducing']) // start-up: old generation 20 MiB after it
    burst(11 * MIB)
    await vi.advanceTimersByTimeAsync(2_000)
    expect(log).toEqual(['reducing', 'scavenge'])
    burst(1 * MIB) // 12 MiB over what the last full collection kept, counted across the two bursts
    await vi.advanceTimersByTimeAsync(2_000)
    expect(log).toEqual(['reducing', 'scavenge', 'full'])
    burst(11 * MIB) // measured from what that one kept
    await vi.advanceTimersByTimeAsync(2_000)
    expect(log).toEqual(['reducing', 'scavenge', 'full', 'scavenge'])
  })

  it('never collects among traffic: a request in flight or begun since the last check puts it off', async () => {
    start(12 * MIB)
    burst(30 * MIB)
    traffic.inflight = 1
    await vi.advanceTimersByTimeAsync(10_000)
    expect(log).toEqual(['reducing'])
    traffic.inflight = 0
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(700)
      burst(0)
    }
    expect(log).toEqual(['reducing'])
    await vi.advanceTimersByTimeAsync(1_600)
    expect(log).toEqual(['reducing', 'full'])
  })

  it('counts growth from what the full release of a whole quiet period kept', async () => {
    start(12 * MIB)
    burst(30 * MIB)
    await vi.advanceTimersByTimeAsync(2_000)
    expect(log).toEqual(['reducing', 'full'])
    keptByReducing = 8 * MIB
    await vi.advanceTimersByTimeAsync(30_000)
    expect(log).toEqual(['reducing', 'full', 'reducing'])
    burst(11 * MIB) // 19 MiB: 11 over the 8 the last one kept
    await vi.advanceTimersByTimeAsync(2_000)
    expect(log).toEqual(['reducing', 'full', 'reducing', 'scavenge'])
    burst(1 * MIB)
    await vi.advanceTimersByTimeAsync(2_000)
    expect(log).toEqual(['reducing', 'full', 'reducing', 'scavenge', 'full'])
  })

  it.each([0, undefined])('with lullCollectBytes %s (0 is the default) only scavenges in a lull, however much the old generation grew', async (bytes) => {
    start(bytes)
    burst(500 * MIB)
    await vi.advanceTimersByTimeAsync(2_000)
    expect(log).toEqual(['reducing', 'scavenge'])
  })
})
