// Every slow request of the latency scenario's open loop, lined up with what each process was doing then: the
// proxy and the floor (bench/loop-delay.mjs preloaded into both, and into this load generator) serve `--rate` req/s
// open loop in turns of `--duration` ms with `--gap` ms of quiet before each (the scenario's direct run and quiet()),
// and each request over `--slow` ms is printed with its send time (second of the minute), its latency, and the
// loop blocks and collection pauses of the side and of this generator within 60 ms before its answer.
// `--sides=proxy` (or floor) serves one side only: with `--gap=0`, an unbroken open loop.
//   node bench/stall-trace.mjs [--cli=dist/cli.js] [--rate=500] [--rounds=12] [--duration=5000] [--gap=5000] [--slow=10] [--sides=proxy,floor]
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '500'))
const rounds = Number(arg('rounds', '12'))
const durationMs = Number(arg('duration', '5000'))
const gapMs = Number(arg('gap', '5000'))
const slowMs = Number(arg('slow', '10'))
const only = arg('sides', 'proxy,floor').split(',')
const PROBE = join(ROOT, 'bench/loop-delay.mjs')

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-stall-trace-', { fake: { completionTokens: 16 } })
try {
  const files = { proxy: join(dir, 'proxy.blocks'), floor: join(dir, 'floor.blocks'), client: join(dir, 'client.blocks') }
  process.env.LOOPERS_BENCH_LOOP_DELAY_FILE = files.floor
  const sides = {
    floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, nodeArgs: ['--import', PROBE] }),
    proxy: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath, nodeOptions: ['--import', PROBE], extraEnv: { LOOPERS_BENCH_LOOP_DELAY_FILE: files.proxy } }),
  }
  started.push(...Object.values(sides))
  process.env.LOOPERS_BENCH_LOOP_DELAY_FILE = files.client
  await import(PROBE)
  const request = requestPair(await createBenchKey(redis.url, 'bench-stall'), ONE_LINE_BODY).proxied
  const pools = { proxy: createPool(sides.proxy.url, 256), floor: createPool(sides.floor.url, 256) }
  // When each side's connections open and close: a server closing idle keep-alive connections makes the pool reconnect.
  const t0 = Date.now()
  const events = { proxy: [], floor: [] }
  for (const name of Object.keys(pools)) {
    pools[name].on('connect', () => events[name].push({ at: Date.now(), what: 'connect' }))
    pools[name].on('disconnect', () => events[name].push({ at: Date.now(), what: 'disconnect' }))
  }
  const since = (at) => ((at - t0) / 1000).toFixed(1)
  for (const name of only) {
    process.stdout.write(`${name} warm-up from ${since(Date.now())} s\n`)
    await closedLoop({ origin: sides[name].url, request, concurrency: 64, durationMs: 15_000, maxRequests: 12_000, pool: pools[name] })
    await openLoop({ origin: sides[name].url, request, rate, durationMs: 10_000, pool: pools[name] })
  }
  const totals = { proxy: { requests: 0, slow: 0, p99s: [] }, floor: { requests: 0, slow: 0, p99s: [] } }
  for (let r = 0; r < rounds; r++) {
    for (const name of (r % 2 === 0 ? ['proxy', 'floor'] : ['floor', 'proxy']).filter((n) => only.includes(n))) {
      await sleep(gapMs)
      const runFrom = Date.now()
      const { slow, latencies } = await tracedOpenLoop(pools[name], request)
      const sorted = Float64Array.from(latencies).sort()
      const p99 = sorted[Math.ceil(0.99 * sorted.length) - 1]
      totals[name].requests += latencies.length
      totals[name].slow += slow.length
      totals[name].p99s.push(p99)
      process.stdout.write(`round ${r + 1} ${name} at ${since(runFrom)} s: ${latencies.length} requests, p99 ${p99.toFixed(2)} ms, max ${sorted.at(-1).toFixed(2)} ms, over ${slowMs} ms ${slow.length}\n`)
      for (const side of Object.keys(events)) {
        const tally = {}
        for (const e of events[side].splice(0)) (tally[`${e.what} at ${since(e.at)} s`] ??= [0])[0]++
        const text = Object.entries(tally).map(([k, [n]]) => `${n} ${k}`).join(', ')
        if (text !== '') process.stdout.write(`  ${side} pool since the last run: ${text}\n`)
      }
      const lines = { side: readLines(files[name]), client: readLines(files.client) }
      const during = lines.side.filter((l) => l.at >= runFrom)
      const own = during.filter((l) => l.ownMs !== undefined).map((l) => l.ownMs)
      const gcs = {}
      for (const l of during.filter((l) => l.gcMs !== undefined)) {
        const g = (gcs[l.gcKind] ??= { n: 0, longest: 0 })
        g.n++
        g.longest = Math.max(g.longest, l.gcMs)
      }
      const gcText = Object.entries(gcs).map(([kind, g]) => `kind ${kind} ×${g.n} (longest ${g.longest} ms)`).join(', ') || 'none'
      process.stdout.write(`  ${name} own work >5 ms ${own.filter((ms) => ms > 5).length} (longest ${Math.max(0, ...own).toFixed(2)} ms), GC pauses ≥1 ms: ${gcText}\n`)
      for (const group of groupSlow(slow)) {
        const first = group[0]
        const endAt = Math.max(...group.map((s) => s.sentAt + s.ms))
        const near = (list) => list.filter((l) => l.at >= first.sentAt - 60 && l.at <= endAt + 5).map(describe).join(', ') || '-'
        const d = new Date(first.sentAt)
        process.stdout.write(`  ${d.toISOString().slice(11, 23)} (s ${d.getUTCSeconds()} of the minute) ${group.length} slow, longest ${Math.max(...group.map((s) => s.ms)).toFixed(1)} ms | ${name}: ${near(lines.side)} | client: ${near(lines.client)}\n`)
      }
    }
  }
  for (const [name, t] of Object.entries(totals).filter(([n]) => only.includes(n))) {
    process.stdout.write(`${name}: ${t.requests} requests, over ${slowMs} ms ${t.slow}; p99 per run ${t.p99s.map((p) => p.toFixed(2)).join(' ')}\n`)
  }
  await Promise.all(Object.values(pools).map((p) => p.close()))
} finally {
  await close()
}
// This process's own loop-delay timer would write on into the removed directory.
process.exit(0)

