// Is a lone request dearer in instructions or in misses? Counts machine load does not move, proxy against the floor:
// each side (the floor of bench/floor.mjs and `node <cli> serve`, with the launcher's flags, on one Redis and the fake
// upstream) runs under `valgrind --tool=callgrind --separate-threads=yes --dump-instr=yes`, instrumentation off for
// its warm-up, then per request of the bench's one-line chat, on the main thread:
//   isolated  one request at a time, --gap ms between them (the event loop idle between requests, as at a low rate),
//             less what the same side runs idle for as long (its timers: an idle phase of the same wall time);
//   batched   closed loop, --concurrency at a time (the peak's shape);
// Ir (instructions), with --cache-sim=yes also I1/D1/LL misses (callgrind's own cache model: one process, nothing
// else evicting, so it shows a working set beyond L1 only, not the cold cache a real core leaves between requests),
// and the code a request runs: distinct instructions and distinct 64-byte code lines executed over the phase, and
// the functions with any instruction (JIT code and builtins are nameless addresses to valgrind, each counted).
//   npm run build && node bench/open-instructions.mjs [--cli=dist/cli.js] [--warmup=6000] [--isolated=200] [--gap=20]
//     [--batched=2000] [--concurrency=64] [--settle-rounds=8] [--settle-lone=400] [--open=RATE,… [--open-count=200]]
//     [--cache-sim] [--keep=DIR [--names]]
// After its warm-up each side is settled: rounds of --settle-lone lone and 1,000 batched requests, counted, until a
// round's main thread runs under 50 instructions a request in V8's compilers (--settle-rounds at most; the log says
// when it gave up). The lone requests are many because a lone request runs code the closed-loop warm-up hardly does
// (a key's lone reserve and settle are sent at once, not batched): with 50 a round, the proxy's isolated phase still
// ran ioredis's sendCommand and Command, reserveWith, settleWith, ScriptCommand in Sparkplug code (7.5k instructions a
// request of their own, and the inline-cache builtins they call), after rounds that compiled under 50 a request.
// The build of session 33's start, isolated, proxy against floor: with 50 lone a round 348k against 301k and 349k
// against 303k (1.16×, 1.15×; LoadIC and KeyedLoadIC 40k a request); with 400, 311k against 306k (1.01×; 26k against
// the floor's 28k; Sparkplug code 2.0k a request, reserveWith and settleWith still there after 1,600 lone requests). Under valgrind the compiler threads lag far behind: a side counted right after a warm-up of 6,000 may still run
// functions in baseline code and finish TurboFan jobs on its main thread, and that tier-up was read as its working
// set. Each phase's compiler instructions a request are in the output (compile_ir_per_request).
// --cli: the proxy build (e.g. an older dist/cli.js for an A/B); --keep=DIR keeps the dumps (callgrind_annotate them);
// --names: both sides with node's --perf-basic-prof, and its map of JIT code (perf-PID.map: names, with V8's tier mark,
// ~ interpreted or baseline, * optimized) copied into DIR, to name the dumps' nameless addresses.
// Measured (Redis, the one-liner, warm-up 16,000, 200 isolated 20 ms apart, 2,000 batched at 64; main thread, per
// request, proxy against floor; three runs, the spread is the proxy's from run to run, the floor's within 5 %):
//   instructions   isolated 299k-332k against 293k-314k (0.95-1.13×); batched 247k-258k against 261k-266k (0.93-0.99×)
//   isolated ÷ batched  proxy 1.21-1.28, floor 1.12-1.18 (the floor's extra alone: Node's per-callback scopes, uv__io_poll)
//   I1 / D1 read misses (--cache-sim)  isolated 15.1k / 6.8k against 13.0k / 4.9k; batched 9.5k / 4.3k against 8.9k / 3.8k
//   code run over a phase  isolated 598-934 KiB against 467-651 KiB; batched 696-920 KiB against 599-670 KiB
// So a lone request runs about the floor's instructions; what it has more is working set (code 1.1-2.0×, D1 read misses
// 1.4× alone). V8's worker threads: under 20k instructions a request on either side.
// Part of that was tier-up, not working set: in a run of the same build with a warm-up of 6,000 (no settling), the
// proxy's isolated phase still ran 72 functions in baseline code (sendCommand, reserve, newRequestId, settle, …: 668
// I1 misses, 804 code lines a request) and TurboFan's main-thread steps (JSHeapBroker, code finalizing); the
// floor's, 27. Counted once no compile runs (isolated, raw, per request, with the cache model), proxy against floor,
// the build before slab-written script commands with a warm-up of 16,000, then the build after them settled: Ir 298k
// against 293k, 309k against 316k; I1 misses 14.4k against 13.0k, 14.5k against 13.4k (1.11×, 1.08×); D1 read misses
// 6.0k against 5.0k, 6.2k against 5.3k (1.22×, 1.16×); code run over the phase 620 against 557 KiB (1.11×) in the
// first, where neither side compiled at all.
// The open loop's shape (--open=10,25: 200 requests each, the native 500 req/s ÷ 50 and ÷ 20; session 34's start,
// settled, --cache-sim, main thread, per request less idle, proxy against floor): Ir 259.7k against 298.1k (0.87×) and
// 268.1k against 278.4k (0.96×); I1 misses 10.2k against 12.5k, 9.8k against 11.4k; D1 read misses 4.6k against 5.0k,
// 4.5k against 4.7k; in the same run isolated 305.4k against 306.5k, batched 249.2k against 265.8k. So the open loop's
// native 1.17-1.23× is not in instructions nor in the misses of callgrind's private cache model; what the proxy has
// more there is code: 876 against 666 KiB run over the open-10 phase (2,188 against 1,774 functions; its lone and its
// batched store paths both run: reserveBatch, settleBatch, flushTurn).
// Loads 127.0.0.1 only, bounded (TIME_LIMIT_MS); stops every process it starts.
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Pool } from 'undici'
import { ONE_LINE_BODY } from './body-option.mjs'
import { createBenchKey, freePort, launcherEnv, launcherFlags, ROOT, sleep, startFake, startRedis } from './procs.mjs'
import { requestPair } from './scenarios.mjs'

