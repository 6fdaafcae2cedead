// The loop guard's cost as instructions per request, counts machine load does not move: the proxy process under
// `valgrind --tool=callgrind --separate-threads=yes` and, on Redis, redis-server under its own callgrind, for the
// requests of bench/loop-guard.mjs (a growing 24-message agent conversation, every request a new step), guard on
// (the default) and off (`loop_limit 0`) alternating in phases of --phase requests (the order swapped each pair).
// The result is (proxy + redis) on ÷ off over all phases, beside each pair's own ratio, three ways:
//   all     every thread of the proxy (V8's GC and compiler threads too) + redis;
//   main    the proxy's main thread + redis;
//   steady  all, less the self cost of V8's GC and optimizing compilers' functions (by name, callgrind_annotate).
//   npm run build && node bench/loop-guard-instructions.mjs [--store=sqlite|redis] [--scopes=one|growing]
//     [--warmup=12000] [--settle=500] [--phase=1000] [--pairs=4] [--control] [--keep=DIR]
// --warmup: requests (both keys, alternating every 40) with callgrind's instrumentation off (about 70 s for the
//   bench's 12,000); --settle: then as many instrumented, printed every 100 (after 12,000 they no longer fall:
//   flat but for bursts); --control: both halves guard off (an A/A run: the measure's own spread); --scopes: one
//   (one conversation past its 256 steps, the worst case) or growing (conversations of 40 requests, the common one).
//   --keep=DIR keeps the dumps: callgrind_annotate an on phase against an off one to see where the guard's go.
// Limits: instructions, not CPU time (cache misses, the kernel's time are not in it). Redis's count is its command
// path only (--toggle-collect readQueryFromClient and writeToClient: parsing, the Lua scripts, replies), so its
// cron, which runs by wall time, stays out; its guard-off phases repeat within 0.3 %. The proxy's repeat less well:
// besides GC and TurboFan (out of steady), JIT code replaced mid-run, SQLite's WAL checkpoints and the proxy's timers
// come in bursts a 1,000-request phase catches or not, so read the median pair. A/A (4 pairs of 1,000), main:
// SQLite median −0.8 % (pairs −2.6 to +2.3), Redis +0.4 % (−0.2 to +4.1). Measured guard on ÷ off, main, median
// pair: SQLite worst +11.8 % (8 pairs, 0.8 to 23.2), common +7.3 % (8 pairs, 2.0 to 10.3); Redis, before a step's
// first request went unbooked (reserve.lua 7b), common +8.2 % (4 pairs, 7.5 to 9.0), worst +7.6 % (4 pairs, 7.3 to
// 11.7), redis-server +61k/+64k instructions a request; after it common +3.4 % (4 pairs, 2.5 to 10.1), worst +3.1 %
// (4 pairs, −2.8 to 5.8), redis-server +32.5k (314.9k against 282.4k) and +46.7k (329.4k against 282.7k); its A/A
// main +0.2 % (−0.2 to +1.6). SQLite after a step's first request went unbooked (in flight by its reservation), a new
// step recorded by one insert, and the scope sizes kept (one session, main, 4 pairs each): common +1.6 % (−1.9 to 3.9)
// against the build before it +3.3 % (−19.6 to 6.7; an earlier run +5.6 %, 0.4 to 7.7), worst +4.1 % (2.4 to 47.7)
// against +6.2 % (0.2 to 51.8); its A/A main +2.0 % (−0.9 to 3.7). SQLite after a trimmed scope's order was kept (a
// trim one range delete; bench/sqlite-store.mjs --instructions counts the store's part), main, 4 pairs each: worst −7.2 %
// (−11.2 to −1.7) against the build before it +1.8 % (−25.9 to 8.9), common +0.2 % (−2.6 to 3.5) against +0.1 % (−20.9
// to 4.0); its A/A main +2.5 % (0.3 to 2.7): at these sizes a pair moves more than the change. About 6–8 min a run (phases ~20 s each, each batch after 5.5 s idle: see fresh).
// Loads 127.0.0.1 only; stops every process it starts;
// a run is bounded by TIME_LIMIT_MS. valgrind's vgdb pipes are named by $USER and $HOST: see CONTROL_ENV.
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createFakeUpstream } from './fake-upstream.mjs'
import { makeKeys, run } from './loop-guard.mjs'
import { freePort, ROOT, sleep } from './procs.mjs'

