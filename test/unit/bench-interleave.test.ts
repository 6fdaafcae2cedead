import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { countedCpuMs, interleave, sliceOrder, summarizeSlices } from '../../bench/interleave.mjs'
import { createPool } from '../../bench/load.mjs'
import { figures } from '../../bench/report.mjs'

// Issue 12: the open loop's CPU per request ÷ the floor's is judged from the two sides interleaved in short slices,
// each side's CPU read over the whole phase, so a drift of the host lands on both alike.

describe('slice order', () => {
  it('alternates mirrored pairs, every side first in half of them', () => {
    expect(sliceOrder(['proxied', 'floor'], 4)).toEqual(['proxied', 'floor', 'floor', 'proxied', 'proxied', 'floor', 'floor', 'proxied'])
    expect(sliceOrder(['a', 'b', 'c'], 2)).toEqual(['a', 'b', 'c', 'c', 'b', 'a'])
  })

  it('alternates plainly when asked, so no side waits two slices in a row', () => {
    expect(sliceOrder(['proxied', 'floor'], 3, 'alternate')).toEqual(['proxied', 'floor', 'proxied', 'floor', 'proxied', 'floor'])
  })
})

describe('interleaved CPU per request', () => {
  const slice = (side: string, ok: number, proxied: number, floor: number) => ({ side, ok, cpuMs: { proxied, floor } })

  it("divides each side's CPU over the whole phase (in the other's slices and between too) by the requests it served", () => {
    const { sides, ratio, pairs } = summarizeSlices(
      [slice('proxied', 500, 150, 2), slice('floor', 500, 1, 100), slice('floor', 400, 3, 100), slice('proxied', 500, 140, 0)],
      { proxied: 9, floor: 4 },
    )
    // proxied: 150 + 1 + 3 + 140 + 9 = 303 ms over 1,000 requests; floor: 2 + 100 + 100 + 0 + 4 = 206 ms over 900.
    expect(sides.proxied).toEqual({ served: 1000, slices: 2, cpuMs: 303, usPerRequest: 303, ownSliceShare: 290 / 303 })
    expect(sides.floor?.served).toBe(900)
    expect(sides.floor?.usPerRequest).toBeCloseTo(206_000 / 900, 9)
    expect(ratio).toBeCloseTo(303 / (206_000 / 900), 9)
    // Pair by pair, each side's own slice alone: 300 ÷ 200, then 280 ÷ 250.
    expect(pairs).toHaveLength(2)
    expect(pairs[0]).toBeCloseTo(1.5, 9)
    expect(pairs[1]).toBeCloseTo(280 / 250, 9)
  })

  it('has no figure for a side that served nothing, and no ratio beside it', () => {
    const { sides, ratio, pairs } = summarizeSlices([slice('proxied', 0, 5, 1), slice('floor', 500, 0, 100)])
    expect(sides.proxied?.usPerRequest).toBeNull()
    expect(ratio).toBeNull()
    expect(pairs).toEqual([null])
  })
})

describe('the CPU an interleaved phase counts', () => {
  // Each slice: its side, requests served, every side's CPU over the slice and over its first TAIL_MS.
  const slice = (side: string, ok: number, cpu: [number, number], tail: [number, number]) => ({
    side,
    ok,
    cpuMs: { proxied: cpu[0], floor: cpu[1] },
    tailCpuMs: { proxied: tail[0], floor: tail[1] },
  })

  it("counts a side's own slices and the start of the other's slice after each, not its idle release further on", () => {
    const slices = [
      slice('proxied', 500, [150, 2], [40, 1]),
      slice('floor', 500, [30, 100], [4, 30]), // the proxy's 30 ms: 4 in the first 250 ms, then a lull's collection
      slice('floor', 500, [1, 100], [0, 30]),
      slice('proxied', 500, [140, 3], [40, 1]),
      slice('proxied', 500, [150, 2], [40, 1]),
      slice('floor', 500, [2, 100], [2, 30]),
    ]
    expect(countedCpuMs(slices)).toEqual({ proxied: 150 + 4 + 140 + 150 + 2, floor: 100 + 100 + 1 + 100 })
    const { sides, ratio, countedRatio } = summarizeSlices(slices)
    expect(sides.proxied?.countedUsPerRequest).toBeCloseTo((446 * 1000) / 1500, 9)
    expect(sides.floor?.countedUsPerRequest).toBeCloseTo((301 * 1000) / 1500, 9)
    expect(countedRatio).toBeCloseTo(446 / 301, 9)
    // The whole phase's figure stays beside it: the lull's collection in it.
    expect(ratio).toBeCloseTo((150 + 30 + 1 + 140 + 150 + 2) / (2 + 100 + 100 + 3 + 2 + 100), 9)
  })

  it('has no counted figure for slices read without a tail', () => {
    const plain = [
      { side: 'proxied', ok: 500, cpuMs: { proxied: 150, floor: 2 } },
      { side: 'floor', ok: 500, cpuMs: { proxied: 1, floor: 100 } },
    ]
    expect(countedCpuMs(plain)).toBeNull()
    expect(summarizeSlices(plain).countedRatio).toBeUndefined()
  })
})

