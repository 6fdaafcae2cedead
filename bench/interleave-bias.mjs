// The interleaved CPU phase's own biases (bench/interleave.mjs, the bench's judged open-loop CPU ratio), measured:
// a proxy and a floor, a second proxy and a second floor, all on the proxy core, each warmed past V8's tier-up, then
// per round, in a rotating order: proxy against floor as the bench interleaves them (--slices of --slice-ms), the same
// in longer slices (--long-slices of --long-ms), proxy against proxy and floor against floor (A/A), and each side's
// own back-to-back run. Each interleaved phase gives its ratio over the whole phase (the judged figure before this
// session), over the CPU bench/interleave.mjs counts now (own slices and a tail), over each side's own slices only, and over each slice's steady state (CPU from --steady-from-ms after its first send to its
// last, per request sent in that window: without its start from idle and its drain); and the proxy's collections of
// 1 ms or more that fell outside its own slices (its idle release's lull: bench/gc-record.mjs).
//   npm run build && node bench/interleave-bias.mjs [--cli=dist/cli.js] [--rate=1000] [--rounds=3] [--slices=10]
//     [--slice-ms=500] [--long-slices=4] [--long-ms=2500] [--steady-from-ms=150] [--phases=pf,long,pp,ff,own (and pp2,
//     ff2: the A/A pairs the other way round; pfa: proxy against floor in alternating slices; ppa, ffa, ppa2, ffa2: the A/A
//     pairs in alternating slices)]
// Loads 127.0.0.1 only, bounded in count and time; stops every process it starts.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ONE_LINE_BODY } from './body-option.mjs'
import { interleave } from './interleave.mjs'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, startBenchStack, startFloor, startProxy, threadsCpuMs } from './procs.mjs'
import { requestPair } from './scenarios.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cli = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', 1000))
const rounds = Number(arg('rounds', 3))
const slices = Number(arg('slices', 10))
const sliceMs = Number(arg('slice-ms', 500))
const longSlices = Number(arg('long-slices', 4))
const longMs = Number(arg('long-ms', 2500))
const steadyFromMs = Number(arg('steady-from-ms', 150))