const option = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cli = resolve(option('cli', join(ROOT, 'dist/cli.js')))
const WARMUP = Number(option('warmup', 6000))
const ISOLATED = Number(option('isolated', 200))
const GAP_MS = Number(option('gap', 20))
const BATCHED = Number(option('batched', 2000))
const CONCURRENCY = Number(option('concurrency', 64))
const SETTLE_ROUNDS = Number(option('settle-rounds', 8))
const SETTLE_LONE = Number(option('settle-lone', 400))
const SETTLE_BATCHED = 1000
// --open=RATE[,RATE…]: open-loop phases after the batched one, --open-count requests each sent every 1/RATE s whatever
// came back (bench/load.mjs' openLoop); under callgrind the main thread runs ~50× slower, so RATE ~ the native rate ÷ 50
// keeps about the native open loop's requests in flight and idle fraction. Per request less the idle phase's cost
// for the same wall time (open_per_request), and raw.
const OPEN_RATES = option('open', '').split(',').filter(Boolean).map(Number)
const OPEN_COUNT = Number(option('open-count', 200))
const cacheSim = process.argv.includes('--cache-sim')
const keep = option('keep', null)
const names = keep !== null && process.argv.includes('--names')
const TIME_LIMIT_MS = 30 * 60_000

const dir = keep ?? mkdtempSync(join(tmpdir(), 'open-instructions-'))
mkdirSync(dir, { recursive: true })
const children = []
const watchdog = setTimeout(() => {
  for (const c of children) c.kill('SIGKILL')
  process.exit(2)
}, TIME_LIMIT_MS)

// valgrind names a process's vgdb pipes (which callgrind_control writes to) by $USER/$LOGNAME and $HOST.
const NAMES = { LOGNAME: process.env.LOGNAME ?? 'bench', USER: process.env.USER ?? 'bench', HOST: '127.0.0.1' }

