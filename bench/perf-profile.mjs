// Where the proxy's and the floor's main threads spend CPU per request over the measured requests only, by `perf`:
// each side (node with --perf-basic-prof, so JIT code has names) is fed the bench's non-streamed chat request
// open-loop at --rate, warmed up for --warmup ms, then `perf record -p PID -g` runs over the --duration ms of
// measured requests (side after side, order alternating per round). Samples of the main thread only (tid = pid)
// are sorted by their leaf frame into kernel, GC (a collector frame anywhere on the stack), V8 runtime (C++,
// grouped by the Runtime_ function that entered it), builtins (IC, interpreter, Sparkplug glue, calls, promises,
// other), JIT code by tier (TurboFan `*`, Sparkplug `^`, interpreted `~`) and by function, and Node's own C++.
// An IC or runtime sample is also charged to the JS function that called it (the nearest named JS frame), so a
// megamorphic site or runtime call on the request path shows its caller; each of our functions (dist/) is also
// given its inclusive time. `perf stat` counts, over the same window and thread, system calls, wake-ups, IPIs,
// sleeps and loopback packets, which load does not move as it moves time. With --trace, V8's --trace-opt,
// --trace-deopt and --trace-concurrent-recompilation lines written during the measured window are counted per
// function (optimizations, deopts and their reasons, TurboFan jobs refused because V8's queue of 8 was full): a
// hot function of ours that never reaches TurboFan or keeps deoptimizing shows there.
//   node bench/perf-profile.mjs [--cli=dist/cli.js] [--rate=500] [--duration=8000] [--warmup=5000] [--warmup-rate=RATE] [--rounds=1]
//                               [--freq=10000] [--trace] [--keep-maps] [--node-flags="…"] [--top=25] [--out=DIR]
//   node bench/perf-profile.mjs --curve=12 --duration=3000 [--rate=500]   (the warm-up curve; see --curve below)
// after `npm run build`; needs `perf` (software cpu-clock is enough) and root or perf_event_paranoid ≤ 1. Both
// sides run with the launcher's flags (as every floor does) plus --perf-basic-prof, which costs both alike.
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy, startTracedFloor } from './procs.mjs'
import { requestPair } from './scenarios.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '500'))
const durationMs = Number(arg('duration', '8000'))
const warmUpMs = Number(arg('warmup', '5000'))
// --warmup-rate: the warm-up's rate (default --rate); a high one brings V8's tiering to its steady state sooner.
const warmUpRate = Number(arg('warmup-rate', String(rate)))
const rounds = Number(arg('rounds', '1'))
const freq = Number(arg('freq', '10000'))
const top = Number(arg('top', '25'))
// --curve=N: instead of profiles, N buckets of --duration ms from start-up on, both sides fed at once (no warm-up),
// each bucket's main-thread CPU per request of both and V8's tiering events (implies --trace): how far from its
// steady state each side still is after so many requests, and what the ratio reads meanwhile.
const curve = Number(arg('curve', '0'))
const trace = process.argv.includes('--trace') || curve > 0
// --keep-maps: leave /tmp/perf-PID.map in place, so `perf report -i DIR/…data` can name JIT code afterwards.
const keepMaps = process.argv.includes('--keep-maps')
const out = arg('out', null) === null ? mkdtempSync(join(tmpdir(), 'loopers-perf-profile-')) : resolve(arg('out'))
const BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })
mkdirSync(out, { recursive: true })
const add = (map, key, n) => map.set(key, (map.get(key) ?? 0) + n)

