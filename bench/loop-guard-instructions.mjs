// The loop guard's cost as instructions per request, a count machine load does not move: the proxy process under
// `valgrind --tool=callgrind` (all its threads) and, on Redis, redis-server under its own callgrind, for the
// requests of bench/loop-guard.mjs (a growing 24-message agent conversation, every request a new step), guard on
// (the default) and off (`loop_limit 0`) alternating in phases of --phase requests; the result is
// (proxy + redis) on ÷ off, summed over all phases, beside each on/off pair's own ratio.
//   npm run build && node bench/loop-guard-instructions.mjs [--store=sqlite|redis] [--scopes=one|growing]
//     [--warmup=N] [--settle=N] [--phase=N] [--pairs=P] [--control] [--keep=DIR]
// --warmup: requests (both keys, alternating every 40) with callgrind's instrumentation off (valgrind still runs
//   the JIT's code, about 5–10× slower than native); --settle: then as many with it on, dumped every 100 and
//   printed, to show instructions per request have stopped falling before the phases count; --control: both
//   halves guard off (an A/A run: the measure's own spread). --keep=DIR keeps the dumps (callgrind_annotate them
//   to see where an on phase's instructions go against an off phase's).
// Limits: not CPU time (cache misses, syscalls' kernel time and redis-server's network I/O are not in it); Redis's
// count is only readQueryFromClient and writeToClient (command parsing, execution with the Lua scripts, replies),
// so its cron, which runs by wall time, stays out; the proxy's own timers and V8's GC and JIT compile threads are
// in the proxy's count, so a phase must be long enough to average them: the A/A control shows what is left. About
// 6–10 min a run on this host (valgrind runs one thread at a time). Loads 127.0.0.1 only; every process it starts
// is stopped; each run bounded to TIME_LIMIT_MS.
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
const WARMUP = Number(option('warmup', 3000))
const SETTLE = Number(option('settle', 400))
const PHASE = Number(option('phase', 200))
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
/** Dumps (and so zeroes) the process's counts; returns the instructions since its last dump. */
function dump(p, label) {
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
  return { all: counts.reduce((a, b) => a + b, 0), main: threads[0].endsWith('-01') ? counts[0] : 0 }
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
  /** Instructions per request since the last dumps: all threads (proxy + redis), and the proxy's main thread + redis. */
  const measure = (label, n) => {
    const [p, r = { all: 0 }] = procs.map((x) => dump(x, label))
    return { all: (p.all + r.all) / n, main: (p.main + r.all) / n, proxy: p.all / n, proxy_main: p.main / n, redis: r.all / n }
  }
  const settle = []
  for (let done = 0; done < SETTLE; done += 100) {
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
      procs.forEach((p) => dump(p, `gap-${pair}-${name}`))
      await send(name, PHASE)
      per[name] = measure(`phase-${pair}-${name}`, PHASE)
    }
    pairs.push(per)
    log(`pair ${pair}: on ${Math.round(per.on.all)} (main ${Math.round(per.on.main)}), off ${Math.round(per.off.all)} (main ${Math.round(per.off.main)})`)
  }
  const mean = (name, field) => pairs.reduce((a, t) => a + t[name][field], 0) / PAIRS
  const pct = (r) => Math.round((r - 1) * 10000) / 100
  const fields = redis === null ? ['all', 'main'] : ['all', 'main', 'proxy', 'proxy_main', 'redis']
  const result = {
    store, scopes, control, warmup: WARMUP, settle: SETTLE, phase: PHASE, pairs: PAIRS,
    settle_instructions_per_request: settle,
    // all: every thread (the proxy's GC and JIT helper threads too); main: the proxy's main thread (+ redis).
    instructions_per_request: Object.fromEntries(fields.map((f) => [f, { guard_on: Math.round(mean('on', f)), guard_off: Math.round(mean('off', f)) }])),
    overhead_pct: Object.fromEntries(fields.map((f) => [f, pct(mean('on', f) / mean('off', f))])),
    pair_overhead_pct: { all: pairs.map((t) => pct(t.on.all / t.off.all)), main: pairs.map((t) => pct(t.on.main / t.off.main)) },
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
