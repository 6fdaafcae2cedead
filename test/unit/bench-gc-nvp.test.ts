import { describe, expect, it } from 'vitest'
import { carriedOver, envPairs, joinWaitMs, medianOf, parseNvp, pauseStats } from '../../bench/gc-nvp.mjs'

// Issue 12: bench/scavenge-nvp.mjs reads each scavenge of the open loop from V8's --trace-gc-nvp lines and splits its
// pause into the main thread's own phases and its wait for V8's workers; a field read wrong would name the wrong cause.

const LINE =
  '[19640:0x35055000:0]       27 ms: pause=5.6 mutator=1.9 gc=s reduce_memory=0 time_to_safepoint=0.00 scavenge=5.55 ' +
  'scavenge.free_remembered_set=0.05 scavenge.roots=0.10 scavenge.parallel=1.40 scavenge.sweep_array_buffers=0.01 ' +
  'background.scavenge.parallel=4.25 promoted=100120 new_space_survived=177696 promotion_ratio=2.4% new_space_capacity=16777216'

describe('gc nvp', () => {
  it('reads every name=value pair of a trace line, numbers as numbers and percentages without their sign', () => {
    const fields = parseNvp(LINE)
    expect(fields).toMatchObject({ pause: 5.6, gc: 's', scavenge: 5.55, 'scavenge.parallel': 1.4, 'background.scavenge.parallel': 4.25, promoted: 100_120, new_space_survived: 177_696, promotion_ratio: 2.4, new_space_capacity: 16_777_216 })
  })

  it('reads no other line', () => {
    expect(parseNvp('{"level":40,"msg":"pause=3"}')).toBeNull()
    expect(parseNvp('')).toBeNull()
  })

  it("counts as join wait the main thread's scavenge time its own phases leave, not the workers' time", () => {
    const fields = parseNvp(LINE)!
    expect(joinWaitMs(fields)).toBeCloseTo(5.55 - (0.05 + 0.1 + 1.4 + 0.01), 6)
    expect(joinWaitMs({ scavenge: 1, 'scavenge.parallel': 1.2 })).toBe(0)
    expect(joinWaitMs({ gc: 'mc', pause: 30 })).toBe(0)
  })

  it('gives nearest-rank quantiles, the longest pause and the count at or over the threshold', () => {
    const pauses = Array.from({ length: 100 }, (_, i) => (i + 1) / 10)
    expect(pauseStats(pauses)).toEqual({ n: 100, p50: 5, p99: 9.9, max: 10, long: 91 })
    expect(pauseStats([3, 1, 2])).toEqual({ n: 3, p50: 2, p99: 3, max: 3, long: 3 })
    expect(pauseStats([])).toEqual({ n: 0, p50: 0, p99: 0, max: 0, long: 0 })
  })
})

describe('gc nvp: bytes a scavenge', () => {
  it('takes the nearest-rank median of a field, a missing or non-numeric field as 0', () => {
    const scavenges = [{ promoted: 10 }, { promoted: 30 }, { promoted: 20 }, { promoted: 9000 }, {}]
    expect(medianOf(scavenges, (s) => s.promoted)).toBe(20)
    expect(medianOf([{ promoted: 'x' }, { promoted: 4 }, { promoted: 8 }], (s) => s.promoted)).toBe(4)
    expect(medianOf([], (s: { promoted?: number }) => s.promoted)).toBe(0)
  })

  it("reads the share of one scavenge's survivors promoted by the next, summed over consecutive pairs", () => {
    const run = [
      { new_space_survived: 100, promoted: 999 },
      { new_space_survived: 300, promoted: 80 },
      { new_space_survived: 50, promoted: 60 },
    ]
    // (80 + 60) / (100 + 300): the first scavenge's promoted and the last one's survivors have no partner.
    expect(carriedOver(run)).toBeCloseTo(140 / 400, 9)
    expect(carriedOver([{ new_space_survived: 100, promoted: 5 }])).toBeNull()
    expect(carriedOver([{ new_space_survived: 0, promoted: 0 }, { new_space_survived: 0, promoted: 7 }])).toBeNull()
  })

  it('reads NAME=VALUE pairs as an environment, a value keeping its own =, and refuses a pair with no name', () => {
    expect(envPairs('LOOPERS_IDLE_RELEASE_MS=0,NODE_OPTIONS=--max-semi-space-size=8')).toEqual({ LOOPERS_IDLE_RELEASE_MS: '0', NODE_OPTIONS: '--max-semi-space-size=8' })
    expect(envPairs('')).toEqual({})
    expect(envPairs('A=')).toEqual({ A: '' })
    expect(() => envPairs('A=1,oops')).toThrow(/NAME=VALUE/)
    expect(() => envPairs('=1')).toThrow(/NAME=VALUE/)
  })
})