/** `node <nodeArgs>` under callgrind, instrumentation off until switched on; its stdout kept in `out()`. */
function callgrind(name, nodeArgs, env) {
  const vg = ['--tool=callgrind', '--separate-threads=yes', '--dump-instr=yes', '--compress-pos=no', '--compress-strings=no',
    '--smc-check=all-non-file', '--instr-atstart=no', `--callgrind-out-file=${dir}/${name}.%p`, ...(cacheSim ? ['--cache-sim=yes'] : [])]
  const err = openSync(join(dir, `${name}.err`), 'w')
  const child = spawn('valgrind', [...vg, process.execPath, ...(names ? ['--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${join(dir, `${name}-v8.log`)}`] : []), ...nodeArgs], { env: { ...env, ...NAMES }, stdio: ['ignore', 'pipe', err], cwd: ROOT })
  closeSync(err)
  let text = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d) => (text = (text + d).slice(-8000)))
  children.push(child)
  return { name, child, out: () => text, dumps: 0 }
}

/** Dumps (and zeroes) the side's counts; returns its main thread's totals and code footprint since the last dump. */
function dump(side, label) {
  side.dumps++
  const said = execFileSync('callgrind_control', [`--dump=${label}`, String(side.child.pid)], { env: { ...process.env, ...NAMES }, stdio: ['ignore', 'pipe', 'ignore'], timeout: 300_000 }).toString()
  if (!said.includes('OK')) throw new Error(`callgrind_control --dump ${side.name}: ${said}`)
  const file = join(dir, `${side.name}.${side.child.pid}.${side.dumps}-01`)
  const result = readMain(file, label)
  if (keep === null) for (const f of readdirSync(dir)) if (f.startsWith(`${side.name}.${side.child.pid}.${side.dumps}-`)) rmSync(join(dir, f))
  return result
}

/** A main-thread dump's event totals, its distinct instructions and code lines, and functions with any instruction. */
function readMain(file, label) {
  const text = readFileSync(file, 'utf8')
  if (!text.includes(`dump ${label}`)) throw new Error(`${file} is not the dump ${label}`)
  const events = /\nevents: ([^\n]+)/.exec(text)[1].trim().split(/\s+/)
  const totals = /\n(?:totals|summary): ([^\n]+)/.exec(text)[1].trim().split(/\s+/).map(Number)
  // positions: instr line — an instruction's address and source line come before its costs.
  const at = /\npositions: ([^\n]+)/.exec(text)[1].trim().split(/\s+/).length
  const instructions = new Set()
  const functions = new Set()
  let fn = null
  let compiling = false
  let compileIr = 0
  let afterCall = false
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) {
      fn = line.slice(3)
      compiling = COMPILING.test(fn)
    } else if (line.startsWith('calls=')) afterCall = true
    else if (line.startsWith('0x')) {
      // The line after calls= carries the call's inclusive cost at the calling instruction: not an instruction's own.
      if (afterCall) afterCall = false
      else {
        const fields = line.split(' ')
        const ir = Number(fields[at])
        if (ir > 0) {
          instructions.add(fields[0])
          functions.add(fn)
          if (compiling) compileIr += ir
        }
      }
    }
  }
  const lines = new Set([...instructions].map((a) => BigInt(a) >> 6n))
  return { ...Object.fromEntries(events.map((e, i) => [e, totals[i] ?? 0])), distinctInstructions: instructions.size, codeLines: lines.size, functions: functions.size, compileIr }
}

// V8's compilers' own functions: what the main thread runs of a TurboFan job (prepare, finalize) or a Sparkplug batch.
const COMPILING = /v8::internal::(compiler::|baseline::|Compiler::|OptimizedCompilationJob|TurbofanCompilationJob|TieringManager::)/
// A side is warm when a settling round runs fewer compiler instructions than this a request on its main thread.
const SETTLED_COMPILE_IR = 50

