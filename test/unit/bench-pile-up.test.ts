import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { createPool, openLoop, primeConnections } from '../../bench/load.mjs'
import { flaggedTrials, GENERATOR_LAG_FLAG_MS, longestWaitMs, parseSchedstat, pileUpCauses, RELATIVE_FLAG, trialPileUps, WAIT_FLAG_MS, watchRun } from '../../bench/pile-up.mjs'
import { figures } from '../../bench/report.mjs'

// Issue 12: the latency series' pile-up flags and connection accounting decide what the report shows beside the
// p99 ratio to the floor; the ratio itself stays over every trial.

describe('schedstat', () => {
  it('reads run, wait and slices; anything else is null', () => {
    expect(parseSchedstat('1234567 89012 34\n')).toEqual({ runNs: 1234567, waitNs: 89012, slices: 34 })
    expect(parseSchedstat('')).toBeNull()
    expect(parseSchedstat('12 34')).toBeNull()
    expect(parseSchedstat('12 x 5')).toBeNull()
  })

  it('finds the most waited within any span, never summing waits further apart', () => {
    const samples = (waits: [number, number][]) => {
      let total = 0
      return waits.map(([at, ms]) => ({ at, waitNs: (total += ms * 1e6) }))
    }
    // 1 ms every 10 ms, and 30 ms of wait over 50-80 ms: 37 ms within 0-100 ms.
    const burst = samples([[0, 0], [10, 1], [20, 1], [30, 1], [40, 1], [50, 1], [60, 10], [70, 10], [80, 10], [90, 1], [100, 1], [200, 1]])
    expect(longestWaitMs(burst, 100)).toBeCloseTo(37, 6)
    expect(longestWaitMs(burst, 30)).toBeCloseTo(30, 6)
    // Two waits of 8 ms 150 ms apart are two stalls, not one of 16.
    expect(longestWaitMs(samples([[0, 0], [10, 8], [160, 0], [170, 8]]), 100)).toBeCloseTo(8, 6)
    expect(longestWaitMs(samples([[0, 0]]), 100)).toBe(0)
  })

  it('watches a live thread: its waits are counted, never negative', async () => {
    const watch = watchRun(process.pid)
    const until = performance.now() + 60
    while (performance.now() < until) Math.sqrt(Math.random())
    await new Promise((resolve) => setTimeout(resolve, 40))
    const seen = watch.stop()
    expect(seen.mainWaitMs).not.toBeNull()
    expect(seen.mainWaitMs).toBeGreaterThanOrEqual(0)
    expect(seen.mainWaitMaxMs).toBeGreaterThanOrEqual(0)
    expect(seen.mainWaitMaxMs).toBeLessThanOrEqual(seen.mainWaitMs ?? -1)
    expect(watchRun(null).stop().mainWaitMaxMs).toBeNull()
  })
})