describe('an interleaved phase against live servers', () => {
  const servers: Server[] = []
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))))
  })

  it('serves every slice of every side at its rate and reads CPU of both', async () => {
    const start = async () => {
      const server = createServer((req, res) => {
        req.resume()
        req.on('end', () => res.end('{}'))
      })
      servers.push(server)
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    }
    const request = { path: '/', headers: { 'content-type': 'application/json' }, body: '{}' }
    const urls = { proxied: await start(), floor: await start() }
    const pools = { proxied: createPool(urls.proxied, 8), floor: createPool(urls.floor, 8) }
    try {
      // Both servers live in this process: each side's CPU is this process's whole phase (read a moment apart), so
      // with as many requests served the ratio is 1 but for the reads' own few µs.
      const targets = Object.fromEntries((['proxied', 'floor'] as const).map((side) => [side, { url: urls[side], pid: process.pid, request, pool: pools[side] }]))
      const phase = await interleave({ targets, rate: 200, sliceMs: 100, slices: 4 })
      expect(phase.slices.map((s: { side: string }) => s.side)).toEqual(sliceOrder(['proxied', 'floor'], 4))
      expect(phase.slices.every((s: { ok: number }) => s.ok === 20)).toBe(true)
      expect(phase.sides.proxied?.served).toBe(80)
      expect(phase.sides.floor?.served).toBe(80)
      expect(phase.sides.proxied?.usPerRequest).toBeGreaterThan(0)
      expect(Math.abs((phase.ratio ?? 0) - 1)).toBeLessThan(0.02)
    } finally {
      await Promise.all(Object.values(pools).map((pool) => pool.close()))
    }
  })
})

describe('an interleaved phase with a lead-in', () => {
  const servers: Server[] = []
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))))
  })

  it('serves a slice of each side unmeasured first, and counts only the measured slices', async () => {
    const received = { proxied: 0, floor: 0 }
    const start = async (side: 'proxied' | 'floor') => {
      const server = createServer((req, res) => {
        req.resume()
        req.on('end', () => {
          received[side]++
          res.end('{}')
        })
      })
      servers.push(server)
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    }
    const request = { path: '/', headers: { 'content-type': 'application/json' }, body: '{}' }
    const urls = { proxied: await start('proxied'), floor: await start('floor') }
    const pools = { proxied: createPool(urls.proxied, 8), floor: createPool(urls.floor, 8) }
    try {
      const targets = Object.fromEntries((['proxied', 'floor'] as const).map((side) => [side, { url: urls[side], pid: process.pid, request, pool: pools[side] }]))
      const phase = await interleave({ targets, rate: 200, sliceMs: 100, slices: 2, leadIn: 1 })
      expect(received).toEqual({ proxied: 60, floor: 60 })
      expect(phase.slices).toHaveLength(4)
      expect(phase.sides.proxied?.served).toBe(40)
      expect(phase.sides.floor?.served).toBe(40)
    } finally {
      await Promise.all(Object.values(pools).map((pool) => pool.close()))
    }
  })
})

