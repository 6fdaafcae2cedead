import { afterEach, expect, it, vi } from 'vitest'
import * as idleRelease from '../../src/idle-release.js'
import { startProxy, type TestProxy } from '../support/proxy.js'

vi.mock('../../src/idle-release.js', async (importOriginal) => {
  const actual = await importOriginal<typeof idleRelease>()
  return { ...actual, startIdleRelease: vi.fn(actual.startIdleRelease) }
})

type Options = Parameters<typeof idleRelease.startIdleRelease>[0]

/**
 * The server's lull after traffic is a full collection once the old generation has grown 32 MiB since the last full
 * one, a scavenge below that (README, LOOPERS_IDLE_RELEASE_MS): the options `startServer` gives the idle release,
 * replayed with a stubbed heap reading and stubbed collections.
 */
let proxy: TestProxy | null = null
let release: idleRelease.IdleRelease | null = null
afterEach(async () => {
  release?.stop()
  release = null
  vi.useRealTimers()
  await proxy?.close()
  proxy = null
})

it("makes the lull's release a full collection once the old generation grew 32 MiB, a scavenge below", async () => {
  const started = vi.mocked(idleRelease.startIdleRelease)
  started.mockClear()
  proxy = await startProxy({ LOOPERS_IDLE_RELEASE_MS: '30000' })
  expect(started).toHaveBeenCalledTimes(1)
  const options = started.mock.calls[0]?.[0] as Options
  await proxy.close()
  proxy = null

  vi.useFakeTimers()
  const MIB = 2 ** 20
  const traffic = { begun: 0, inflight: 0 }
  let oldBytes = 50 * MIB
  const log: string[] = []
  release = idleRelease.startIdleRelease({
    ...options,
    activity: () => ({ ...traffic }),
    oldGeneration: () => oldBytes,
    collect: () => void log.push('reducing'),
    lullCollect: () => void log.push('full'),
    scavenge: () => void log.push('scavenge'),
    beforeRelease: undefined,
    onRelease: undefined,
  })
  const lull = async (grownBytes: number): Promise<void> => {
    traffic.begun++
    oldBytes += grownBytes
    await vi.advanceTimersByTimeAsync(2_000)
  }
  expect(log).toEqual(['reducing']) // at start-up, before listening
  await lull(32 * MIB - 1)
  expect(log).toEqual(['reducing', 'scavenge'])
  await lull(1)
  expect(log).toEqual(['reducing', 'scavenge', 'full'])
})
