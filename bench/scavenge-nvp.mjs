// What each scavenge of the open loop costs, proxy against floor, from V8's own per-collection record
// (--trace-gc-nvp on both sides, after the launcher's flags: the floor here runs with them too, as every bench floor
// does): after the latency scenario's closed-loop warm-up, each side alone serves `--rounds` open-loop runs of
// `--duration` ms at `--rate` (alternating which goes first, `--gap` ms of quiet before each), and every scavenge
// inside a run is read. Per side: requests a scavenge, pause p50/p99/max and the count ≥ 1 ms, then for all scavenges
// and for those ≥ 1 ms the mean of: bytes copied within the young generation (`new_space_survived`: it leaves out the
// promoted) and promoted (what survived its second scavenge), survival rate, young-generation capacity (semi-space),
// the main thread's own phases (roots, parallel, update_refs, weak handles, array buffers, time to safepoint), the
// main thread's time they leave (its wait in the parallel phase's join: for V8's workers, which the bench pins to the
// proxy's one core with it, or for that core), V8's workers' parallel time, and the pause per MiB moved.
// Then per side the median bytes copied and promoted a scavenge (a pile-up's few scavenges move the mean, not these),
// each run's median promoted, and each run's share of what one scavenge kept young that the next promoted (a request is
// done long before the next scavenge: a high share says something held it). Bytes move with a host's pile-ups (many
// requests in flight at one scavenge) less than pauses do (on a host at load 6-12 every side's p50 reads several ms).
// `--closed=N` fixes what is in flight instead of the rate; `--stall=MS` makes a pile-up on purpose before the runs.
//   node bench/scavenge-nvp.mjs [--cli=dist/cli.js] [--rate=1000] [--rounds=4] [--duration=5000] [--gap=300]
//                               [--warm=12000] [--proxy-flags="…"] [--floor-flags="…"] [--sides=proxy,floor]
//                               [--other-flags="…" (a second proxy, "other", with these flags after the launcher's)]
//                               [--proxy-env=K=V,… / --other-env=K=V,… (more environment for that side; either --other-* starts "other")]
//                               [--other-cli=… (the second proxy's build)] [--closed=N (closed loops of N, not the open loop)]
//                               [--stall=MS (after the warm-up, each side stopped MS ms under the open loop: a pile-up)]
//                               [--lines (every scavenge ≥ 1 ms)] [--keep-log=DIR (each proxy's whole trace, copied there as NAME.log)]
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy, startTracedFloor } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'
import { carriedOver, envPairs, joinWaitMs, medianOf, parseNvp, pauseStats } from './gc-nvp.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '1000'))
const rounds = Number(arg('rounds', '4'))
const durationMs = Number(arg('duration', '5000'))
const gapMs = Number(arg('gap', '300'))
const warm = Number(arg('warm', '12000'))
/** `--closed=N`: each run a closed loop of N at a time rather than the open loop (what is in flight fixed, not the rate). */
const closed = arg('closed', null) === null ? null : Number(arg('closed', '1'))
const flagsOf = (name) => arg(name, '').split(/\s+/).filter(Boolean)
const sideNames = arg('sides', 'proxy,floor').split(',')
const TRACE = ['--trace-gc-nvp']
/** `--NAME=K=V,K=V` as more environment for one side (e.g. `--other-env=LOOPERS_IDLE_RELEASE_MS=0`). */
const envOf = (name) => envPairs(arg(name, ''))

const mean = (list, pick) => (list.length === 0 ? 0 : list.reduce((s, x) => s + (pick(x) ?? 0), 0) / list.length)
const KiB = (bytes) => (bytes / 1024).toFixed(0)