describe('the latency report with interleaved CPU', () => {
  const side = (us: number) => ({
    latencyMs: { p50: 1, p90: 1, p99: 3, max: 3 },
    non2xx: 0,
    transportErrors: 0,
    connects: 0,
    achievedRate: 1000,
    proxyCpuUsPerRequest: us,
    foreignOnProxyCore: 0,
  })
  const inter = (proxied: number, floor: number) => ({
    rate: 1000,
    sliceMs: 500,
    slicesPerSide: 10,
    sides: { proxied: { usPerRequest: proxied }, floor: { usPerRequest: floor } },
    ratio: proxied / floor,
    pairs: [proxied / floor - 0.05, proxied / floor + 0.05],
  })
  // Own runs read 1.40, 1.00, 1.20; interleaved 1.10, 1.12, 1.08.
  const trial = (p: number, f: number, ip: number, iff: number) => ({
    direct: side(0),
    proxied: side(p),
    floor: side(f),
    added: { p50: 0.5, p90: 1, p99: 2, max: 2 },
    floorAdded: { p50: 0.5, p90: 1, p99: 2, max: 2 },
    interleaved: inter(ip, iff),
  })
  const rows = figures({ latency: { byRate: { 1000: [trial(280, 200, 220, 200), trial(200, 200, 224, 200), trial(240, 200, 216, 200)] } } })
  const row = (metric: string) => rows.find((r) => r.metric === metric)

  it("judges CPU per request ÷ the floor's on the interleaved phase", () => {
    const judged = row("CPU per request ÷ floor's")
    expect(judged?.median).toBeCloseTo(1.1, 9)
    expect(judged?.min).toBeCloseTo(1.08, 9)
    expect(judged?.max).toBeCloseTo(1.12, 9)
    expect(judged?.status).toBe('PASS')
    expect(judged?.note).toContain('interleaved: 10 slices of 500 ms each at 1000 req/s')
    expect(judged?.note).toContain('one slice pair alone read 1.03–1.17')
  })

  it("keeps each side's own run's ratio beside it, unjudged", () => {
    const own = row("CPU per request ÷ floor's, each side's own latency run")
    expect(own?.median).toBeCloseTo(1.2, 9)
    expect(own?.max).toBeCloseTo(1.4, 9)
    expect(own?.target).toBeNull()
    expect(row('proxy CPU per request, interleaved')?.median).toBe(220)
    expect(row('proxy CPU per request, interleaved')?.floor).toBe(200)
  })

  it("judges the counted CPU's ratio where a phase has one, the whole phase's beside it unjudged", () => {
    const counted = (t: ReturnType<typeof trial>, c: number) => ({ ...t, interleaved: { ...t.interleaved, countedRatio: c, sides: { proxied: { usPerRequest: 1, countedUsPerRequest: c * 100 }, floor: { usPerRequest: 1, countedUsPerRequest: 100 } } } })
    const withCounted = figures({ latency: { byRate: { 1000: [counted(trial(280, 200, 220, 200), 1.2), counted(trial(200, 200, 224, 200), 1.3), counted(trial(240, 200, 216, 200), 1.25)] } } })
    const judged = withCounted.find((r) => r.metric === "CPU per request ÷ floor's")
    expect(judged?.median).toBeCloseTo(1.25, 9)
    expect(judged?.status).toBe('MISS')
    const whole = withCounted.find((r) => r.metric === "CPU per request ÷ floor's, over the whole interleaved phase")
    expect(whole?.median).toBeCloseTo(1.1, 9)
    expect(whole?.target).toBeNull()
    expect(withCounted.find((r) => r.metric === 'proxy CPU per request, interleaved')?.median).toBe(125)
  })

  it('names the slices\' order the phase ran in', () => {
    expect(row("CPU per request ÷ floor's")?.note).toContain('each at 1000 req/s, alternating in mirrored pairs (bench/interleave.mjs)')
    const alternating = (t: ReturnType<typeof trial>) => ({ ...t, interleaved: { ...t.interleaved, order: 'alternate', leadIn: 1 } })
    const plain = figures({ latency: { byRate: { 1000: [alternating(trial(280, 200, 220, 200)), alternating(trial(200, 200, 224, 200))] } } })
    expect(plain.find((r) => r.metric === "CPU per request ÷ floor's")?.note).toContain('each at 1000 req/s, alternating after 1 unmeasured slice(s) of each (bench/interleave.mjs)')
  })

  it('judges the own runs when a series has no interleaved phase', () => {
    const { interleaved: _, ...plain } = trial(280, 200, 220, 200)
    const old = figures({ latency: { byRate: { 1000: [plain, plain] } } })
    expect(old.find((r) => r.metric === "CPU per request ÷ floor's")?.median).toBeCloseTo(1.4, 9)
    expect(old.some((r) => r.metric.includes('own latency run'))).toBe(false)
  })
})
