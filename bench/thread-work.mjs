// What V8's other threads do in the proxy and in the floor at an open-loop rate: each side runs with its launcher's
// flags plus V8's traces (`--trace-gc-nvp --trace-incremental-marking --trace-opt --trace-deopt`, on stdout), serves
// the latency scenario's warm-up (12,000 requests, 64 at a time, then 10 s of the open loop), then `--phases` runs of
// `--duration` ms at `--rate`, the sides rotating, each after `--gap` ms of quiet (as between the bench's runs). Per
// side and phase: p99; CPU of the main thread and of V8's platform workers, and the main thread's wait for a core
// (schedstat); what the quiet before it did (full collections, optimized code thrown away); scavenges and bytes
// promoted a request; incremental markings started and mark-compacts; TurboFan jobs completed (and their background
// wall milliseconds), deoptimizations and code thrown away during it. The traces count what load does not move; the
// CPU is what it costs.
//   node bench/thread-work.mjs [--a=dist/cli.js] [--b=OTHER/dist/cli.js] [--no-floor] [--rate=1000] [--phases=6]
//                              [--duration=5000] [--gap=0] [--warm=12000] [--flags-a=… --flags-b=… (more node flags
//                              for a side)] [--lines (each phase's and quiet's reasons: incremental marking, deopts,
//                              code thrown away; the functions TurboFan compiled)] [--close-late (the latency scenario's
//                              order: a side's pool stays open through the quiet after its phase and is closed just
//                              before its next, whose new pool is primed with 64 requests at once, unmeasured)]
//                              [--keep-log=DIR (each side's whole trace, copied there as NAME.log)]
//                              [--body=BYTES [--shape=chat|anthropic] (every side sends a coding agent's request about
//                              BYTES long, a new step each, as ab.mjs --body does: bench/body-option.mjs)]
// Measured (--no-floor --phases=12 --close-late; the lull collection at 12 MiB with a 64 MiB old-space floor
// against 32 MiB and 128 MiB): the lull's full collection came before 6 of 12 phases and threw away 0-23 optimized
// functions each (51 in all: ioredis' Command, sendCommand, returnReply, traceCommand; IncomingMessage and the
// Readable/ReadableState/Stream/EventEmitter constructors it inlines; forwardMetered; once Node's HTTP write path
// and llhttp's callbacks), 258 TurboFan jobs and 693 ms of V8 worker CPU in the phases; after: 2 of 12, 2 thrown,
// 123 jobs, 494 ms, and no mark-compact of V8's own in a phase either way. With no lull collection at all (64 MiB
// floor) nothing was thrown but V8's own mark-compact came inside 3 of 10 phases. A one-line chat's lull collection
// after a closed loop (idle-retier.mjs) threw none: what dies is the open loop's last requests' objects.
import { copyFileSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop, primeConnections } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy, startTracedFloor } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { bodyOption, ONE_LINE_BODY } from './body-option.mjs'
import { groupDelta, threadGroupsCpuMs } from './thread-probe.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const rate = Number(arg('rate', '1000'))
const phases = Number(arg('phases', '6'))
const durationMs = Number(arg('duration', '5000'))
const warm = Number(arg('warm', '12000'))
const showLines = process.argv.includes('--lines')
const gapMs = Number(arg('gap', '0'))
const closeLate = process.argv.includes('--close-late')
const builds = { a: resolve(arg('a', join(ROOT, 'dist/cli.js'))), b: arg('b', null) === null ? null : resolve(arg('b', '')) }
const TRACES = ['--trace-gc-nvp', '--trace-incremental-marking', '--trace-opt', '--trace-deopt']
/** ms the thread `tid` of `pid` has waited for a core so far (schedstat's second field). */
const waitedMs = (pid, tid = pid) => Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]) / 1e6
const flagsOf = (name) => arg(`flags-${name}`, '').split(/\s+/).filter(Boolean)