const option = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback
const store = option('store', 'sqlite')
const scopes = option('scopes', 'one')
const WARMUP = Number(option('warmup', 12000))
const SETTLE = Number(option('settle', 500))
const PHASE = Number(option('phase', 1000))
const PAIRS = Number(option('pairs', 4))
const control = process.argv.includes('--control')
const keep = option('keep', null)
const CHUNK = 40
const TIME_LIMIT_MS = 30 * 60_000
if (store !== 'sqlite' && store !== 'redis') throw new Error(`store must be sqlite or redis, not ${store}`)
if (!['one', 'many', 'growing'].includes(scopes)) throw new Error(`scopes must be one, many or growing, not ${scopes}`)

const dir = keep ?? mkdtempSync(join(tmpdir(), 'loop-guard-instructions-'))
mkdirSync(dir, { recursive: true })
const children = []
const watchdog = setTimeout(() => {
  for (const c of children) c.kill('SIGKILL')
  process.exit(2)
}, TIME_LIMIT_MS)

/** Spawns `valgrind --tool=callgrind` on `cmd args`; valgrind runs the program in its own process (same pid). */
function callgrind(name, vgArgs, cmd, args, env) {
  const out = openSync(join(dir, `${name}.log`), 'w')
  const child = spawn('valgrind', ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${dir}/${name}.%p`, ...vgArgs, cmd, ...args], {
    env, stdio: ['ignore', out, 'pipe'], cwd: ROOT,
  })
  closeSync(out)
  const log = openSync(join(dir, `${name}.valgrind`), 'w')
  let err = ''
  child.stderr.on('data', (d) => {
    err = (err + d).slice(-4000)
    writeSync(log, d)
  })
  child.once('exit', () => closeSync(log))
  children.push(child)
  return { child, err: () => err, name, env: name === 'redis' ? NAMELESS_ENV : CONTROL_ENV }
}

// valgrind names a process's vgdb pipes (which callgrind_control writes to) by its $LOGNAME or $USER and $HOST or
// $HOSTNAME, '???' where unset: the proxy's are CONTROL_ENV's; redis-server overwrites its environment (its process
// title), so it runs with none of them, and is controlled with none.
const CONTROL_ENV = { ...process.env, LOGNAME: process.env.LOGNAME ?? 'bench', USER: process.env.USER ?? 'bench', HOST: '127.0.0.1' }
const NAMELESS_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['LOGNAME', 'USER', 'HOST', 'HOSTNAME'].includes(k)))
const dumps = new Map()
/** Dumps (and so zeroes) the process's counts; returns the instructions since its last dump (steady: see below). */
function dump(p, label, steady = false) {
  const n = (dumps.get(p.name) ?? 0) + 1
  dumps.set(p.name, n)
  const said = execFileSync('callgrind_control', [`--dump=${label}`, String(p.child.pid)], { env: p.env, stdio: ['ignore', 'pipe', 'ignore'], timeout: 120_000 }).toString()
  if (!said.includes('OK')) throw new Error(`callgrind_control --dump ${p.name}: ${said}`)
  // One file a thread (--separate-threads=yes): <name>.<pid>.<n>-<thread>, thread 01 the main one.
  const prefix = `${p.name}.${p.child.pid}.${n}-`
  const threads = readdirSync(dir).filter((f) => f.startsWith(prefix)).sort()
  if (threads.length === 0) throw new Error(`no dump ${prefix}* in ${dir}`)
  const counts = threads.map((f) => {
    const text = readFileSync(join(dir, f), 'utf8')
    if (!text.includes(`dump ${label}`)) throw new Error(`${f} is not the dump ${label}`)
    return Number(/\n(?:totals|summary): (\d+)/.exec(text)[1])
  })
  const all = counts.reduce((a, b) => a + b, 0)
  // steady: all threads less V8's garbage collector and optimizing compilers (by function name, self cost), which
  // run in bursts a phase catches or not; the rest (JS, builtins, runtime, SQLite, libc) repeats request by request.
  const bursts = steady && p.name === 'proxy' ? threads.reduce((a, f) => a + burstInstructions(join(dir, f)), 0) : 0
  return { all, main: threads[0].endsWith('-01') ? counts[0] : 0, steady: all - bursts }
}

const GC = /IterateObjectCache|Isolate::Iterate|RootVisitor|Heap::|Scaveng|Mark(?:ing|er|Compact)|Sweep|Evacuat|GCTracer|heap::|Remembered|SlotSet|MemoryChunk|PagedSpace|NewSpace|Minor/
const COMPILE = /compiler::|Compiler|maglev|turboshaft|OptimizedCompilationJob/
/** A dump's self cost in V8's GC and optimizing compiler functions (callgrind_annotate, every function listed). */
function burstInstructions(file) {
  const text = execFileSync('callgrind_annotate', ['--inclusive=no', '--threshold=100', file], { maxBuffer: 256 << 20 }).toString()
  let n = 0
  for (const line of text.split('\n')) {
    const m = /^\s*([\d,]+) \([^)]*\)\s+(.*)$/.exec(line)
    if (m !== null && !m[2].includes('PROGRAM TOTALS') && (GC.test(m[2]) || COMPILE.test(m[2]))) n += Number(m[1].replaceAll(',', ''))
  }
  return n
}

const fake = createFakeUpstream({ promptTokens: 100 })
await new Promise((resolve) => fake.server.listen(0, '127.0.0.1', resolve))
let redis = null
let proxy = null
try {
  const env = {
    PATH: process.env.PATH ?? '', LOGNAME: CONTROL_ENV.LOGNAME, USER: CONTROL_ENV.USER, HOST: CONTROL_ENV.HOST, LOOPERS_ADMIN_PORT: '0', LOG_LEVEL: 'warn',
    LOOPERS_PRICING_PATH: join(ROOT, 'bench/prices.json'),
    LOOPERS_OPENAI_BASE_URL: `http://127.0.0.1:${fake.server.address().port}`, LOOPERS_OPENAI_API_KEY: 'sk-bench',
  }
  if (store === 'redis') {
    const port = await freePort()
    redis = callgrind('redis', ['--toggle-collect=readQueryFromClient', '--toggle-collect=writeToClient'], 'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--activerehashing', 'no', '--dir', dir], { PATH: env.PATH })
    await sleep(1500)
    Object.assign(env, { REDIS_URL: `redis://127.0.0.1:${port}`, LOOPERS_REDIS_TIMEOUT_MS: '60000' })
  } else {
    env.LOOPERS_DB = join(dir, 'loopers.db')
  }
  const port = await freePort()
  env.PORT = String(port)
  proxy = callgrind('proxy', ['--smc-check=all-non-file', '--instr-atstart=no'], process.execPath, [join(ROOT, 'dist/cli.js'), 'serve'], env)
  const url = `http://127.0.0.1:${port}`
  for (let t = 0; !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); t++) {
    if (t > 600 || proxy.child.exitCode !== null) throw new Error(`the proxy did not start: ${proxy.err()}`)
    await sleep(100)
  }
  const keys = await makeKeys(env, store, control)
  const next = { on: 1e6, off: 1e6 }
  const send = async (name, n) => {
    await run(url, keys[name], next[name], n, scopes)
    next[name] += n
  }
  const started = Date.now()
  const log = (s) => process.stderr.write(`[${Math.round((Date.now() - started) / 1000)} s] ${s}\n`)
  for (let done = 0; done < WARMUP; done += CHUNK) await send((done / CHUNK) % 2 === 0 ? 'on' : 'off', Math.min(CHUNK, WARMUP - done))
  log(`warm-up: ${WARMUP} requests uninstrumented`)
  execFileSync('callgrind_control', ['-i', 'on', String(proxy.child.pid)], { env: CONTROL_ENV, stdio: 'ignore', timeout: 120_000 })
  const procs = redis === null ? [proxy] : [proxy, redis]
  procs.forEach((p) => dump(p, 'start'))
  // The proxy closes a keep-alive connection idle for 5 s (keepAliveTimeoutMs of src/http/dual-server.ts), and the
  // dumps and callgrind_annotate block this process (execFileSync) for longer: fetch would then send a request on a
  // connection the proxy closed meanwhile, unseen ('other side closed', ECONNRESET: the worst-case run that stopped
  // at a pair). So each batch starts once every idle connection is closed, on new ones; the idle time's instructions
  // go with one more dump.
  const fresh = async (label) => {
    await sleep(5_500)
    procs.forEach((p) => dump(p, label))
  }
  /** Instructions per request since the last dumps: all threads (proxy + redis), and the proxy's main thread + redis. */
  const measure = (label, n) => {
    const [p, r = { all: 0 }] = procs.map((x) => dump(x, label, label.startsWith('phase-')))
    return {
      all: (p.all + r.all) / n, main: (p.main + r.all) / n, steady: (p.steady + r.all) / n,
      proxy: p.all / n, proxy_main: p.main / n, proxy_steady: p.steady / n, redis: r.all / n,
    }
  }
  const settle = []
  for (let done = 0; done < SETTLE; done += 100) {
    await fresh(`idle-settle-${done}`)
    for (let k = 0; k < 100; k += CHUNK) await send((k / CHUNK) % 2 === 0 ? 'on' : 'off', CHUNK)
    const m = measure(`settle-${done}`, 100)
    settle.push([Math.round(m.all), Math.round(m.main)])
    log(`settle ${done + 100}: instructions per request ${settle.at(-1).join(', main thread ')}`)
  }
  // Phases alternate on/off, the order swapped each pair (so a slow drift weighs both halves alike).
  const pairs = []
  for (let pair = 0; pair < PAIRS; pair++) {
    const per = {}
    for (const name of pair % 2 === 0 ? ['on', 'off'] : ['off', 'on']) {
      await fresh(`gap-${pair}-${name}`)
      await send(name, PHASE)
      per[name] = measure(`phase-${pair}-${name}`, PHASE)
    }
    pairs.push(per)
    const show = (m) => `${Math.round(m.all)} (main ${Math.round(m.main)}, steady ${Math.round(m.steady)})`
    log(`pair ${pair}: on ${show(per.on)}, off ${show(per.off)}`)
  }
  const mean = (name, field) => pairs.reduce((a, t) => a + t[name][field], 0) / PAIRS
  const pct = (r) => Math.round((r - 1) * 10000) / 100
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b)
    return v.length % 2 === 1 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2
  }
  const fields = redis === null ? ['all', 'main', 'steady'] : ['all', 'main', 'steady', 'proxy', 'proxy_main', 'proxy_steady', 'redis']
  const result = {
    store, scopes, control, warmup: WARMUP, settle: SETTLE, phase: PHASE, pairs: PAIRS,
    settle_instructions_per_request: settle,
    // all: every thread (the proxy's GC and JIT helper threads too); main: the proxy's main thread (+ redis);
    // steady: all less V8's GC and optimizing compilers (+ redis).
    instructions_per_request: Object.fromEntries(fields.map((f) => [f, { guard_on: Math.round(mean('on', f)), guard_off: Math.round(mean('off', f)) }])),
    overhead_pct: Object.fromEntries(fields.map((f) => [f, pct(mean('on', f) / mean('off', f))])),
    // The median pair: a burst (a checkpoint, a sweep, a big GC) lands in one phase, so the overall mean can lean.
    median_pair_overhead_pct: Object.fromEntries(['all', 'main', 'steady'].map((f) => [f, pct(median(pairs.map((t) => t.on[f] / t.off[f])))])),
    pair_overhead_pct: Object.fromEntries(['all', 'main', 'steady'].map((f) => [f, pairs.map((t) => pct(t.on[f] / t.off[f]))])),
  }
  console.log(JSON.stringify(result))
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)))
  fake.server.close()
  clearTimeout(watchdog)
  if (keep === null) rmSync(dir, { recursive: true, force: true })
  else process.stderr.write(`dumps kept in ${dir}: ${readdirSync(dir).filter((f) => f.includes('.')).length} files\n`)
}
