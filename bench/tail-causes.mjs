// What the slowest requests of the latency scenario's open loop overlapped, proxy against floor, by counts: both sides
// carry bench/tail-probe.mjs (2 ms spans of their main thread's core wait and own work, their other threads' CPU, and
// their collection pauses), this load generator samples Redis's and the fake upstream's main-thread core waits every
// 2 ms and records its own collections and each request's late send, and the fake records its collections
// (bench/gc-record.mjs). The sides serve the scenario's warm-up, then `--rounds` open-loop runs each of `--duration` ms
// at `--rate` after `--gap` ms of quiet, alternating which goes first; each run starts on 64 fresh connections after
// the fake and this generator ran a full collection (as bench/run.mjs). For each request at or over its run's p99
// (and p95, and every request as the base rate) it counts which causes overlapped its span from due time to answer:
//   gc       a collection pause of the side ≥ 1 ms          workers  the side's other threads used ≥ 1 ms of CPU
//   wait     the side's main thread waited ≥ 1 ms for a core  own      a 2 ms span with ≥ 1 ms of the side's own work
//   gen      sent ≥ 1 ms late, or a generator pause ≥ 1 ms   redis    Redis's main thread waited ≥ 1 ms for a core
//   fake     the fake's main thread waited ≥ 1 ms, or paused ≥ 1 ms collecting
//   lull     the run followed a mark-compact of the side in the quiet before it (the proxy's lull collection)
// A request counts under every cause it overlapped ("share"), and once under the first in that order ("first");
// "none" had no cause. A cause the tail shares as often as every request ("base") explains nothing.
//   node bench/tail-causes.mjs [--cli=dist/cli.js] [--rate=1000] [--rounds=6] [--duration=5000] [--gap=5000]
//                              [--warm=12000] [--node=FLAG,… (more node flags for the proxy)] [--sides=proxy,floor]
//                              [--json (one line of the counts at the end)]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { performance, PerformanceObserver } from 'node:perf_hooks'
import { closedLoop, createPool, openLoop, primeConnections } from './load.mjs'
import { collectGarbage } from './collect.mjs'
import { parseSchedstat } from './pile-up.mjs'
import { createBenchKey, detectPinning, OTHERS_CORE, pinSelf, ROOT, sleep, startFake, startFloor, startProxy, startRedis } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'
import { addCauses, CAUSES, causesOf, createTally } from './tail-count.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '1000'))
const rounds = Number(arg('rounds', '6'))
const durationMs = Number(arg('duration', '5000'))
const gapMs = Number(arg('gap', '5000'))
const warm = Number(arg('warm', '12000'))
const proxyFlags = arg('node', '').split(',').filter(Boolean)
const only = arg('sides', 'proxy,floor').split(',')
const PROBE = join(ROOT, 'bench/tail-probe.mjs')

const pinning = detectPinning()
if (pinning.used) pinSelf(OTHERS_CORE)
const dir = mkdtempSync(join(os.tmpdir(), 'loopers-tail-causes-'))
const started = []
const watchdog = setTimeout(() => process.exit(1), 30 * 60_000)
const files = { proxy: join(dir, 'proxy.tail'), floor: join(dir, 'floor.tail'), fake: join(dir, 'fake.gc') }
const clientGcs = []
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.duration >= 1) clientGcs.push({ from: performance.timeOrigin + e.startTime, to: performance.timeOrigin + e.startTime + e.duration })
}).observe({ entryTypes: ['gc'] })
const counts = {}
try {
  const redis = await startRedis({ pin: pinning.used, dir })
  started.push(redis)
  const fake = await startFake({ pin: pinning.used, gcFile: files.fake })
  started.push(fake)
  await fake.reset({ completionTokens: 16 })
  process.env.LOOPERS_BENCH_TAIL_FILE = files.floor
  const sides = {}
  if (only.includes('floor')) sides.floor = await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, nodeArgs: ['--import', PROBE] })
  delete process.env.LOOPERS_BENCH_TAIL_FILE
  if (only.includes('proxy')) {
    sides.proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, cliPath, nodeOptions: [...proxyFlags, '--import', PROBE], extraEnv: { LOOPERS_BENCH_TAIL_FILE: files.proxy } })
  }
  started.push(...Object.values(sides))
  const request = requestPair(await createBenchKey(redis.url, 'bench-tail'), ONE_LINE_BODY).proxied
  for (const [name, side] of Object.entries(sides)) {
    const pool = createPool(side.url, 256)
    await closedLoop({ origin: side.url, request, concurrency: 64, durationMs: 60_000, maxRequests: warm, pool })
    await openLoop({ origin: side.url, request, rate, durationMs: 10_000, pool })
    await pool.close()
    process.stdout.write(`${name} warmed\n`)
  }
  const waits = { redis: waitRecorder(redis.pid), fake: waitRecorder(fake.pid) }
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['proxy', 'floor'] : ['floor', 'proxy']
    for (const name of order.filter((n) => sides[n] !== undefined)) {
      const quietFrom = Date.now()
      await sleep(gapMs)
      const pool = createPool(sides[name].url, 256)
      await primeConnections({ origin: sides[name].url, request, pool, connections: 64 })
      await fake.collect()
      collectGarbage()
      const runFrom = Date.now()
      const run = await tracedOpenLoop(pool, request)
      await pool.close()
      const lines = readLines(files[name])
      const lull = lines.some((l) => l.gcKind === 4 && l.from >= quietFrom && l.from < runFrom)
      const events = {
        gc: lines.filter((l) => l.gcMs >= 1),
        workers: lines.filter((l) => l.workersMs >= 1),
        wait: lines.filter((l) => l.waitMs >= 1),
        own: lines.filter((l) => l.ownMs >= 1),
        gen: clientGcs,
        redis: waits.redis.spans(),
        fake: [...waits.fake.spans(), ...readGcs(files.fake)],
      }
      const p = (q) => run.sorted[Math.ceil(q * run.sorted.length) - 1]
      const p95 = p(0.95)
      const p99 = p(0.99)
      const side = (counts[name] ??= { runs: 0, lullRuns: 0, workersMs: 0, gcMs: 0, p99s: [], tail99: createTally(), tail95: createTally(), all: createTally() })
      side.runs++
      if (lull) side.lullRuns++
      side.p99s.push(Number(p99.toFixed(2)))
      const inRun = (l) => l.to >= runFrom && l.from <= runFrom + durationMs + 2_000
      side.workersMs += lines.filter(inRun).reduce((s, l) => s + (l.workersMs ?? 0), 0)
      side.gcMs += lines.filter(inRun).reduce((s, l) => s + (l.gcMs ?? 0), 0)
      for (const q of run.requests) {
        const hit = causesOf(q, events, lull)
        addCauses(side.all, hit)
        if (q.ms >= p95) addCauses(side.tail95, hit)
        if (q.ms >= p99) addCauses(side.tail99, hit)
      }
      process.stdout.write(`round ${r + 1} ${name}: p95 ${p95.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms${lull ? ', after a quiet-period mark-compact' : ''}\n`)
    }
  }
  waits.redis.stop()
  waits.fake.stop()
  report()
} finally {
  clearTimeout(watchdog)
  for (const s of started.splice(0).reverse()) await s.stop().catch(() => undefined)
  rmSync(dir, { recursive: true, force: true })
}
process.exit(0)