/** Counts of V8's trace lines in `text`. */
function traceCounts(text) {
  const c = { scavenges: 0, promoted: 0, markCompacts: 0, imStarts: [], tfJobs: 0, tfMs: 0, deopts: 0, thrown: 0, deoptReasons: new Map(), compiled: new Map(), thrownNames: new Map() }
  const bump = (map, k) => map.set(k, (map.get(k) ?? 0) + 1)
  for (const line of text.split('\n')) {
    const kind = / gc=(\w+) /.exec(line)?.[1]
    if (kind === 's') {
      c.scavenges++
      c.promoted += Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0)
    } else if (kind === 'mc') c.markCompacts++
    else if (line.includes('[IncrementalMarking] Start (')) c.imStarts.push(/Start \(([^)]*)\)/.exec(line)[1])
    else if (line.startsWith('[completed compiling') && line.includes('TURBOFAN')) {
      c.tfJobs++
      c.tfMs += Number(/took [\d.]+, ([\d.]+),/.exec(line)?.[1] ?? 0)
      bump(c.compiled, /<JSFunction ?([^ >]*)/.exec(line)?.[1] || '(anonymous)')
    } else if (line.startsWith('[bailout (kind: ')) {
      c.deopts++
      bump(c.deoptReasons, `bailout: ${/reason: ([^)]*)\)/.exec(line)?.[1] ?? '?'}`)
    } else if (line.startsWith('[marking dependent code')) {
      c.thrown++
      bump(c.thrownNames, /<SharedFunctionInfo ?([^>]*)>/.exec(line)?.[1] || '(anonymous)')
      bump(c.deoptReasons, `code thrown away: ${/reason: (.*)\]$/.exec(line)?.[1] ?? '?'}`)
    }
  }
  return c
}

