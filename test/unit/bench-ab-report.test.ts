import { describe, expect, it } from 'vitest'
import { type AbTrial, abReportLines, median, mergeRuns, ratioMedian, ratioRange } from '../../bench/ab-report.mjs'

// Issue 12: bench/ab.mjs decides A/B verdicts; a trial in which a side served nothing must be reported, not crash
// the report or pass as a CPU figure.

const trial = (us: number, p50 = 2, p99 = 6): AbTrial => ({ us, rps: 1000, p50, p99, errors: 0, served: 4000 })
const empty = (errors: number): AbTrial => ({ us: null, rps: 0, p50: null, p99: null, errors, served: 0 })

describe('the A/B report', () => {
  it('takes the lower middle of an even count and drops nulls', () => {
    expect(median([3, 1, 2, 4])).toBe(2)
    expect(median([null, 5, null])).toBe(5)
    expect(median([null])).toBeNull()
  })

  it('names a trial in which a side served nothing and leaves it out of every median and ratio', () => {
    const lines = abReportLines({
      floor: [trial(200), trial(200), trial(200)],
      a: [trial(300), trial(300), trial(300)],
      b: [trial(240, 2, 6), empty(4000), trial(260, 2, 6)],
    })
    const b = lines.find((l) => l.startsWith('b:'))
    expect(b).toContain('CPU/request median 240 µs (240–260)')
    expect(b).toContain('÷ floor 1.20 (1.20–1.30)')
    expect(b).toContain('errors 4000; served nothing in trial 2 (4000 errors), left out')
    expect(lines.find((l) => l.startsWith('a:'))).not.toContain('served nothing')
    // The two trials' ratios 0.800 and 0.867: their geometric mean, the reciprocal of a ÷ b's.
    expect(lines).toContain('b ÷ a CPU/request: median 0.833 (0.800–0.867)')
    expect(lines).toContain('b ÷ a latency p99: median 1.000 (1.000–1.000)')
  })

  it('reports a side that served nothing in any trial without a figure', () => {
    const lines = abReportLines({ floor: [trial(200)], a: [trial(300)], b: [empty(12)] })
    expect(lines.find((l) => l.startsWith('b:'))).toBe('b: CPU/request median —, ÷ floor —, rate ÷ floor 0.00, latency p50 — p99 — ms (medians), errors 12; served nothing in trial 1 (12 errors), left out')
    expect(lines).toContain('b ÷ a CPU/request: median —')
  })

  it('leaves an empty trial out of the thread groups too', () => {
    const withGroups = (t: AbTrial, main: number): AbTrial => ({ ...t, groups: { main } })
    const lines = abReportLines({
      floor: [withGroups(trial(200), 150), withGroups(trial(200), 150)],
      a: [withGroups(trial(300), 240), withGroups(trial(300), 240)],
      b: [withGroups(trial(270), 210), withGroups(empty(7), 0)],
    })
    expect(lines).toContain('main µs/request: floor 150.0 (150.0–150.0) | a 240.0 (240.0–240.0) ÷ floor 1.60 | b 210.0 (210.0–210.0) ÷ floor 1.40')
  })
})

describe('the median of an A/B ratio', () => {
  it('reads the reciprocal with the sides swapped, for an even count too', () => {
    const bOverA = [0.94, 1.02, 0.97, 1.05, 0.99, 1.01]
    const aOverB = bOverA.map((r) => 1 / r)
    expect(ratioMedian(bOverA)).toBeCloseTo(Math.sqrt(0.99 * 1.01), 12)
    expect((ratioMedian(bOverA) ?? 0) * (ratioMedian(aOverB) ?? 0)).toBeCloseTo(1, 12)
    expect(ratioMedian([1.1, null, 0.9, 1.0])).toBe(1.0)
    expect(ratioMedian([null])).toBeNull()
    expect(ratioRange([0.9, 1.1], 3)).toBe('0.995 (0.900–1.100)')
    expect(ratioRange([null], 3)).toBe('—')
  })
})

describe('runs merged into one', () => {
  it('sums requests, errors and time, and takes percentiles over every request of both', () => {
    const first = { ok: 4, non2xx: 1, transportErrors: 0, elapsedMs: 1000, latencies: [1, 2, 3, 4] }
    const second = { ok: 6, non2xx: 0, transportErrors: 2, elapsedMs: 1000, latencies: [5, 6, 7, 8, 9, 10] }
    const merged = mergeRuns([first, second])
    expect(merged).toMatchObject({ ok: 10, non2xx: 1, transportErrors: 2, elapsedMs: 2000, achievedRate: 5 })
    expect(merged.latencyMs.p50).toBe(5)
    expect(merged.latencyMs.p99).toBe(10)
    expect(merged.latencyMs.count).toBe(10)
  })
})