/** The open loop of bench/load.mjs, with each request's send time (epoch ms) and latency from its due time. */
async function tracedOpenLoop(pool, req) {
  const total = Math.floor((rate * durationMs) / 1000)
  const interval = 1000 / rate
  const latencies = []
  const slow = []
  const pending = []
  const start = performance.now() + 5
  const epochAt = (t) => performance.timeOrigin + t
  let i = 0
  await new Promise((done) => {
    const tick = () => {
      const now = performance.now()
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval
        pending.push(
          pool.request({ path: req.path, method: 'POST', headers: req.headers, body: req.body }).then(async ({ statusCode, body }) => {
            await body.dump()
            const ms = performance.now() - due
            if (statusCode !== 200) throw new Error(`status ${statusCode}`)
            latencies.push(ms)
            if (ms > slowMs) slow.push({ sentAt: epochAt(due), ms, lateMs: now - due })
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
  return { slow, latencies }
}

/** Slow requests sent within 100 ms of each other, as one stall. */
function groupSlow(slow) {
  const groups = []
  for (const s of [...slow].sort((a, b) => a.sentAt - b.sentAt)) {
    const last = groups.at(-1)
    if (last !== undefined && s.sentAt - last.at(-1).sentAt < 100) last.push(s)
    else groups.push([s])
  }
  return groups
}

function describe(l) {
  const at = new Date(l.at).toISOString().slice(17, 23)
  return l.gcMs !== undefined ? `${at} gc kind ${l.gcKind} ${l.gcMs} ms` : `${at} block own ${l.ownMs} busy ${l.busyMs} late ${l.blockedMs} cpu ${l.cpuMs}`
}

function readLines(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line))
  } catch {
    return []
  }
}