describe('the pile-up rule', () => {
  it.each([
    [{ mainWaitMaxMs: WAIT_FLAG_MS - 0.01, generatorLateMaxMs: GENERATOR_LAG_FLAG_MS - 0.01 }, []],
    [{ mainWaitMaxMs: WAIT_FLAG_MS, generatorLateMaxMs: 0 }, ['core wait']],
    [{ mainWaitMaxMs: 0, generatorLateMaxMs: GENERATOR_LAG_FLAG_MS }, ['generator lag']],
    [{ mainWaitMaxMs: 48, generatorLateMaxMs: 20 }, ['core wait', 'generator lag']],
    [{ mainWaitMaxMs: null, generatorLateMaxMs: null }, []],
  ])('%o → %o', (stats, causes) => {
    expect(pileUpCauses(stats)).toEqual(causes)
  })

  it('flags a measure over its threshold only at RELATIVE_FLAG times the calmest other run or more', () => {
    const stats = { mainWaitMaxMs: 20, generatorLateMaxMs: 12, redisWaitMaxMs: 25, upstreamWaitMaxMs: 30, redisLatencyMaxMs: 11 }
    expect(pileUpCauses(stats)).toEqual(['core wait', 'generator lag', 'Redis core wait', 'upstream core wait', 'Redis latency'])
    // Redis and the fake waited about as long in the other run: no cause; the rest did not happen there.
    expect(pileUpCauses(stats, { mainWaitMaxMs: 20 / RELATIVE_FLAG, generatorLateMaxMs: 0, redisWaitMaxMs: 20, upstreamWaitMaxMs: 28, redisLatencyMaxMs: 0 })).toEqual(['core wait', 'generator lag', 'Redis latency'])
    expect(pileUpCauses(stats, { mainWaitMaxMs: 20 / RELATIVE_FLAG + 0.01, generatorLateMaxMs: null, redisLatencyMaxMs: 6 })).toEqual(['generator lag', 'Redis core wait', 'upstream core wait'])
    // Below the absolute threshold nothing is flagged, however calm the other runs were.
    expect(pileUpCauses({ mainWaitMaxMs: WAIT_FLAG_MS - 0.01, generatorLateMaxMs: 9 }, { mainWaitMaxMs: 0, generatorLateMaxMs: 0 })).toEqual([])
  })

  it("compares each run of a trial with the others' reads of the same threads", () => {
    const shared = (redis: number, upstream: number) => ({ redisWaitMaxMs: redis, upstreamWaitMaxMs: upstream, redisLatencyMaxMs: 0 })
    // Every run saw Redis and the fake wait 20-30 ms (a 2-core host's normal): nothing flagged.
    expect(
      trialPileUps({
        direct: { mainWaitMaxMs: 24, generatorLateMaxMs: 4 },
        proxied: { mainWaitMaxMs: 8, generatorLateMaxMs: 5, ...shared(26, 21) },
        floor: { mainWaitMaxMs: 6, generatorLateMaxMs: 7, ...shared(18, 27) },
      }),
    ).toEqual({ direct: [], proxied: [], floor: [] })
    // The proxied run alone: its main thread (vs the floor's), Redis and the generator. The fake waited less in the
    // direct run (Redis idle): the other runs' fake waits stand only beside each other's.
    expect(
      trialPileUps({
        direct: { mainWaitMaxMs: 12, generatorLateMaxMs: 4 },
        proxied: { mainWaitMaxMs: 30, generatorLateMaxMs: 15, ...shared(60, 25) },
        floor: { mainWaitMaxMs: 6, generatorLateMaxMs: 7, ...shared(18, 27) },
      }),
    ).toEqual({ direct: [], proxied: ['core wait', 'generator lag', 'Redis core wait'], floor: [] })
    expect(
      trialPileUps({
        direct: { mainWaitMaxMs: 12, generatorLateMaxMs: 4 },
        proxied: { mainWaitMaxMs: 8, generatorLateMaxMs: 5, ...shared(20, 60) },
        floor: { mainWaitMaxMs: 6, generatorLateMaxMs: 7, ...shared(18, 27) },
      }),
    ).toEqual({ direct: [], proxied: ['upstream core wait'], floor: [] })
    // The direct run's own core wait (the fake's) against the fake's in the other runs.
    expect(
      trialPileUps({
        direct: { mainWaitMaxMs: 50, generatorLateMaxMs: 4 },
        proxied: { mainWaitMaxMs: 8, generatorLateMaxMs: 5, ...shared(20, 25) },
        floor: { mainWaitMaxMs: 6, generatorLateMaxMs: 7, ...shared(18, 24) },
      }),
    ).toEqual({ direct: ['core wait'], proxied: [], floor: [] })
    // Without a floor the absolute thresholds alone decide what no comparable run read: the proxy's main thread,
    // Redis (the direct run uses none), the fake beside Redis; the direct run's fake wait still stands beside the proxied.
    expect(trialPileUps({ direct: { mainWaitMaxMs: 20, generatorLateMaxMs: 4 }, proxied: { mainWaitMaxMs: 30, generatorLateMaxMs: 5, ...shared(25, 21) } })).toEqual({
      direct: [],
      proxied: ['core wait', 'Redis core wait', 'upstream core wait'],
    })
  })

  it('names each trial with a flagged run, and which side', () => {
    const run = (pileUp: string[]) => ({ stalls: { pileUp } })
    const trials = [
      { direct: run([]), proxied: run([]), floor: run([]) },
      { direct: run([]), proxied: run(['core wait']), floor: run([]) },
      { direct: run(['generator lag']), proxied: run([]), floor: run(['core wait', 'generator lag']) },
      { direct: {}, proxied: {}, floor: {} },
    ]
    expect(flaggedTrials(trials)).toEqual([
      { trial: 2, runs: [{ side: 'proxied', causes: ['core wait'] }] },
      {
        trial: 3,
        runs: [
          { side: 'direct', causes: ['generator lag'] },
          { side: 'floor', causes: ['core wait', 'generator lag'] },
        ],
      },
    ])
  })
})

