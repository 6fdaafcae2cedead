// Where a coding agent's request (bench/agent-body.mjs, --body bytes) costs the proxy more CPU than the floor: each
// side fed the same closed loop (16 at a time, one side at a time, order alternating per trial), its main thread's
// CPU profiled over the measured requests (bench/cpu-probe.mjs, preloaded) and its other threads' CPU counted from
// schedstat. A sample is charged to the innermost frame of the side's own code on its stack (a dist/ file's function
// or the floor's handler; Fastify's body read, which the floor uses: that step's inclusive cost, the library calls it
// makes included); a sample with none of those on its stack to its leaf's origin (Node, undici, Fastify, ioredis, GC).
// Time, not counts: read the proxy − floor column against the load average, and repeat it. Measured (a loaded 2-core
// host, 128 KiB): the proxy's main thread ~+250 µs a request, its V8 workers ~+50–130 µs (no profiler: --profile=0);
// of the main thread's gap the validating scan ~90 µs, collections +13–56, the rest spread over undici, Node and the store.
//   npm run build && node bench/agent-phases.mjs [--cli=dist/cli.js] [--body=131072] [--trials=3] [--duration=4000] [--warm=6000] [--top=30] [--profile=0] [--trace] [--trace-out=DIR] [--node-flags='…']
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { bodyOption } from './body-option.mjs'
import { closedLoop, createPool } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy, threadsCpuMs } from './procs.mjs'
import { requestPair } from './scenarios.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
if (!process.argv.some((a) => a.startsWith('--body='))) process.argv.push('--body=131072')
const trials = Number(arg('trials', '3'))
const durationMs = Number(arg('duration', '4000'))
const warmMs = Number(arg('warm', '6000'))
const top = Number(arg('top', '30'))
// --profile=0: CPU only (the profiler's own thread adds to `other threads`, and its sampling to the main thread).
const profiling = arg('profile', '1') !== '0'
// --trace: both sides run with V8's --trace-gc, --trace-opt and --trace-deopt; the collections of the measured
// requests are counted by kind and reason, and the functions TurboFan compiled (and deoptimized) meanwhile.
const tracing = process.argv.includes('--trace') || process.argv.some((a) => a.startsWith('--trace-out='))
// --trace-out=DIR: with the traces on, each side's trace lines of the measured requests are also written whole to
// DIR/<side>.trace (to read what TurboFan compiled and why, line by line), and all a side printed to DIR/<side>.all.trace.
const traceOut = arg('trace-out', null)
// --node-flags='…': node flags for the proxy after the launcher's (a flag's effect on this split).
const proxyFlags = arg('node-flags', '').split(/\s+/).filter(Boolean)
if (tracing) process.env.LOOPERS_BENCH_TRACE = '1'
const cli = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const PROBE = join(ROOT, 'bench/cpu-probe.mjs')
const body = bodyOption()
if (traceOut !== null) {
  mkdirSync(traceOut, { recursive: true })
  for (const n of ['floor', 'proxy']) for (const file of [`${n}.trace`, `${n}.all.trace`]) rmSync(join(traceOut, file), { force: true })
}

/** CPU ms of each thread name of `pid` (comm: `node` is the main thread, `V8 DefaultWorke` V8's workers, …), from schedstat. */
function cpuByThreadName(pid) {
  const out = new Map()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
      const ms = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
      out.set(name, (out.get(name) ?? 0) + ms)
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out
}

/** Main-thread CPU of `pid` in ms (schedstat of the thread whose id is the pid). */
const mainCpuMs = (pid) => Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6

function originOf(url) {
  if (url === '') return '(native)'
  if (url.startsWith('node:')) return 'node internals'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]
  const dist = /\/dist\/(.+)$/.exec(url)
  if (dist !== null) return `dist/${dist[1]}`
  return url.replace(/^.*\/bench\//, 'bench/')
}

// The sides' own code: Loopers' dist/ files, the floor's handler.
const OWN = /\/dist\/|\/bench\/floor\.mjs$/