const { pinning, dir, started, redis, fake, close } = await startBenchStack('interleave-bias-', { watchdogMs: 30 * 60_000, fake: { completionTokens: 16 } })
try {
  const proxyAt = async (name) => {
    const p = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name, cliPath: cli, gcFile: join(dir, `${name}.gc`) })
    started.push(p)
    return p
  }
  const floorAt = async (name) => {
    const f = await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, gcFile: join(dir, `${name}.gc`) })
    started.push(f)
    return f
  }
  const request = requestPair(await createBenchKey(redis.url, 'bench-interleave'), ONE_LINE_BODY).proxied
  const procs = { proxy: await proxyAt('proxy'), proxy2: await proxyAt('proxy2'), floor: await floorAt('floor'), floor2: await floorAt('floor2') }
  const pools = Object.fromEntries(Object.entries(procs).map(([name, p]) => [name, createPool(p.url, 256)]))
  for (const [name, p] of Object.entries(procs)) {
    await closedLoop({ origin: p.url, request, concurrency: 64, durationMs: 60_000, maxRequests: 12_000, pool: pools[name] })
    await openLoop({ origin: p.url, request, rate, durationMs: 3_000, pool: pools[name] })
  }
  const target = (name) => ({ url: procs[name].url, pid: procs[name].pid, request, pool: pools[name] })
  /** The proxy's collections of 1 ms or more in [from, to] epoch ms (the gc file: bench/gc-record.mjs). */
  const gcs = (name, from, to) => {
    let text = ''
    try {
      text = readFileSync(procs[name].gcFile, 'utf8')
    } catch {
      return []
    }
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.at >= from && r.at <= to)
  }
  const phase = async (label, a, b, n, ms, order = 'mirrored') => {
    const from = Date.now()
    const run = await interleave({ targets: { [a]: target(a), [b]: target(b) }, rate, sliceMs: ms, slices: n, a, b, steadyFromMs, order })
    const to = Date.now()
    // A side's own slices, in epoch ms: its collections outside them came while it was idle.
    const own = (side) => run.slices.filter((s) => s.side === side)
    const ownOnly = (side) => (own(side).reduce((t, s) => t + s.cpuMs[side], 0) * 1000) / own(side).reduce((t, s) => t + s.ok, 0)
    const idleCpu = (side) => run.sides[side].cpuMs * (1 - run.sides[side].ownSliceShare)
    return {
      phase: label, a, b, slices: n, slice_ms: ms, order,
      ratio: run.ratio, counted_ratio: run.countedRatio ?? null, own_slices_ratio: ownOnly(a) / ownOnly(b), steady_ratio: run.steadyRatio ?? null,
      us: Object.fromEntries([a, b].map((s) => [s, { whole: run.sides[s].usPerRequest, counted: run.sides[s].countedUsPerRequest ?? null, own_slices: ownOnly(s), steady: run.sides[s].steadyUsPerRequest ?? null, idle_cpu_ms: idleCpu(s) }])),
      gcs_ge_1ms: Object.fromEntries([a, b].map((s) => [s, gcs(s, from, to).length])),
      errors: run.slices.reduce((n, s) => n + s.errors, 0),
    }
  }
  const ownRun = async (name) => {
    const before = threadsCpuMs(procs[name].pid)
    const run = await openLoop({ origin: procs[name].url, request, rate, durationMs: (slices * sliceMs), pool: pools[name] })
    return ((threadsCpuMs(procs[name].pid) - before) * 1000) / run.ok
  }
  const results = []
  const allKinds = {
    pf: () => phase('proxy/floor', 'proxy', 'floor', slices, sliceMs),
    long: () => phase('proxy/floor long', 'proxy', 'floor', longSlices, longMs),
    // Proxy against floor as the bench interleaves them since session 34: alternating slices (A B A B …).
    pfa: () => phase('proxy/floor alternate', 'proxy', 'floor', slices, sliceMs, 'alternate'),
    pp: () => phase('proxy/proxy', 'proxy', 'proxy2', slices, sliceMs),
    ff: () => phase('floor/floor', 'floor', 'floor2', slices, sliceMs),
    // The A/A pairs with the other process first and in the `a` slot: a side's bias (its process) from a slot's.
    pp2: () => phase('proxy2/proxy', 'proxy2', 'proxy', slices, sliceMs),
    ff2: () => phase('floor2/floor', 'floor2', 'floor', slices, sliceMs),
    // The A/A pairs in alternating slices (A B A B …): neither side idle for two slices (1 s at 500 ms: the proxy's lull).
    ppa: () => phase('proxy/proxy alternate', 'proxy', 'proxy2', slices, sliceMs, 'alternate'),
    ffa: () => phase('floor/floor alternate', 'floor', 'floor2', slices, sliceMs, 'alternate'),
    ppa2: () => phase('proxy2/proxy alternate', 'proxy2', 'proxy', slices, sliceMs, 'alternate'),
    ffa2: () => phase('floor2/floor alternate', 'floor2', 'floor', slices, sliceMs, 'alternate'),
    own: async () => {
      const p = await ownRun('proxy')
      const f = await ownRun('floor')
      return { phase: 'own runs', us: { proxy: p, floor: f }, ratio: p / f }
    },
  }
  const kinds = arg('phases', 'pf,long,pp,ff,own').split(',').map((k) => allKinds[k])
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < kinds.length; k++) {
      const row = await kinds[(k + r) % kinds.length]()
      results.push({ round: r + 1, ...row })
      console.error(JSON.stringify({ round: r + 1, ...row }))
    }
  }
  await Promise.all(Object.values(pools).map((p) => p.close()))
  console.log(JSON.stringify({ cli, rate, rounds, slices, slice_ms: sliceMs, long_slices: longSlices, long_ms: longMs, steady_from_ms: steadyFromMs, results }))
} finally {
  await close()
}
