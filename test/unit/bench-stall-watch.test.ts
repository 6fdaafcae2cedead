import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AddressInfo } from 'node:net'
import { PerformanceObserver } from 'node:perf_hooks'
import { collectGarbage } from '../../bench/collect.mjs'
import { createFakeUpstream } from '../../bench/fake-upstream.mjs'
import { slowestRequests } from '../../bench/load.mjs'
import { figures } from '../../bench/report.mjs'
import { gcPausesIn, parseRedisStalls, pileUpCauses, readRedisStalls, REDIS_LATENCY_FLAG_MS, resetRedisStalls, WAIT_FLAG_MS, watchRedis, watchRun } from '../../bench/pile-up.mjs'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 12: a latency run's stall (a 32 ms p99 in one trial of five) is lined up with what every process serving it
// did then: the side's collections, Redis's and the fake upstream's core waits and Redis's own latency events.

const GC_RECORD = join(import.meta.dirname, '../../bench/gc-record.mjs')

describe('the slowest requests of a run', () => {
  it('are the slowest answered, slowest first, with when each was due from the run start', () => {
    const latencies = [3, 40, 2, 35, 5, 38]
    const sentAt = [1000, 1002, 1004, 1006, 1008, 1010]
    expect(slowestRequests(latencies, sentAt, 1000, 3)).toEqual([
      { atMs: 2, ms: 40 },
      { atMs: 10, ms: 38 },
      { atMs: 6, ms: 35 },
    ])
    expect(slowestRequests([], [], 0, 3)).toEqual([])
  })
})