/** µs of main-thread samples by where they are charged (see above), from one .cpuprofile. */
function charge(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const out = new Map()
  for (let i = 0; i < profile.samples.length; i++) {
    const leaf = byId.get(profile.samples[i]).callFrame
    if (leaf.functionName === '(idle)' || leaf.functionName === '(root)') continue
    let where = null
    for (let id = profile.samples[i]; id !== undefined && where === null; id = parent.get(id)) {
      const { functionName, url } = byId.get(id).callFrame
      if (OWN.test(url) && !url.includes('node_modules')) where = `${originOf(url)} ${functionName || '(anonymous)'}`
      else if (url.endsWith('fastify/lib/content-type-parser.js')) where = `fastify content-type-parser ${functionName || '(anonymous)'}`
    }
    where ??= leaf.functionName.startsWith('(') ? leaf.functionName : `[${originOf(leaf.url)}]`
    out.set(where, (out.get(where) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  return out
}

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-phases-', { watchdogMs: 15 * 60_000, fake: { completionTokens: 16, ...body.fake } })
try {
  const sides = {
    floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, nodeArgs: ['--import', PROBE] }),
    proxy: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath: cli, nodeOptions: [...proxyFlags, '--import', PROBE], extraEnv: { ...body.proxyEnv(fake.url), ...(tracing ? { LOOPERS_BENCH_TRACE: '1' } : {}) } }),
  }
  started.push(...Object.values(sides))
  // What each side has printed so far: the floor's piped stdout, the proxy's log file.
  let floorOut = ''
  sides.floor.child.stdout.on('data', (chunk) => (floorOut += chunk))
  const printed = (n) => (n === 'floor' ? floorOut : readFileSync(sides.proxy.logFile, 'utf8'))
  const key = await createBenchKey(redis.url, 'bench-phases', false, body.providers)
  const request = body.request(requestPair(key, '{}').proxied)
  process.stdout.write(`${body.label}; load average ${readFileSync('/proc/loadavg', 'utf8').trim()}\n`)
  const names = Object.keys(sides)
  const pools = Object.fromEntries(names.map((n) => [n, createPool(sides[n].url, 16)]))
  const run = (n, ms) => closedLoop({ origin: sides[n].url, request, concurrency: 16, durationMs: ms, pool: pools[n] })
  for (const n of names) await run(n, warmMs)
  const totals = Object.fromEntries(names.map((n) => [n, { requests: 0, mainMs: 0, allMs: 0, charged: new Map(), threads: new Map(), gcs: new Map(), compiles: new Map() }]))
  for (let t = 0; t < trials; t++) {
    for (const n of t % 2 === 0 ? names : [...names].reverse()) {
      const pid = sides[n].pid
      await sleep(300)
      if (profiling) process.kill(pid, 'SIGUSR2')
      await sleep(50)
      const main0 = mainCpuMs(pid)
      const all0 = threadsCpuMs(pid)
      const named0 = cpuByThreadName(pid)
      const printed0 = tracing ? printed(n).length : 0
      const r = await run(n, durationMs)
      const total = totals[n]
      if (tracing) {
        const traced = printed(n).slice(printed0)
        if (traceOut !== null) appendFileSync(join(traceOut, `${n}.trace`), traced)
        for (const line of traced.split('\n')) {
          const gc = /ms: (Scavenge|Mark-Compact(?: \(reduce\))?|Minor Mark-Sweep)\b.*\(average mu = [\d.]+, current mu = [\d.]+\) ([^;]*)/.exec(line)
          const opt = /completed (?:compiling|optimizing) (?:method )?0x[0-9a-f]+ <JSFunction ([^ >]*)/.exec(line) ?? /^\[bailout \(kind: ([^)]*)\).*<JSFunction ([^ >]*)/.exec(line)
          if (opt !== null) {
            const what = opt.length === 2 ? `TurboFan compiled ${opt[1] || '(anonymous)'}` : `deoptimized (${opt[1]}) ${opt[2] || '(anonymous)'}`
            total.compiles.set(what, (total.compiles.get(what) ?? 0) + 1)
          }
          if (gc !== null && gc[1].startsWith('Mark-Compact')) total.lastMarkCompact = line
          if (gc !== null) total.gcs.set(`${gc[1]}: ${gc[2]}`, (total.gcs.get(`${gc[1]}: ${gc[2]}`) ?? 0) + 1)
        }
      }
      for (const [name, ms] of cpuByThreadName(pid)) total.threads.set(name, (total.threads.get(name) ?? 0) + ms - (named0.get(name) ?? 0))
      total.mainMs += mainCpuMs(pid) - main0
      total.allMs += threadsCpuMs(pid) - all0
      total.requests += r.ok
      if (r.non2xx + r.transportErrors > 0) process.stdout.write(`${n}: ${r.non2xx + r.transportErrors} errors\n`)
      if (!profiling) continue
      process.kill(pid, 'SIGUSR2')
      const file = join(tmpdir(), `loopers-cpu-${pid}.cpuprofile`)
      let read = null
      for (let i = 0; i < 200 && read === null; i++) {
        await sleep(50)
        try {
          read = charge(file)
          rmSync(file)
        } catch {}
      }
      if (read === null) throw new Error(`no profile from ${n}`)
      for (const [k, us] of read) total.charged.set(k, (total.charged.get(k) ?? 0) + us)
    }
  }
  const per = (n, us) => us / totals[n].requests
  for (const n of names) {
    const t = totals[n]
    process.stdout.write(`${n}: ${t.requests} requests; CPU a request: main thread ${((1000 * t.mainMs) / t.requests).toFixed(1)} µs, other threads ${((1000 * (t.allMs - t.mainMs)) / t.requests).toFixed(1)} µs (${[...t.threads].map(([name, ms]) => `${name} ${((1000 * ms) / t.requests).toFixed(1)}`).join(', ')})\n`)
  }
  if (tracing) for (const n of names) for (const [kind, count] of totals[n].gcs) process.stdout.write(`${n}: ${count} ${kind} (${((1000 * count) / totals[n].requests).toFixed(1)} a thousand requests)\n`)
  if (tracing) {
    for (const n of names) {
      const compiles = [...totals[n].compiles].sort((x, y) => y[1] - x[1])
      process.stdout.write(`${n}: ${compiles.reduce((a, c) => a + c[1], 0)} compiles and deoptimizations; most: ${compiles.slice(0, 15).map(([w, c]) => `${w} ×${c}`).join(', ')}\n`)
    }
  }
  if (traceOut !== null) for (const n of names) appendFileSync(join(traceOut, `${n}.all.trace`), printed(n))
  if (tracing) for (const n of names) process.stdout.write(`${n}'s last mark-compact: ${totals[n].lastMarkCompact ?? 'none'}\n`)
  const keys = new Set([...totals.proxy.charged.keys(), ...totals.floor.charged.keys()])
  const rows = [...keys].map((k) => [k, per('proxy', totals.proxy.charged.get(k) ?? 0), per('floor', totals.floor.charged.get(k) ?? 0)])
  rows.sort((x, y) => Math.abs(y[1] - y[2]) - Math.abs(x[1] - x[2]))
  process.stdout.write('  proxy µs   floor µs   proxy−floor  charged to (sampled main thread, a request)\n')
  for (const [k, p, f] of rows.slice(0, top)) process.stdout.write(`${p.toFixed(1).padStart(10)} ${f.toFixed(1).padStart(10)} ${(p - f).toFixed(1).padStart(12)}  ${k}\n`)
  const sum = (n) => per(n, [...totals[n].charged.values()].reduce((a, b) => a + b, 0))
  process.stdout.write(`${sum('proxy').toFixed(1).padStart(10)} ${sum('floor').toFixed(1).padStart(10)} ${(sum('proxy') - sum('floor')).toFixed(1).padStart(12)}  all sampled\n`)
  process.stdout.write(`load average ${readFileSync('/proc/loadavg', 'utf8').trim()}\n`)
  await Promise.all(Object.values(pools).map((p) => p.close()))
} finally {
  await close()
}