function summarize(name, scavenges, requests, runs) {
  const stats = pauseStats(scavenges.map((s) => s.pause))
  const long = scavenges.filter((s) => s.pause >= 1)
  process.stdout.write(`${name}: ${stats.n} scavenges over ${requests} requests (one a ${(requests / Math.max(1, stats.n)).toFixed(0)}), pause p50 ${stats.p50.toFixed(2)} p99 ${stats.p99.toFixed(2)} max ${stats.max.toFixed(2)} ms, ${stats.long} ≥ 1 ms\n`)
  for (const [label, list] of [['all', scavenges], ['≥1ms', long]]) {
    if (list.length === 0) continue
    const movedMiB = mean(list, (s) => (s.new_space_survived ?? 0) + (s.promoted ?? 0)) / 1048576
    process.stdout.write(
      `  ${label.padEnd(5)} n ${String(list.length).padStart(4)}  pause ${mean(list, (s) => s.pause).toFixed(2)}  copied ${KiB(mean(list, (s) => s.new_space_survived))} KiB  promoted ${KiB(mean(list, (s) => s.promoted))} KiB` +
        `  survive ${mean(list, (s) => s['new_space_survive_rate_']).toFixed(1)}%  capacity ${KiB(mean(list, (s) => s.new_space_capacity))} KiB  ms/MiB moved ${(mean(list, (s) => s.pause) / Math.max(1e-9, movedMiB)).toFixed(1)}\n` +
        `        main: safepoint ${mean(list, (s) => s.time_to_safepoint).toFixed(2)} roots ${mean(list, (s) => s['scavenge.roots']).toFixed(2)} parallel ${mean(list, (s) => s['scavenge.parallel']).toFixed(2)}` +
        ` update_refs ${mean(list, (s) => s['scavenge.update_refs']).toFixed(2)} weak ${mean(list, (s) => (s['scavenge.weak'] ?? 0) + (s['scavenge.weak_global_handles.identify'] ?? 0) + (s['scavenge.weak_global_handles.process'] ?? 0)).toFixed(2)}` +
        ` array_buffers ${mean(list, (s) => (s['scavenge.sweep_array_buffers'] ?? 0) + (s['complete.sweep_array_buffers'] ?? 0)).toFixed(2)} free_remembered_set ${mean(list, (s) => s['scavenge.free_remembered_set']).toFixed(2)}` +
        ` external ${mean(list, (s) => (s['heap.external.prologue'] ?? 0) + (s['heap.external.epilogue'] ?? 0) + (s['heap.external_weak_global_handles'] ?? 0)).toFixed(2)}; unaccounted (join wait) ${mean(list, joinWaitMs).toFixed(2)}; workers: parallel ${mean(list, (s) => s['background.scavenge.parallel']).toFixed(2)} ms\n`,
    )
  }
  const carried = runs.map(carriedOver).filter((share) => share !== null)
  process.stdout.write(
    `  median a scavenge: copied ${KiB(medianOf(scavenges, (s) => s.new_space_survived))} KiB promoted ${KiB(medianOf(scavenges, (s) => s.promoted))} KiB; by run (median promoted KiB / scavenges): ${runs.map((run) => `${KiB(medianOf(run, (s) => s.promoted))}/${run.length}`).join(' ')}` +
      `; kept young then promoted at the next, by run: ${carried.map((share) => `${(share * 100).toFixed(0)}%`).join(' ')}\n`,
  )
  if (process.argv.includes('--lines')) {
    const worst = long.reduce((w, s) => (w === null || s.pause > w.pause ? s : w), null)
    if (worst !== null) process.stdout.write(`    longest: ${Object.entries(worst).filter(([k, v]) => typeof v !== 'number' || v !== 0 || k === 'scavenge.parallel').map(([k, v]) => `${k}=${v}`).join(' ')}\n`)
    for (const s of long) process.stdout.write(`    pause ${s.pause} copied ${KiB(s.new_space_survived)} KiB promoted ${KiB(s.promoted)} KiB capacity ${KiB(s.new_space_capacity)} KiB safepoint ${s.time_to_safepoint} roots ${s['scavenge.roots']} parallel ${s['scavenge.parallel']} wait ${joinWaitMs(s).toFixed(2)} workers ${s['background.scavenge.parallel']} update_refs ${s['scavenge.update_refs']}\n`)
  }
}

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-scavenge-nvp-', { fake: { completionTokens: 16 } })
try {
  const sides = {}
  if (sideNames.includes('proxy')) {
    const proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath, nodeOptions: [...TRACE, ...flagsOf('proxy-flags')], extraEnv: envOf('proxy-env') })
    started.push(proxy)
    sides.proxy = { url: proxy.url, pid: proxy.pid, logFile: proxy.logFile, lines: () => readFileSync(proxy.logFile, 'utf8') }
  }
  if (arg('other-flags', null) !== null || arg('other-env', null) !== null) {
    const other = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'other', cliPath: resolve(arg('other-cli', cliPath)), nodeOptions: [...TRACE, ...flagsOf('other-flags')], extraEnv: envOf('other-env') })
    started.push(other)
    sides.other = { url: other.url, pid: other.pid, logFile: other.logFile, lines: () => readFileSync(other.logFile, 'utf8') }
  }
  if (sideNames.includes('floor')) {
    const floor = await startTracedFloor({ upstreamUrl: fake.url, redisUrl: redis.url, pin: pinning.used, cliPath, nodeArgs: [...TRACE, ...flagsOf('floor-flags')] })
    started.push(floor)
    sides.floor = floor
  }
  const request = requestPair(await createBenchKey(redis.url, 'bench-scavenge'), ONE_LINE_BODY).proxied
  const pools = Object.fromEntries(Object.entries(sides).map(([name, side]) => [name, createPool(side.url, 256)]))
  for (const name of Object.keys(sides)) await closedLoop({ origin: sides[name].url, request, concurrency: 64, durationMs: 60_000, maxRequests: warm, pool: pools[name] })
  // A pile-up made on purpose: each side stopped (SIGSTOP) for `--stall` ms in the middle of a second of the open loop,
  // as a host's stall stops it, so the requests sent meanwhile are all in flight at once; then 2 s of the open loop.
  const stallMs = Number(arg('stall', '0'))
  if (stallMs > 0) {
    for (const name of Object.keys(sides)) {
      const running = openLoop({ origin: sides[name].url, request, rate, durationMs: 1000 + stallMs, pool: pools[name] })
      await sleep(500)
      process.kill(sides[name].pid, 'SIGSTOP')
      try {
        await sleep(stallMs)
      } finally {
        process.kill(sides[name].pid, 'SIGCONT')
      }
      await running
      await openLoop({ origin: sides[name].url, request, rate, durationMs: 2000, pool: pools[name] })
    }
  }
  const found = Object.fromEntries(Object.keys(sides).map((name) => [name, { scavenges: [], requests: 0, runs: [] }]))
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? Object.keys(sides) : Object.keys(sides).reverse()
    for (const name of order) {
      await sleep(gapMs)
      const from = sides[name].lines().length
      const run = closed === null ? await openLoop({ origin: sides[name].url, request, rate, durationMs, pool: pools[name] }) : await closedLoop({ origin: sides[name].url, request, concurrency: closed, durationMs, pool: pools[name] })
      found[name].requests += run.ok
      const inRun = []
      for (const line of sides[name].lines().slice(from).split('\n')) {
        const fields = parseNvp(line)
        // A scavenge, or under --minor-mc the young generation's mark-sweep (gc=mmc: it records the same bytes).
        if (fields !== null && (fields.gc === 's' || fields.gc === 'mmc')) inRun.push(fields)
      }
      found[name].scavenges.push(...inRun)
      found[name].runs.push(inRun)
    }
  }
  await Promise.all(Object.values(pools).map((p) => p.close()))
  process.stdout.write(`${closed === null ? `open loop at ${rate} req/s` : `closed loop of ${closed}`}, ${rounds} runs of ${durationMs} ms a side after ${warm} warm-up requests; flags proxy [${flagsOf('proxy-flags').join(' ')}] floor [${flagsOf('floor-flags').join(' ')}]${sides.other === undefined ? '' : ` other [${flagsOf('other-flags').join(' ')}] env [${arg('other-env', '')}]`}${arg('proxy-env', null) === null ? '' : ` proxy env [${arg('proxy-env', '')}]`}\n`)
  for (const name of Object.keys(found)) summarize(name, found[name].scavenges, found[name].requests, found[name].runs)
  if (arg('keep-log', null) !== null) {
    mkdirSync(resolve(arg('keep-log')), { recursive: true })
    for (const name of Object.keys(sides)) {
      if (sides[name].logFile === undefined) continue
      copyFileSync(sides[name].logFile, join(resolve(arg('keep-log')), `${name}.log`))
      copyFileSync(sides[name].logFile.replace(/\.log$/, '.err'), join(resolve(arg('keep-log')), `${name}.err`))
    }
  }
} finally {
  await close()
}