/** --close-late: each side's pool of its last phase, still open. */
const openPools = {}
const body = bodyOption()
const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-thread-work-', { watchdogMs: 30 * 60_000, fake: { completionTokens: 16, ...body.fake } })
try {
  const sides = {}
  for (const name of ['a', 'b']) {
    if (builds[name] === null) continue
    const proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name, cliPath: builds[name], nodeOptions: [...TRACES, ...flagsOf(name)], extraEnv: body.proxyEnv(fake.url) })
    started.push(proxy)
    let read = 0
    sides[name] = {
      ...proxy,
      take() {
        // The proxy's stdout is its file; V8's traces land there (its own log goes to the same file at warn: nothing).
        const text = readFileSyncSafe(proxy.logFile)
        const out = text.slice(read)
        read = text.length
        return out
      },
    }
  }
  if (!process.argv.includes('--no-floor')) {
    const floor = await startTracedFloor({ upstreamUrl: fake.url, redisUrl: redis.url, pin: pinning.used, cliPath: builds.a, nodeArgs: TRACES })
    started.push(floor)
    let read = 0
    sides.floor = {
      ...floor,
      take() {
        const text = floor.lines()
        const out = text.slice(read)
        read = text.length
        return out
      },
    }
  }
  const names = Object.keys(sides)
  const request = body.request(requestPair(await createBenchKey(redis.url, 'bench-thread-work', false, body.providers), ONE_LINE_BODY).proxied)
  process.stdout.write(`${body.label}\n`)
  for (const name of names) {
    const pool = createPool(sides[name].url, 256)
    await closedLoop({ origin: sides[name].url, request, concurrency: 64, durationMs: 30_000, maxRequests: warm, pool })
    await openLoop({ origin: sides[name].url, request, rate, durationMs: 10_000, pool })
    await pool.close().catch(() => undefined)
    const c = traceCounts(sides[name].take())
    process.stdout.write(`${name} warm-up: ${c.scavenges} scavenges, ${c.markCompacts} mark-compacts, ${c.tfJobs} TurboFan jobs (${c.tfMs.toFixed(0)} ms), ${c.deopts} deopts\n`)
  }
  process.stdout.write('\n                                               | quiet before  |\nphase side   requests  p99 ms  main ms  main wait ms  v8-workers ms | full GCs  thrown | scavenges  promoted/req B  IM starts  mark-compacts  TF jobs  TF ms  deopts  thrown\n')
  const totals = Object.fromEntries(names.map((n) => [n, { requests: 0, main: 0, mainWait: 0, p99s: [], workers: 0, tfMs: 0, tfJobs: 0, im: 0, mc: 0, deopts: 0, quietGcs: 0, quietThrown: 0 }]))
  for (let p = 0; p < phases; p++) {
    const order = names.map((_, i) => names[(i + p) % names.length])
    for (const name of order) {
      const side = sides[name]
      await sleep(gapMs)
      const gap = traceCounts(side.take())
      if (showLines) {
        for (const [reason, n] of gap.deoptReasons) process.stdout.write(`        ${name} quiet before phase ${p + 1}: ×${n} ${reason}\n`)
        if (gap.thrown > 0) process.stdout.write(`        ${name} quiet before phase ${p + 1}, thrown away: ${[...gap.thrownNames].map(([f, n]) => (n > 1 ? `${f}×${n}` : f)).join(', ')}\n`)
      }
      if (closeLate) await openPools[name]?.close().catch(() => undefined)
      const pool = createPool(side.url, 256)
      if (closeLate) {
        openPools[name] = pool
        await primeConnections({ origin: side.url, request, pool, connections: 64 })
      }
      await sleep(200)
      const before = threadGroupsCpuMs(side.pid)
      const waitBefore = waitedMs(side.pid)
      const run = await openLoop({ origin: side.url, request, rate, durationMs, pool })
      const cpu = groupDelta(before, threadGroupsCpuMs(side.pid))
      const mainWait = waitedMs(side.pid) - waitBefore
      // openLoop may have destroyed a pool whose requests outlived its drain.
      if (!closeLate) await pool.close().catch(() => undefined)
      await sleep(100)
      const c = traceCounts(side.take())
      const t = totals[name]
      t.requests += run.ok
      t.main += cpu.main ?? 0
      t.mainWait += mainWait
      t.p99s.push(run.latencyMs.p99)
      t.workers += cpu['v8-workers'] ?? 0
      t.tfMs += c.tfMs
      t.tfJobs += c.tfJobs
      t.im += c.imStarts.length
      t.mc += c.markCompacts
      t.deopts += c.deopts
      t.quietGcs += gap.markCompacts
      t.quietThrown += gap.thrown
      const cells = [String(p + 1).padStart(5), name.padEnd(6), String(run.ok).padStart(8), run.latencyMs.p99.toFixed(1).padStart(7), (cpu.main ?? 0).toFixed(0).padStart(8), mainWait.toFixed(0).padStart(13), (cpu['v8-workers'] ?? 0).toFixed(1).padStart(14), `| ${String(gap.markCompacts).padStart(8)}`, String(gap.thrown).padStart(6), `| ${String(c.scavenges).padStart(9)}`, (c.promoted / Math.max(1, run.ok)).toFixed(0).padStart(15), String(c.imStarts.length).padStart(10), String(c.markCompacts).padStart(14), String(c.tfJobs).padStart(8), c.tfMs.toFixed(0).padStart(6), String(c.deopts).padStart(7), String(c.thrown).padStart(7)]
      process.stdout.write(`${cells.join(' ')}\n`)
      if (showLines) {
        for (const reason of c.imStarts) process.stdout.write(`        incremental marking: ${reason}\n`)
        for (const [reason, n] of c.deoptReasons) process.stdout.write(`        ×${n} ${reason}\n`)
        if (c.thrownNames.size > 0) process.stdout.write(`        thrown away: ${[...c.thrownNames].map(([f, n]) => (n > 1 ? `${f}×${n}` : f)).join(', ')}\n`)
        const top = [...c.compiled].sort((x, y) => y[1] - x[1]).slice(0, 12)
        if (top.length > 0) process.stdout.write(`        TurboFan: ${top.map(([f, n]) => `${f}×${n}`).join(', ')}\n`)
      }
    }
  }
  process.stdout.write('\nper side over every phase: CPU µs a request (main, V8 workers), main thread\'s wait for a core, full collections and code thrown away in the quiet before phases, TurboFan jobs, incremental markings and mark-compacts in phases, deopts, p99s\n')
  for (const [name, t] of Object.entries(totals)) {
    const per = (ms) => ((ms * 1000) / Math.max(1, t.requests)).toFixed(1)
    process.stdout.write(`${name.padEnd(6)} main ${per(t.main)} µs, workers ${per(t.workers)} µs (${t.workers.toFixed(0)} ms), main waited ${t.mainWait.toFixed(0)} ms, quiet: ${t.quietGcs} full GCs threw ${t.quietThrown}, TF ${t.tfJobs} jobs ${t.tfMs.toFixed(0)} ms, IM ${t.im}, MC ${t.mc}, deopts ${t.deopts}, p99 ${t.p99s.map((v) => v.toFixed(1)).join(' ')} ms${name === 'floor' ? '' : ` (${builds[name]} ${flagsOf(name).join(' ')})`}\n`)
  }
  if (arg('keep-log', null) !== null) for (const name of names) if (sides[name].logFile) copyFileSync(sides[name].logFile, join(resolve(arg('keep-log')), `${name}.log`))
} finally {
  for (const pool of Object.values(openPools)) await pool.close().catch(() => undefined)
  await close()
}

function readFileSyncSafe(file) {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}