let redis = null
let fake = null
const pools = []
try {
  redis = await startRedis({ pin: false, dir })
  fake = await startFake({ pin: false })
  await fake.reset({ completionTokens: 16 })
  const base = {
    PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? dir, ...launcherEnv(cli),
  }
  const floorPort = await freePort()
  const proxyPort = await freePort()
  const sides = [
    {
      ...callgrind('proxy', [...launcherFlags(cli), cli, 'serve'], {
        ...base, REDIS_URL: redis.url, HOST: '127.0.0.1', PORT: String(proxyPort), LOOPERS_ADMIN_HOST: '127.0.0.1', LOOPERS_ADMIN_PORT: '0',
        LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_OPENAI_API_KEY: 'sk-bench-upstream', LOOPERS_PRICING_PATH: join(ROOT, 'bench/prices.json'),
        LOG_LEVEL: 'warn', LOOPERS_SHUTDOWN_GRACE_MS: '2000', LOOPERS_REDIS_TIMEOUT_MS: '60000',
        // No idle release: on a loaded machine the idle phase outlasts its 30 s, and its full collections (with the
        // re-optimizing after them) would be taken off the isolated phase as the proxy's idle cost.
        LOOPERS_IDLE_RELEASE_MS: '0',
      }),
      url: `http://127.0.0.1:${proxyPort}`,
    },
    { ...callgrind('floor', [...launcherFlags(cli), join(ROOT, 'bench/floor.mjs'), `--upstream=${fake.url}`, `--port=${floorPort}`, '--store=redis', `--redis=${redis.url}`], base), url: `http://127.0.0.1:${floorPort}` },
  ]
  const key = await createBenchKey(redis.url, 'bench-open')
  const request = requestPair(key, ONE_LINE_BODY).proxied
  const started = Date.now()
  const log = (s) => process.stderr.write(`[${Math.round((Date.now() - started) / 1000)} s] ${s}\n`)
  for (const side of sides) {
    // Up to ten minutes: under valgrind on a machine other loads share, a start took more than two.
    for (let t = 0; ; t++) {
      if (t > 6000 || side.child.exitCode !== null) throw new Error(`${side.name} did not start: ${readFileSync(join(dir, `${side.name}.err`), 'utf8').slice(-2000)}`)
      // The floor says it listens on stdout; the proxy answers /health.
      if (side.name === 'floor' ? side.out().includes('{"url"') : await fetch(`${side.url}/health`).then((r) => r.ok, () => false)) break
      await sleep(100)
    }
    side.pool = new Pool(side.url, { connections: CONCURRENCY, pipelining: 1, keepAliveTimeout: 600_000, headersTimeout: 600_000, bodyTimeout: 600_000 })
    pools.push(side.pool)
  }
  const send = async (side) => {
    const r = await side.pool.request({ path: request.path, method: 'POST', headers: request.headers, body: request.body })
    await r.body.text()
    if (r.statusCode !== 200) throw new Error(`${side.name}: status ${r.statusCode}`)
  }
  const closed = async (side, n) => {
    let left = n
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (left > 0) {
        left--
        await send(side)
      }
    }))
  }
  const results = {}
  for (const side of sides) {
    // Each side warmed just before it is measured, the proxy first: a proxy left idle for LOOPERS_IDLE_RELEASE_MS
    // (30 s, less than the floor's measuring takes under valgrind) releases memory with full collections after which
    // its request path is optimized anew, and would be measured re-warming (~2.4× the instructions a request).
    await closed(side, WARMUP)
    log(`${side.name}: warm-up of ${WARMUP} requests`)
    execFileSync('callgrind_control', ['-i', 'on', String(side.child.pid)], { env: { ...process.env, ...NAMES }, stdio: 'ignore', timeout: 120_000 })
    // Every connection of the measured phases opened (and the pool's sockets warm) before counting.
    await closed(side, CONCURRENCY * 4)
    // Under valgrind V8's compiler threads lag far behind the main thread: after the warm-up a side may still run
    // functions in baseline code and finish TurboFan jobs on its main thread, which would be counted as its requests'
    // cost. Rounds of requests, lone and batched, until a round finishes no compile (or --settle-rounds).
    let settling = 0
    for (; settling < SETTLE_ROUNDS; settling++) {
      dump(side, 'settle')
      for (let i = 0; i < SETTLE_LONE; i++) {
        await sleep(GAP_MS)
        await send(side)
      }
      await closed(side, SETTLE_BATCHED)
      const round = dump(side, 'settled')
      if (round.compileIr / (SETTLE_LONE + SETTLE_BATCHED) < SETTLED_COMPILE_IR) break
    }
    log(`${side.name}: ${settling} settling rounds of ${SETTLE_LONE + SETTLE_BATCHED} requests${settling === SETTLE_ROUNDS ? ' (still compiling)' : ''}`)
    dump(side, 'start')
    const t0 = Date.now()
    for (let i = 0; i < ISOLATED; i++) {
      await sleep(GAP_MS)
      await send(side)
    }
    const isolatedMs = Date.now() - t0
    const isolated = dump(side, 'isolated')
    await sleep(isolatedMs)
    const idle = dump(side, 'idle')
    await closed(side, CONCURRENCY * 2)
    dump(side, 'ramp')
    await closed(side, BATCHED)
    const batched = dump(side, 'batched')
    const open = {}
    for (const rate of OPEN_RATES) {
      await closed(side, CONCURRENCY)
      dump(side, `before-open-${rate}`)
      const t = Date.now()
      const pending = []
      for (let i = 0; i < OPEN_COUNT; i++) {
        const due = t + (i * 1000) / rate
        if (due > Date.now()) await sleep(due - Date.now())
        pending.push(send(side))
      }
      await Promise.all(pending)
      open[rate] = { counts: dump(side, `open-${rate}`), ms: Date.now() - t }
    }
    const per = (m, n, less = null) => Object.fromEntries(Object.entries(m).filter(([k]) => !['distinctInstructions', 'codeLines', 'functions', 'compileIr'].includes(k)).map(([k, v]) => [k, Math.round((v - (less?.[k] ?? 0)) / n)]))
    const code = (m) => ({ distinctInstructions: m.distinctInstructions, codeLines: m.codeLines, codeKiB: Math.round((m.codeLines * 64) / 1024), functions: m.functions })
    results[side.name] = {
      settling_rounds: settling, compile_ir_per_request: { isolated: Math.round(isolated.compileIr / ISOLATED), batched: Math.round(batched.compileIr / BATCHED) },
      isolated_per_request: per(isolated, ISOLATED, idle), isolated_raw_per_request: per(isolated, ISOLATED), idle_per_request_time: per(idle, ISOLATED),
      batched_per_request: per(batched, BATCHED),
      ...Object.fromEntries(Object.entries(open).flatMap(([rate, o]) => {
        const idleShare = Object.fromEntries(Object.entries(idle).map(([k, v]) => [k, (v * o.ms) / isolatedMs]))
        return [[`open_${rate}_per_request`, per(o.counts, OPEN_COUNT, idleShare)], [`open_${rate}_raw_per_request`, per(o.counts, OPEN_COUNT)], [`open_${rate}_phase_code`, code(o.counts)]]
      })),
      isolated_phase_code: code(isolated), batched_phase_code: code(batched), isolated_ms: isolatedMs,
    }
    log(`${side.name}: ${JSON.stringify(results[side.name])}`)
  }
  const ratio = (phase, event) => Math.round((results.proxy[phase][event] / results.floor[phase][event]) * 1000) / 1000
  const events = Object.keys(results.proxy.batched_per_request)
  const phases = ['isolated_per_request', 'batched_per_request', ...OPEN_RATES.flatMap((r) => [`open_${r}_per_request`, `open_${r}_raw_per_request`])]
  console.log(JSON.stringify({
    cli, warmup: WARMUP, isolated: ISOLATED, gap_ms: GAP_MS, batched: BATCHED, concurrency: CONCURRENCY, cache_sim: cacheSim, open_rates: OPEN_RATES, open_count: OPEN_COUNT, ...results,
    proxy_over_floor: Object.fromEntries(phases.map((p) => [p, Object.fromEntries(events.map((e) => [e, ratio(p, e)]))])),
  }))
} finally {
  await Promise.all(pools.map((p) => p.close().catch(() => undefined)))
  if (names) for (const c of children) {
    cpSync(join(tmpdir(), `perf-${c.pid}.map`), join(dir, `perf-${c.pid}.map`))
    rmSync(join(tmpdir(), `perf-${c.pid}.map`))
  }
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)))
  await fake?.stop()
  await redis?.stop()
  clearTimeout(watchdog)
  if (keep === null) rmSync(dir, { recursive: true, force: true })
}