function report() {
  const pct = (k, n) => (n === 0 ? '-' : `${((100 * k) / n).toFixed(0)}%`)
  process.stdout.write(`\n${rate} req/s, ${rounds} rounds of ${durationMs} ms after ${gapMs} ms quiet; cause: share of tail requests (first-cause share) — proxy | floor\n`)
  const names = Object.keys(counts)
  process.stdout.write(`${'cause'.padEnd(8)} ${names.map((n) => `${n} ≥p99  ${n} ≥p95  ${n} all`.padEnd(46)).join(' ')}\n`)
  for (const c of [...CAUSES, 'none']) {
    const cell = (t) => (c === 'none' ? `${pct(t.none, t.n)}`.padEnd(14) : `${pct(t.share[c], t.n)} (${pct(t.first[c], t.n)})`.padEnd(14))
    process.stdout.write(`${c.padEnd(8)} ${names.map((n) => `${cell(counts[n].tail99)} ${cell(counts[n].tail95)} ${cell(counts[n].all)}`.padEnd(46)).join(' ')}\n`)
  }
  for (const [n, s] of Object.entries(counts)) {
    process.stdout.write(`${n}: p99s ${s.p99s.join(' ')} ms; tail requests ${s.tail99.n} (≥p95 ${s.tail95.n}); runs after a quiet-period mark-compact ${s.lullRuns}/${s.runs}; other threads' CPU ${s.workersMs.toFixed(0)} ms, pauses ≥0.5 ms ${s.gcMs.toFixed(0)} ms over the runs\n`)
  }
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify({ rate, rounds, flags: proxyFlags, counts })}\n`)
}

/** The open loop of bench/load.mjs, keeping each request's due time (epoch ms), latency and how late it was sent. */
async function tracedOpenLoop(pool, req) {
  const total = Math.floor((rate * durationMs) / 1000)
  const interval = 1000 / rate
  const requests = []
  const pending = []
  const start = performance.now() + 5
  let i = 0
  await new Promise((done) => {
    const tick = () => {
      const now = performance.now()
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval
        pending.push(
          pool.request({ path: req.path, method: 'POST', headers: req.headers, body: req.body }).then(async ({ statusCode, body }) => {
            await body.dump()
            if (statusCode !== 200) throw new Error(`status ${statusCode}`)
            requests.push({ due: performance.timeOrigin + due, ms: performance.now() - due, lateMs: now - due })
          }),
        )
        i++
      }
      if (i >= total) return done()
      setTimeout(tick, Math.max(0, start + i * interval - performance.now()))
    }
    setTimeout(tick, 5)
  })
  await Promise.all(pending)
  return { requests, sorted: Float64Array.from(requests.map((q) => q.ms)).sort() }
}

/** Samples a process's main-thread core wait every 2 ms; `spans()` the spans since the last call with a wait ≥ 1 ms. */
function waitRecorder(pid) {
  const path = `/proc/${pid}/task/${pid}/schedstat`
  let last = null
  let kept = []
  const timer = setInterval(() => {
    let stat
    try {
      stat = parseSchedstat(readFileSync(path, 'utf8'))
    } catch {
      return
    }
    const at = Date.now()
    if (stat !== null && last !== null && (stat.waitNs - last.waitNs) / 1e6 >= 1) kept.push({ from: last.at, to: at })
    if (stat !== null) last = { at, waitNs: stat.waitNs }
  }, 2)
  return {
    spans: () => kept.splice(0),
    stop: () => clearInterval(timer),
  }
}

function readGcs(file) {
  return readLines(file)
    .filter((l) => l.ms >= 1)
    .map((l) => ({ from: l.at, to: l.at + l.ms }))
}

function readLines(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line))
  } catch {
    return []
  }
}