describe('collection pauses in a run', () => {
  let dir: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bench-gc-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('counts the pauses that began within the run, naming each mark-compact with its time into the run', () => {
    const file = join(dir, 'side.gc')
    const lines = [
      { at: 999, ms: 30, kind: 4 }, // before the run
      { at: 1000, ms: 2, kind: 1 },
      { at: 3500.4, ms: 32.5, kind: 4 },
      { at: 4000, ms: 1.5, kind: 8 },
      { at: 6001, ms: 40, kind: 4 }, // after it
    ]
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\nnot a record\n{"at":2000}\n`)
    expect(gcPausesIn(file, 1000, 6000)).toEqual({ count: 3, longestMs: 32.5, marks: [{ atMs: 2500, ms: 32.5 }] })
    expect(gcPausesIn(join(dir, 'none-yet.gc'), 1000, 6000)).toEqual({ count: 0, longestMs: 0, marks: [] })
    expect(gcPausesIn(null, 1000, 6000)).toBeNull()
  })

  it('bench/gc-record.mjs records a full collection of the process it is loaded into, at the epoch time it began', () => {
    const file = join(dir, 'child.gc')
    const before = Date.now()
    // A heap of ~40 MB of small objects: a forced full collection of it pauses well over 1 ms. The observer is told
    // after the collection, in a later turn of the loop: the child lives on a little for it.
    const script = 'const keep = Array.from({ length: 400000 }, (_, i) => ({ i, s: String(i) })); globalThis.gc(); globalThis.gc(); setTimeout(() => keep.length, 100)'
    const child = spawnSync(process.execPath, ['--expose-gc', '--import', GC_RECORD, '-e', script], { env: { ...process.env, LOOPERS_BENCH_GC_FILE: file }, encoding: 'utf8' })
    expect(child.status).toBe(0)
    const after = Date.now()
    const records = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { at: number; ms: number; kind: number })
    const marks = records.filter((r) => r.kind === 4)
    expect(marks.length).toBeGreaterThanOrEqual(1)
    for (const r of records) {
      expect(r.ms).toBeGreaterThanOrEqual(1)
      expect(r.at).toBeGreaterThanOrEqual(before)
      expect(r.at).toBeLessThanOrEqual(after)
    }
    expect(gcPausesIn(file, before, after)?.marks.length).toBe(marks.length)
  })
})

describe('the processes every side shares', () => {
  it('watches the core waits of the processes it is given beside the side', async () => {
    const watch = watchRun(process.pid, { also: { redis: process.pid, upstream: null } })
    const until = performance.now() + 40
    while (performance.now() < until) Math.sqrt(Math.random())
    await new Promise((resolve) => setTimeout(resolve, 30))
    const seen = watch.stop()
    expect(seen.alsoWaitMaxMs.redis).toBeGreaterThanOrEqual(0)
    expect(seen.alsoWaitMaxMs.upstream).toBeNull()
    expect(watchRun(process.pid).stop().alsoWaitMaxMs).toEqual({})
  })

  it.each([
    [{ redisWaitMaxMs: WAIT_FLAG_MS }, ['Redis core wait']],
    [{ upstreamWaitMaxMs: WAIT_FLAG_MS }, ['upstream core wait']],
    [{ redisLatencyMaxMs: REDIS_LATENCY_FLAG_MS }, ['Redis latency']],
    [{ redisWaitMaxMs: WAIT_FLAG_MS - 0.01, upstreamWaitMaxMs: WAIT_FLAG_MS - 0.01, redisLatencyMaxMs: REDIS_LATENCY_FLAG_MS - 1 }, []],
    [{ redisWaitMaxMs: null, upstreamWaitMaxMs: null, redisLatencyMaxMs: null }, []],
    [{ mainWaitMaxMs: 12, redisWaitMaxMs: 30, redisLatencyMaxMs: 32 }, ['core wait', 'Redis core wait', 'Redis latency']],
  ])('%o → %o', (stats, causes) => {
    expect(pileUpCauses({ mainWaitMaxMs: null, generatorLateMaxMs: null, ...stats })).toEqual(causes)
  })
})

describe("Redis's own stalls", () => {
  let redis: TestRedis
  let client: Redis
  beforeAll(async () => {
    redis = await startRedis()
    client = new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 })
  })
  afterAll(async () => {
    client?.disconnect()
    await redis?.stop()
  })

  it('reads the latency events and slow commands since the last reset', async () => {
    await watchRedis(client)
    expect((await readRedisStalls(client)).latencyMaxMs).toBe(0)
    // A script that holds Redis ~20 ms or more: every client's command waits behind it.
    await client.eval('local i = 0 while i < 4000000 do i = i + 1 end return i', 0)
    const stalls = await readRedisStalls(client)
    expect(stalls.latencyMaxMs).toBeGreaterThanOrEqual(REDIS_LATENCY_FLAG_MS)
    expect(stalls.events.map((e) => e.event)).toContain('command')
    expect(stalls.slowest[0]?.command.toLowerCase()).toBe('eval')
    expect(stalls.slowest[0]?.usec).toBeGreaterThanOrEqual(REDIS_LATENCY_FLAG_MS * 1000)
    await resetRedisStalls(client)
    expect(await readRedisStalls(client)).toEqual({ latencyMaxMs: 0, events: [], slowest: [] })
  })

  it('parses LATENCY LATEST and SLOWLOG GET rows', () => {
    expect(parseRedisStalls([['command', 1, 3, 31], ['expire-cycle', 1, 2, 2]], [[7, 1, 31000, ['EVALSHA', 'abc']]])).toEqual({
      latencyMaxMs: 31,
      events: [
        { event: 'command', maxMs: 31 },
        { event: 'expire-cycle', maxMs: 2 },
      ],
      slowest: [{ usec: 31000, command: 'EVALSHA' }],
    })
  })
})

describe('the bench processes start each run collected', () => {
  /** The kinds of the collections this process ran while `fn` ran (and the observer was told of them). */
  async function kindsDuring(fn: () => Promise<unknown> | unknown): Promise<number[]> {
    const kinds: number[] = []
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) kinds.push((entry as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0)
    })
    observer.observe({ entryTypes: ['gc'] })
    await fn()
    await new Promise((resolve) => setTimeout(resolve, 50))
    for (const entry of observer.takeRecords()) kinds.push((entry as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0)
    observer.disconnect()
    return kinds
  }

  it('collectGarbage runs a mark-compact of the calling process', async () => {
    let ms = -1
    expect(await kindsDuring(() => (ms = collectGarbage()))).toContain(4)
    expect(ms).toBeGreaterThan(0)
  })

  it("the fake upstream's POST /__collect runs one in the fake's process and answers its milliseconds", async () => {
    const { server } = createFakeUpstream()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as AddressInfo
      let answer: unknown = null
      const kinds = await kindsDuring(async () => {
        answer = await (await fetch(`http://127.0.0.1:${port}/__collect`, { method: 'POST' })).json()
      })
      expect(kinds).toContain(4)
      expect((answer as { ms: number }).ms).toBeGreaterThan(0)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('the latency report', () => {
  const side = (p99: number, gc: { count: number; longestMs: number; marks: { atMs: number; ms: number }[] }, pileUp: string[] = []) => ({
    latencyMs: { p50: 1, p90: 1, p99, max: p99 },
    non2xx: 0,
    transportErrors: 0,
    connects: 0,
    achievedRate: 500,
    proxyCpuUsPerRequest: 300,
    foreignOnProxyCore: 0,
    stalls: { openAtStart: 64, upstreamConnects: 0, mainWaitMaxMs: 1, mainWaitMs: 5, generatorLateMaxMs: 1, generatorGcs: 0, generatorGcLongestMs: 0, gc, upstreamGc: gc, redisWaitMaxMs: 2, upstreamWaitMaxMs: 3, redis: { latencyMaxMs: 4, events: [], slowest: [] }, pileUp },
  })
  const calm: { count: number; longestMs: number; marks: { atMs: number; ms: number }[] } = { count: 3, longestMs: 2, marks: [] }
  const trial = (proxiedP99: number, gc = calm, pileUp: string[] = []) => ({
    direct: side(1, calm),
    proxied: side(proxiedP99, gc, pileUp),
    floor: side(3, calm),
    added: { p50: 0.5, p90: 1, p99: proxiedP99 - 1, max: proxiedP99 - 1 },
    floorAdded: { p50: 0.5, p90: 1, p99: 2, max: 2 },
  })
  const marked = { count: 4, longestMs: 32, marks: [{ atMs: 2500, ms: 32 }] }
  const results = { latency: { byRate: { 500: [trial(3), trial(3), trial(3), trial(3), trial(34, marked)] } } }
  const rows = figures(results).filter((r) => r.scenario.includes('500 req/s'))

  it("shows the proxy's own longest pause per trial with each mark-compact's trial and second, and judges that trial still", () => {
    const gc = rows.find((r) => r.metric.startsWith("proxy's longest collection pause"))
    expect(gc?.max).toBe(32)
    expect(gc?.note).toContain('trial 5: 32.0 ms at 2.50 s')
    expect(rows.find((r) => r.metric === "added latency p99 ÷ floor's")?.n).toBe(5)
    // Its own collection is no pile-up: nothing is shown without it.
    expect(rows.some((r) => r.metric.includes('without a pile-up'))).toBe(false)
  })

  it("shows Redis's and the fake's core waits, Redis's own events beside them", () => {
    expect(rows.find((r) => r.metric.startsWith("Redis's longest core wait"))?.median).toBe(2)
    expect(rows.find((r) => r.metric.startsWith("Redis's longest core wait"))?.note).toContain('4.00, 4.00')
    expect(rows.find((r) => r.metric.startsWith("fake upstream's longest core wait"))?.median).toBe(3)
  })
})
