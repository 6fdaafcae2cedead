import { describe, expect, it } from 'vitest'
import { addCauses, causesOf, createTally } from '../../bench/tail-count.mjs'

// Issue 12: bench/tail-causes.mjs reads the proxy's added p99 by what its slowest requests overlapped, against every
// request's base rate; a cause counted for a request it never touched would read as the tail's cause.

describe('tail causes', () => {
  const request = { due: 1_000, ms: 5, lateMs: 0 }

  it('counts an event that overlaps the request from its due time to its answer, at either edge', () => {
    expect(causesOf(request, { gc: [{ from: 990, to: 1_000 }] }, false)).toEqual(new Set(['gc']))
    expect(causesOf(request, { wait: [{ from: 1_005, to: 1_010 }] }, false)).toEqual(new Set(['wait']))
    expect(causesOf(request, { redis: [{ from: 1_002, to: 1_003 }], fake: [{ from: 900, to: 2_000 }] }, false)).toEqual(new Set(['redis', 'fake']))
  })

  it('never counts an event wholly before the request was due or after it was answered', () => {
    expect(causesOf(request, { gc: [{ from: 990, to: 999.9 }], workers: [{ from: 1_005.1, to: 1_010 }] }, false)).toEqual(new Set())
  })

  it('counts a late send as the generator, and a run after a quiet-period mark-compact as the lull', () => {
    expect(causesOf({ ...request, lateMs: 1 }, {}, false)).toEqual(new Set(['gen']))
    expect(causesOf({ ...request, lateMs: 0.9 }, {}, false)).toEqual(new Set())
    expect(causesOf(request, {}, true)).toEqual(new Set(['lull']))
  })

  it('tallies each cause a request overlapped, its first cause once, and a request with none', () => {
    const tally = createTally()
    addCauses(tally, new Set(['fake', 'gc', 'wait']))
    addCauses(tally, new Set(['wait']))
    addCauses(tally, new Set())
    expect(tally.n).toBe(3)
    expect(tally.none).toBe(1)
    expect(tally.share).toMatchObject({ gc: 1, wait: 2, fake: 1, redis: 0 })
    expect(tally.first).toMatchObject({ gc: 1, wait: 1, fake: 0 })
  })
})