// Counted over the same window: system calls, wake-ups this thread makes (another thread or process on either core:
// each one of an idle core costs an inter-processor interrupt, which a VM pays dearly), IPIs sent, and its own sleeps.
const STAT_EVENTS = ['raw_syscalls:sys_enter', 'sched:sched_waking', 'ipi:ipi_send_cpu', 'sched:sched_switch', 'net:net_dev_queue', 'net:netif_receive_skb', 'sock:sk_data_ready']
// A sample with any of these frames on its stack is the collector's.
const GC = /Heap::CollectGarbage|Heap::PerformGarbageCollection|ScavengerCollector|Scavenger::|MarkCompactCollector|IncrementalMarking|MinorMarkSweep|Heap::Scavenge|Sweeper::|ConcurrentMarking/
const KERNEL_DSO = /^\[kernel|^\[vdso/
// --node-flags="…": more node flags for both sides (after the launcher's), e.g. a V8 tiering flag to try.
const extraFlags = arg('node-flags', '').split(/\s+/).filter(Boolean)
// --perf-basic-prof also writes V8's log per isolate: into the output directory, not the working one.
const PROF_FLAGS = [...(curve > 0 ? [] : ['--perf-basic-prof', `--logfile=${join(out, 'v8.log')}`]), ...(trace ? ['--trace-opt', '--trace-deopt', '--trace-concurrent-recompilation'] : []), ...extraFlags]

/** Adds the main thread's counts in `perf stat -x , --per-thread` output `file` to `counts` (event → count). */
function readStat(file, pid, counts) {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [thread, value, , event] = line.split(',')
    if (thread === undefined || !thread.endsWith(`-${pid}`) || !STAT_EVENTS.includes(event)) continue
    add(counts, event, Number(value) || 0)
  }
}

/** CPU time of the main thread (tid = pid) in ms, from schedstat. */
function mainThreadMs(pid) {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
}

function newTally() {
  return { samples: 0, period: 0, category: new Map(), leaf: new Map(), jit: new Map(), icCaller: new Map(), runtime: new Map(), origin: new Map(), inclusive: new Map(), cxxBuiltin: new Map() }
}


/** The category of a sample from its frames (leaf first), each { sym, dso }. */
function categorize(frames) {
  if (frames.some((f) => GC.test(f.sym))) return 'GC'
  const { sym, dso } = frames[0]
  if (KERNEL_DSO.test(dso)) return 'kernel'
  const js = /^JS:([*^~+]?)/.exec(sym)
  if (js !== null) return { '*': 'JIT TurboFan', '^': 'JIT Sparkplug', '~': 'JIT interpreted', '+': 'JIT Maglev', '': 'JIT other' }[js[1]]
  const builtin = /^(?:Builtins_|Builtin:|BytecodeHandler:)(.*)$/.exec(sym)?.[1] ?? null
  if (builtin !== null) return builtinCategory(builtin, sym)
  if (sym.startsWith('v8::internal::') || sym.startsWith('v8::') || /^(Runtime_|v8_|Builtins::)/.test(sym)) return 'V8 runtime (C++)'
  if (sym.startsWith('node::') || sym.startsWith('uv_') || sym.startsWith('llhttp') || /libuv/.test(dso)) return 'Node/libuv/llhttp (C++)'
  if (/libc|libstdc|ld-linux|libm\b/.test(dso)) return 'libc/libstdc++'
  if (/perf-\d+\.map/.test(dso)) return 'JIT other'
  if (dso === '[unknown]' || sym === '[unknown]') return 'unknown'
  return 'other native'
}

function builtinCategory(name, sym) {
  if (sym.startsWith('BytecodeHandler:') || /^Interpreter|Handler$|^(Lda|Sta|Star|Ldar|Mov|Jump|Test|Call|Construct|Return|Add|Sub|Inc|Dec|Create|ForIn|Get|Set|Throw|Wide|ExtraWide|Debug|Suspend|Resume|SwitchOnGenerator)[A-Za-z]*Handler/.test(name)) return 'builtins: interpreter'
  if (/IC(_|$)|IC[A-Z]|Megamorphic|Polymorphic|LoadGlobal|StoreGlobal|KeyedHas|Proxy(Get|Set|Has)Property|CloneObject|InstanceOf|LookupContext/.test(name)) return 'builtins: IC'
  if (/Baseline|OnStackReplacement|^BaselineOutOf/.test(name)) return 'builtins: Sparkplug glue'
  if (/^CEntry|^CallApiCallback|^CallApiGetter|^DirectCEntry/.test(name)) return 'builtins: C++ entry'
  if (/^(Call|Construct|JSEntry|JSConstructEntry|JSEntryTrampoline|JSConstructStub|ArgumentsAdaptor|Generic|CallFunction|CallBoundFunction|CallVarargs|CallWithSpread|CallForwardVarargs|Apply|FastNewClosure|FunctionPrototype(Apply|Call|Bind)|ReflectApply|CompileLazy|InstantiateAsmJs)/.test(name)) return 'builtins: call/entry'
  if (/Promise|Async|Microtask|Await|Generator|Resume/.test(name)) return 'builtins: promise/async'
  return 'builtins: other'
}

/** Adds the main thread's samples in perf data file `data` to `t`. */
function readSamples(data, pid, t) {
  const r = spawnSync('perf', ['script', '-i', data, '--tid', String(pid), '-F', 'tid,period,ip,sym,dso', '--no-demangle'], { maxBuffer: 2 ** 31 - 1, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`perf script: ${r.stderr}`)
  const demangle = makeDemangler(r.stdout)
  let frames = []
  let period = 0
  const flush = () => {
    if (frames.length === 0) return
    for (const f of frames) f.sym = demangle(f.sym)
    const category = categorize(frames)
    t.samples++
    t.period += period
    add(t.category, category, period)
    add(t.leaf, `${frames[0].sym}`, period)
    if (category.startsWith('JIT')) {
      add(t.jit, frames[0].sym, period)
      add(t.origin, originOf(frames[0].sym), period)
    }
    if (category === 'builtins: IC' || category === 'V8 runtime (C++)' || category === 'builtins: C++ entry') {
      const caller = frames.find((f) => f.sym.startsWith('JS:'))?.sym ?? '(no JS frame)'
      add(t.icCaller, `${category === 'builtins: IC' ? 'IC' : 'runtime'} ← ${caller}`, period)
    }
    // Inclusive: each function of ours on the stack (once a sample), and each C++ builtin (JSON.parse, Date.now, …).
    for (const f of new Set(frames.map((f) => f.sym))) if (/^JS:.*\/dist\//.test(f)) add(t.inclusive, f.replace(/^JS:[*^~+']*/, ''), period)
    const cxx = frames.find((f) => /^v8::internal::Builtin_/.test(f.sym))
    if (cxx !== undefined) add(t.cxxBuiltin, cxx.sym.slice('v8::internal::'.length), period)
    if (category === 'V8 runtime (C++)') {
      const entry = frames.find((f) => /Runtime_|Builtins_CallApiCallback|Builtins_CEntry/.test(f.sym))?.sym ?? frames[0].sym
      add(t.runtime, entry, period)
    }
    frames = []
  }
  for (const line of r.stdout.split('\n')) {
    if (line.length === 0) continue
    if (!line.startsWith('\t') && !line.startsWith(' '.repeat(8))) {
      flush()
      const m = /^\s*(\d+)\s+(\d+)/.exec(line)
      period = m === null ? 1 : Number(m[2])
      continue
    }
    const m = /^\s+[0-9a-f]+\s+(.*?)\s+\(([^)]*)\)\s*$/.exec(line)
    if (m !== null) frames.push({ sym: m[1].replace(/\+0x[0-9a-f]+$/, ''), dso: m[2] })
  }
  flush()
}

/** c++filt over every mangled symbol in `text` at once (one process), as a lookup. */
function makeDemangler(text) {
  const mangled = [...new Set(text.match(/\b_Z[\w.$]+/g) ?? [])]
  const r = mangled.length === 0 ? null : spawnSync('c++filt', { input: mangled.join('\n'), encoding: 'utf8', maxBuffer: 2 ** 30 })
  const names = new Map()
  if (r !== null && r.status === 0) {
    const lines = r.stdout.split('\n')
    mangled.forEach((m, i) => names.set(m, (lines[i] ?? m).replace(/\(.*$/, '')))
  }
  return (sym) => names.get(sym) ?? sym
}

/** Where a JIT function's code comes from: our dist/ file, a package, or Node's internals. */
function originOf(sym) {
  const url = / (\S+):\d+:\d+$/.exec(sym)?.[1] ?? ''
  if (url.startsWith('node:')) return 'node: internals'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]
  const dist = /\/dist\/(.+)$/.exec(url)
  if (dist !== null) return `loopers dist/${dist[1]}`
  if (/\/bench\//.test(url)) return 'bench (floor)'
  return url === '' ? '(no file)' : url
}

const us = (period, served) => (period / 1000 / Math.max(1, served)).toFixed(1)

function topOf(map, n) {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, n)
}

function shortSym(sym) {
  return sym.replace(/file:\/\/\S*\/(dist|node_modules)\//, '$1/').replace(/ \/\S*\/(dist|node_modules)\//, ' $1/')
}

function print(name, t, served, cpuMs) {
  const w = (s) => process.stdout.write(`${s}\n`)
  w(`\n== ${name}: ${served} requests at ${rate}/s; main thread ${((1000 * cpuMs) / served).toFixed(1)} µs CPU a request (schedstat), ${us(t.period, served)} µs sampled (${t.samples} samples)`)
  w('  by category (µs a request):')
  for (const [k, v] of topOf(t.category, 50)) w(`    ${us(v, served).padStart(6)}  ${k}`)
  w('  JIT code by origin:')
  for (const [k, v] of topOf(t.origin, 12)) w(`    ${us(v, served).padStart(6)}  ${k}`)
  w(`  top ${top} leaf symbols:`)
  for (const [k, v] of topOf(t.leaf, top)) w(`    ${us(v, served).padStart(6)}  ${shortSym(k)}`)
  w('  V8 runtime by entry:')
  for (const [k, v] of topOf(t.runtime, 12)) w(`    ${us(v, served).padStart(6)}  ${shortSym(k)}`)
  w('  C++ builtins, inclusive:')
  for (const [k, v] of topOf(t.cxxBuiltin, 10)) w(`    ${us(v, served).padStart(6)}  ${k}`)
  w('  our functions (dist/), inclusive:')
  for (const [k, v] of topOf(t.inclusive, top)) w(`    ${us(v, served).padStart(6)}  ${shortSym(k)}`)
  w('  IC and runtime samples by the JS function that called them:')
  for (const [k, v] of topOf(t.icCaller, top)) w(`    ${us(v, served).padStart(6)}  ${shortSym(k)}`)
}

function printDiff(tally, served) {
  process.stdout.write('\n== proxy − floor, µs a request, by category\n')
  const keys = new Set([...tally.proxy.category.keys(), ...tally.floor.category.keys()])
  const rows = [...keys].map((k) => [k, (tally.proxy.category.get(k) ?? 0) / 1000 / served.proxy - (tally.floor.category.get(k) ?? 0) / 1000 / served.floor])
  for (const [k, d] of rows.sort((a, b) => b[1] - a[1])) process.stdout.write(`    ${(d >= 0 ? '+' : '') + d.toFixed(1)}`.padEnd(12) + `${k}\n`)
  const total = tally.proxy.period / 1000 / served.proxy - tally.floor.period / 1000 / served.floor
  process.stdout.write(`    ${(total >= 0 ? '+' : '') + total.toFixed(1)}`.padEnd(12) + 'all sampled\n')
}

/** --curve: `curve` buckets of `durationMs`, both sides at `rate` at once; per bucket CPU per request and tiering events. */
async function printCurve(sides, request) {
  const names = ['proxy', 'floor']
  const pools = Object.fromEntries(names.map((n) => [n, createPool(sides[n].url, 256)]))
  const seen = Object.fromEntries(names.map((n) => [n, sides[n].lines().length]))
  let served = 0
  process.stdout.write(`requests (each side) | main-thread µs a request: proxy, floor, ratio | TurboFan jobs done, refused (queue full), deopts: proxy; floor\n`)
  for (let b = 0; b < curve; b++) {
    const before = Object.fromEntries(names.map((n) => [n, mainThreadMs(sides[n].pid)]))
    // A pool openLoop destroyed (its stragglers outlived the drain) is replaced before the next bucket.
    for (const n of names) if (pools[n].destroyed) pools[n] = createPool(sides[n].url, 256)
    const runs = await Promise.all(names.map((n) => openLoop({ origin: sides[n].url, request, rate, durationMs, pool: pools[n] })))
    const us = names.map((n, i) => (1000 * (mainThreadMs(sides[n].pid) - before[n])) / Math.max(1, runs[i].ok))
    const counts = names.map((n) => {
      const text = sides[n].lines()
      const lines = text.slice(seen[n]).split('\n')
      seen[n] = text.length
      const count = (re) => lines.filter((l) => re.test(l)).length
      return `${count(/^\[completed optimizing/)}, ${count(/Compilation queue full/)}, ${count(/^\[bailout/)}`
    })
    served += runs[0].ok
    process.stdout.write(`${String(served).padStart(8)} | ${us[0].toFixed(0).padStart(5)} ${us[1].toFixed(0).padStart(5)} ${(us[0] / us[1]).toFixed(3)} | ${counts.join('; ')}\n`)
  }
  await Promise.all(Object.values(pools).map(closePool))
}

/** Closes `pool`, or nothing when openLoop destroyed it already (close would reject with undici's ClientDestroyedError). */
async function closePool(pool) {
  if (!pool.destroyed) await pool.close()
}

/** Counts --trace-opt / --trace-deopt lines per function (and deopt reasons) in `text`. */
function printTrace(name, text) {
  const counts = new Map()
  const lines = text.split('\n')
  const count = (re) => lines.filter((l) => re.test(l)).length
  process.stdout.write(`\n== ${name}: ${count(/^\[completed optimizing/)} TurboFan jobs done, ${count(/Compilation queue full/)} refused (queue full), ${count(/^\[bailout/)} deopts\n`)
  for (const line of lines) {
    const fn = /<JSFunction (\S*)/.exec(line)?.[1] ?? null
    if (fn === null) continue
    let what = null
    if (line.includes('Compilation queue full')) what = 'TurboFan queue full'
    else if (line.startsWith('[bailout')) what = `deopt (${/kind: ([^,)]+)(?:, reason: ([^)]+))?/.exec(line)?.slice(1).filter(Boolean).join(': ')})`
    else if (line.startsWith('[completed optimizing')) what = 'optimized'
    else if (line.startsWith('[marking')) what = 'marked'
    if (what !== null) add(counts, `${what} ${fn || '(anonymous)'}`, 1)
  }
  process.stdout.write(`   tiering events in the measured window, by function:\n`)
  if (counts.size === 0) process.stdout.write('    none\n')
  for (const [k, v] of topOf(counts, 40)) process.stdout.write(`    ${String(v).padStart(5)}  ${k}\n`)
}

async function main() {
  const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-perf-', { watchdogMs: 10 * 60_000, fake: { completionTokens: 16 } })
  const sides = {}
  try {
    sides.proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath, nodeOptions: PROF_FLAGS })
    sides.proxy.lines = () => readFileSync(sides.proxy.logFile, 'utf8')
    started.push(sides.proxy)
    sides.floor = await startTracedFloor({ upstreamUrl: fake.url, redisUrl: redis.url, pin: pinning.used, cliPath, nodeArgs: PROF_FLAGS })
    started.push(sides.floor)
    const request = requestPair(await createBenchKey(redis.url, 'bench-perf'), BODY).proxied
    const tally = { proxy: newTally(), floor: newTally() }
    const served = { proxy: 0, floor: 0 }
    const cpuMs = { proxy: 0, floor: 0 }
    const traced = { proxy: '', floor: '' }
    const events = { proxy: new Map(), floor: new Map() }
    if (curve > 0) return await printCurve(sides, request)
    for (let round = 0; round < rounds; round++) {
      for (const name of round % 2 === 0 ? ['proxy', 'floor'] : ['floor', 'proxy']) {
        const side = sides[name]
        let pool = createPool(side.url, 256)
        await openLoop({ origin: side.url, request, rate: warmUpRate, durationMs: warmUpMs, pool })
        // Under load the warm-up's stragglers may outlive its drain, and openLoop destroys the pool: measure on a new one.
        if (pool.destroyed) pool = createPool(side.url, 256)
        const data = join(out, `${name}-${round}.data`)
        const perf = spawn('perf', ['record', '-q', '-F', String(freq), '-g', '-p', String(side.pid), '-o', data], { stdio: ['ignore', 'ignore', 'inherit'] })
        const statFile = join(out, `${name}-${round}.stat`)
        const stat = spawn('perf', ['stat', '-x', ',', '--per-thread', '-e', STAT_EVENTS.join(','), '-p', String(side.pid), '-o', statFile], { stdio: ['ignore', 'ignore', 'inherit'] })
        const perfExited = Promise.all([perf, stat].map((p) => new Promise((ok) => p.once('exit', ok))))
        await sleep(500)
        if (perf.exitCode !== null || stat.exitCode !== null) throw new Error(`perf exited (${perf.exitCode}, ${stat.exitCode})`)
        const traceFrom = side.lines().length
        const cpuBefore = mainThreadMs(side.pid)
        const r = await openLoop({ origin: side.url, request, rate, durationMs, pool })
        cpuMs[name] += mainThreadMs(side.pid) - cpuBefore
        traced[name] += side.lines().slice(traceFrom)
        perf.kill('SIGINT')
        stat.kill('SIGINT')
        await perfExited
        readStat(statFile, side.pid, events[name])
        served[name] += r.ok
        await closePool(pool)
        readSamples(data, side.pid, tally[name])
      }
    }
    for (const name of ['proxy', 'floor']) print(name, tally[name], served[name], cpuMs[name])
    printDiff(tally, served)
    process.stdout.write('\n== main thread events a request (perf stat): proxy, floor\n')
    for (const e of STAT_EVENTS) process.stdout.write(`    ${((events.proxy.get(e) ?? 0) / served.proxy).toFixed(2).padStart(7)} ${((events.floor.get(e) ?? 0) / served.floor).toFixed(2).padStart(7)}  ${e}\n`)
    if (trace) for (const name of ['proxy', 'floor']) {
      writeFileSync(join(out, `${name}-trace.txt`), traced[name])
      printTrace(name, traced[name])
    }
    process.stdout.write(`\nperf data in ${out}\n`)
  } finally {
    await close()
    if (!keepMaps) for (const side of Object.values(sides)) rmSync(`/tmp/perf-${side.pid}.map`, { force: true })
  }
}

await main()