describe('the latency report', () => {
  const side = (p99: number, pileUp: string[] = []) => ({
    latencyMs: { p50: 1, p90: 1, p99, max: p99 },
    non2xx: 0,
    transportErrors: 0,
    connects: 0,
    achievedRate: 500,
    proxyCpuUsPerRequest: 300,
    foreignOnProxyCore: 0,
    stalls: { openAtStart: 64, upstreamConnects: 0, mainWaitMaxMs: pileUp.length > 0 ? 40 : 1, mainWaitMs: 5, generatorLateMaxMs: 1, generatorGcs: 0, generatorGcLongestMs: 0, pileUp },
  })
  const trial = (proxiedP99: number, floorP99: number, pileUp: string[] = []) => ({
    direct: side(1),
    proxied: side(proxiedP99, pileUp),
    floor: side(floorP99),
    added: { p50: 0.5, p90: 1, p99: proxiedP99 - 1, max: proxiedP99 - 1 },
    floorAdded: { p50: 0.5, p90: 1, p99: floorP99 - 1, max: floorP99 - 1 },
  })
  // Added p99 ratios 1.0, 1.1, 5.0 (flagged), 1.0, 1.1.
  const results = { latency: { byRate: { 500: [trial(3, 3), trial(3.2, 3), trial(11, 3, ['core wait']), trial(3, 3), trial(3.2, 3)] } } }
  const rows = figures(results).filter((r) => r.scenario.includes('500 req/s'))
  const row = (metric: string) => rows.find((r) => r.metric === metric)

  it("judges the p99 ratio on every trial, naming the pile-up beside it", () => {
    const ratio = row("added latency p99 ÷ floor's")
    expect(ratio?.n).toBe(5)
    expect(ratio?.max).toBeCloseTo(5, 6)
    expect(ratio?.median).toBeCloseTo(1.1, 6)
    expect(ratio?.note).toContain('trial 3 (proxied: core wait)')
  })

  it('labels the figure without flagged trials plainly and leaves it unjudged', () => {
    const clean = row("added latency p99 ÷ floor's, trials without a pile-up only")
    expect(clean?.n).toBe(4)
    expect(clean?.max).toBeCloseTo(1.1, 6)
    expect(clean?.target).toBeNull()
    expect(clean?.note).toContain('not the judged figure')
    expect(row('runs flagged as pile-ups (any side)')?.median).toBe(1)
  })

  it('adds no unflagged figure when nothing was flagged', () => {
    const calm = { latency: { byRate: { 500: [trial(3, 3), trial(3.2, 3), trial(3, 3), trial(3, 3), trial(3.2, 3)] } } }
    expect(figures(calm).some((r) => r.metric.includes('without a pile-up'))).toBe(false)
  })
})

describe('connections of a measured run', () => {
  let server: Server | null = null
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve))
    server = null
  })

  it('starts on as many open connections as were primed, and counts only those opened during the run', async () => {
    let accepted = 0
    server = createServer((req, res) => {
      req.resume()
      // Slow enough that a primed burst overlaps and must open one connection per request.
      req.on('end', () => setTimeout(() => res.end('{}'), 20))
    })
    server.on('connection', () => accepted++)
    server.keepAliveTimeout = 10_000
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve))
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const request = { path: '/', headers: { 'content-type': 'application/json' }, body: '{}' }
    const pool = createPool(origin, 64)
    try {
      const primed = await primeConnections({ origin, request, pool, connections: 8 })
      expect(primed).toEqual({ open: 8, opened: 8 })
      expect(accepted).toBe(8)
      // 50/s for 400 ms, 20 ms each: at most 2 in flight, on the primed connections.
      const run = await openLoop({ origin, request, rate: 50, durationMs: 400, pool })
      expect(run.ok).toBe(20)
      expect(run.connects).toBe(0)
      expect(accepted).toBe(8)
      // 16 at once need 8 more.
      const burst = await openLoop({ origin, request, rate: 16_000, durationMs: 1, pool })
      expect(burst.ok).toBe(16)
      expect(burst.connects).toBe(8)
      expect(accepted).toBe(16)
    } finally {
      await pool.close()
    }
  })
})
