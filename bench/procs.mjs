// Child processes of the benchmark: pinning, start/stop of Redis, the fake upstream and proxies, and
// what /proc says about them. Every child is registered and killed when this process exits.
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const PROXY_CORE = 0
export const OTHERS_CORE = 1
const START_TIMEOUT_MS = 15_000
// Preloaded into each proxy: reports the ports it listens on (port 0) on descriptor 3.
const LISTEN_REPORT = join(ROOT, 'test/support/listen-report.mjs')

const children = new Set()
process.on('exit', () => {
  for (const child of children) {
    try {
      child.kill('SIGKILL')
    } catch {}
  }
})

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Whether `taskset` can pin to cores 0 and 1 here; `reason` says why not. */
export function detectPinning() {
  if (os.availableParallelism() < 2) return { used: false, reason: 'fewer than 2 cores' }
  try {
    execFileSync('taskset', ['-c', '1', 'true'], { stdio: 'ignore' })
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' })
    return { used: true, reason: `proxy on core ${PROXY_CORE}; load generator, fake upstream, Redis on core ${OTHERS_CORE}` }
  } catch {
    return { used: false, reason: 'taskset unavailable or not permitted' }
  }
}

/** Pins every thread of this process (and so every child it spawns unpinned) to `core`. */
export function pinSelf(core) {
  execFileSync('taskset', ['-a', '-p', '-c', String(core), String(process.pid)], { stdio: 'ignore' })
}

/** Spawns `cmd args` pinned to `core` (when `pin`); stdout/stderr go to files when given, else are ignored. */
export function spawnChild(cmd, args, { core, pin, env = process.env, stdoutFile, stderrFile, pipeStdout = false, reportPipe = false }) {
  const fds = []
  const out = pipeStdout ? 'pipe' : stdoutFile ? fds[fds.push(openSync(stdoutFile, 'a')) - 1] : 'ignore'
  const err = stderrFile ? fds[fds.push(openSync(stderrFile, 'a')) - 1] : 'ignore'
  const [file, argv] = pin ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args]
  const child = spawn(file, argv, { env, stdio: ['ignore', out, err, ...(reportPipe ? ['pipe'] : [])], cwd: ROOT })
  for (const fd of fds) closeSync(fd)
  children.add(child)
  child.once('exit', () => children.delete(child))
  child.once('error', () => children.delete(child))
  return child
}

/** Stops a child: `signal`, then SIGKILL after `timeoutMs`. Resolves once it has exited. */
export async function stopChild(child, { signal = 'SIGTERM', timeoutMs = 5_000 } = {}) {
  if (child === null || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(signal)
  if ((await Promise.race([exited.then(() => 'exited'), sleep(timeoutMs).then(() => 'timeout')])) === 'timeout') {
    child.kill('SIGKILL')
    await exited
  }
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
  } catch {
    return 100
  }
})()

/** CPU seconds in user and kernel mode (all threads) a process has used, from /proc/<pid>/stat. */
export function cpuTimes(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK }
}

/** CPU seconds (all threads) a process has used, from schedstat: nanoseconds, where stat counts 10 ms ticks. */
export function cpuSeconds(pid) {
  return threadsCpuMs(pid) / 1000
}

/** Resident set size of a process in MiB, from /proc/<pid>/status. */
/** CPU time of every thread of a process in ms, from /proc/<pid>/task/<tid>/schedstat (ns, unlike stat's 10 ms ticks). */
export function threadsCpuMs(pid) {
  let ns = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns / 1e6
}

export function rssMb(pid) {
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match === null ? null : Number(match[1]) / 1024
}

/**
 * VmRSS split (/proc/<pid>/status, MiB): `anon`, the process's private memory (heaps, JIT code, malloc), and
 * `file`, pages of mapped files — nearly all the node binary's own code and data, shared with every node
 * process and clean (the kernel can drop them under pressure). Null when the process is gone.
 */
export function rssSplitMb(pid) {
  let status
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return null
  }
  const field = (name) => {
    const match = new RegExp(`${name}:\\s+(\\d+)\\s+kB`).exec(status)
    return match === null ? null : Number(match[1]) / 1024
  }
  return { anon: field('RssAnon'), file: field('RssFile') }
}

/** Busy fraction of each core between two `coreTimes()` readings. */
export function coreTimes() {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d+ /.test(l))
  return lines.map((l) => {
    const v = l.trim().split(/\s+/).slice(1).map(Number)
    const idle = v[3] + (v[4] ?? 0)
    return { idle, total: v.reduce((a, b) => a + b, 0) }
  })
}
export function coreBusy(before, after) {
  return after.map((a, i) => {
    const total = a.total - before[i].total
    return total <= 0 ? null : 1 - (a.idle - before[i].idle) / total
  })
}

/**
 * On a shared machine, waits (in 500 ms windows) until the proxy's core is less than `maxBusy` busy
 * while the proxy idles, for at most `maxWaitMs`. Resolves { waitedMs, busy } (busy of the last window).
 */
export async function waitForQuiet({ maxBusy = 0.2, maxWaitMs = 10_000 } = {}) {
  const started = Date.now()
  for (;;) {
    const before = coreTimes()
    await sleep(500)
    const busy = coreBusy(before, coreTimes())[PROXY_CORE]
    if (busy === null || busy < maxBusy || Date.now() - started >= maxWaitMs) return { waitedMs: Date.now() - started, busy }
  }
}

/** A port that was free a moment ago on 127.0.0.1 (another process can take it before a child binds it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** Polls `check` until it returns true; throws `what` after `timeoutMs` or when `child` exits first. */
async function waitUntil(check, what, child, timeoutMs = START_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what}: process exited (${child.exitCode ?? child.signalCode})`)
    if (await check().catch(() => false)) return
    await sleep(50)
  }
  throw new Error(`${what}: not ready within ${timeoutMs} ms`)
}

/** The `process_id` the Redis on `port` reports in INFO server; null when it does not answer. */
function redisPid(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let reply = ''
    const done = (pid) => {
      socket.destroy()
      resolve(pid)
    }
    socket.setTimeout(500, () => done(null))
    socket.once('error', () => done(null))
    socket.once('connect', () => socket.write('INFO server\r\n'))
    socket.on('data', (c) => {
      reply += c
      const match = /process_id:(\d+)\r\n/.exec(reply)
      if (match !== null) done(Number(match[1]))
      else if (reply.startsWith('-')) done(null)
    })
  })
}

function redisPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let reply = ''
    const done = (ok) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.on('data', (c) => {
      reply += c
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

/**
 * A proxy key for `providers` (OpenAI unless given) on the Redis at `redisUrl` with a daily limit no bench reaches and the loop guard off
 * (on, at its default, when `guard`), as the A/B scripts use it: every request is metered and admitted.
 */
export async function createBenchKey(redisUrl, name, guard = false, providers = ['openai']) {
  const { createRedisClient } = await import('../dist/budget/redis/redis-client.js')
  const { createKeyAdmin } = await import('../dist/budget/redis/admin.js')
  const client = createRedisClient({ url: redisUrl, clusterNodes: null, commandTimeoutMs: 5_000 })
  try {
    await new Promise((ok) => (client.status === 'ready' ? ok() : client.once('ready', ok)))
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey(name, providers)
    await admin.setBudget(record.hash, { limits: { daily: 10_000_000_000_000 }, ...(guard ? {} : { loopLimit: 0 }) })
    return key
  } finally {
    client.disconnect()
  }
}

/**
 * What an A/B script starts before its proxies: this process pinned to the others' core when taskset allows, a
 * temporary directory (`prefix` + random), Redis and the fake upstream (reset to `fake` when given). The script
 * pushes each process it starts onto `started`; `close()` stops them all, newest first, and removes the
 * directory. A script still running after `watchdogMs` exits with 1.
 */
export async function startBenchStack(prefix, { watchdogMs = 20 * 60_000, fake: fakeOptions = null } = {}) {
  const pinning = detectPinning()
  if (pinning.used) pinSelf(OTHERS_CORE)
  const dir = mkdtempSync(join(os.tmpdir(), prefix))
  const started = []
  const watchdog = setTimeout(() => process.exit(1), watchdogMs)
  const close = async () => {
    clearTimeout(watchdog)
    for (const s of started.splice(0).reverse()) await s.stop().catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const redis = await startRedis({ pin: pinning.used, dir })
    started.push(redis)
    const fake = await startFake({ pin: pinning.used })
    started.push(fake)
    if (fakeOptions !== null) await fake.reset(fakeOptions)
    return { pinning, dir, started, redis, fake, close }
  } catch (err) {
    await close()
    throw err
  }
}

/**
 * Starts `redis-server` without persistence on a free port. Redis cannot listen on port 0: another process
 * may take the probed port first, so only an answer from this child's pid counts, and another port is tried.
 */
export async function startRedis({ pin, dir }) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const child = spawnChild('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      core: OTHERS_CORE,
      pin,
      stderrFile: join(dir, 'redis.err'),
    })
    try {
      // taskset execs redis-server in place: the child's pid is Redis's.
      await waitUntil(async () => (await redisPing(port)) && (await redisPid(port)) === child.pid, 'redis-server', child)
      return { url: `redis://127.0.0.1:${port}`, pid: child.pid, child, stop: () => stopChild(child) }
    } catch (error) {
      await stopChild(child, { signal: 'SIGKILL' })
      if (attempt >= 3) throw error
    }
  }
}

/** Spawns a bench script that prints one JSON line `{"url": …}` once it listens; resolves with the URL. `env` adds to this process's. */
async function startUrlChild(script, args, core, pin, nodeArgs = [], env = {}) {
  const child = spawnChild(process.execPath, [...nodeArgs, join(ROOT, script), ...args], { core, pin, env: { ...process.env, ...env }, pipeStdout: true })
  const url = await new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => reject(new Error(`${script} did not start`)), START_TIMEOUT_MS)
    child.stdout.on('data', (c) => {
      text += c
      if (text.includes('\n')) {
        clearTimeout(timer)
        resolve(JSON.parse(text.split('\n')[0]).url)
      }
    })
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)))
  })
  return { url, pid: child.pid, child, stop: () => stopChild(child) }
}

/** Starts the fake upstream as its own process; resolves with its URL and a control client. */
export async function startFake({ pin, gcFile = null }) {
  const gc = gcRecording(gcFile)
  const fake = await startUrlChild('bench/fake-upstream.mjs', ['--port=0'], OTHERS_CORE, pin, gc.nodeArgs, gc.env)
  const control = async (path, body) => {
    const response = await fetch(`${fake.url}${path}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) })
    return response.json()
  }
  return { ...fake, gcFile, reset: (options = {}) => control('/__reset', options), ledger: () => control('/__ledger'), collect: () => control('/__collect') }
}

/**
 * Starts the plain relay (bench/relay-floor.mjs) in front of `upstreamUrl`, on the proxy's core;
 * `connections`: its upstream pool size ('unlimited': every stream open upstream at once, as Loopers);
 * `nodeArgs`: node flags after the launcher's. Every floor runs with the node flags and environment of the proxy's
 * launcher (the CLI's first line), as the proxy does, so a figure beside a floor's compares code, not V8 or malloc settings.
 */
export function startRelayFloor({ pin, upstreamUrl, connections = 256, nodeArgs = [] }) {
  return startUrlChild('bench/relay-floor.mjs', [`--upstream=${upstreamUrl}`, '--port=0', `--connections=${connections}`], PROXY_CORE, pin, [...launcherFlags(), ...nodeArgs], launcherEnv())
}

/**
 * Starts the floor (bench/floor.mjs) in front of `upstreamUrl` on the proxy's core: Fastify + undici with
 * the same store round trips per request as Loopers; `store` is 'redis' (with `redisUrl`), 'sqlite' (with `dbPath`) or 'none';
 * `connections` and `nodeArgs` as for startRelayFloor (with the launcher's flags and environment, as every floor).
 */
export async function startFloor({ pin, upstreamUrl, store, redisUrl = null, dbPath = null, connections = 256, nodeArgs = [], gcFile = null }) {
  const args = [`--upstream=${upstreamUrl}`, '--port=0', `--store=${store}`, `--connections=${connections}`]
  if (redisUrl !== null) args.push(`--redis=${redisUrl}`)
  if (dbPath !== null) args.push(`--db=${dbPath}`)
  const gc = gcRecording(gcFile)
  return { ...(await startUrlChild('bench/floor.mjs', args, PROXY_CORE, pin, [...launcherFlags(), ...nodeArgs, ...gc.nodeArgs], { ...launcherEnv(), ...gc.env })), gcFile }
}

/** Node flags and environment that make a child record its collection pauses in `gcFile` (bench/gc-record.mjs); none for null. */
function gcRecording(gcFile) {
  return gcFile === null ? { nodeArgs: [], env: {} } : { nodeArgs: ['--import', join(ROOT, 'bench/gc-record.mjs')], env: { LOOPERS_BENCH_GC_FILE: gcFile } }
}

/**
 * The floor on Redis as startFloor starts it, with `nodeArgs` (trace or profiling flags) after the launcher's of
 * `cliPath` and its stdout kept: `lines()` is what it has printed.
 */
export async function startTracedFloor({ upstreamUrl, redisUrl, pin, cliPath = join(ROOT, 'dist/cli.js'), nodeArgs = [] }) {
  const args = [`--upstream=${upstreamUrl}`, '--port=0', '--store=redis', `--redis=${redisUrl}`]
  const child = spawnChild(process.execPath, [...launcherFlags(cliPath), ...nodeArgs, join(ROOT, 'bench/floor.mjs'), ...args], { core: PROXY_CORE, pin, env: { ...process.env, ...launcherEnv(cliPath) }, pipeStdout: true })
  let text = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (c) => (text += c))
  const deadline = Date.now() + 15_000
  let url = null
  while (url === null) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('the floor did not start')
    url = /^\{"url":"([^"]+)"\}$/m.exec(text)?.[1] ?? null
    await sleep(50)
  }
  return { url, pid: child.pid, child, lines: () => text, stop: () => stopChild(child) }
}

/**
 * Starts `node dist/cli.js serve` on a free port against `redisUrl` and `upstreamUrl`, pinned to the
 * proxy core, with the launcher's node flags (`launcher: false`: plain node) and then `nodeOptions`.
 * `cpuProfDir` adds `--cpu-prof` (the profile is written when it stops gracefully).
 */
export async function startProxy({ pin, redisUrl, upstreamUrl, logLevel = 'warn', dir, name = 'proxy', cpuProfDir = null, extraEnv = {}, nodeOptions = [], cliPath = join(ROOT, 'dist/cli.js'), launcher = true, gcFile = null }) {
  const gc = gcRecording(gcFile)
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    // No REDIS_URL (null): the proxy runs on the embedded store (extraEnv names LOOPERS_DB).
    ...(redisUrl === null ? {} : { REDIS_URL: redisUrl }),
    HOST: '127.0.0.1',
    // Port 0 for both listeners: the proxy reports the ports it was given (LISTEN_REPORT), proxy first.
    PORT: '0',
    LOOPERS_ADMIN_HOST: '127.0.0.1',
    LOOPERS_ADMIN_PORT: '0',
    LOOPERS_OPENAI_BASE_URL: upstreamUrl,
    LOOPERS_OPENAI_API_KEY: 'sk-bench-upstream',
    LOOPERS_PRICING_PATH: join(ROOT, 'bench/prices.json'),
    LOG_LEVEL: logLevel,
    LOOPERS_SHUTDOWN_GRACE_MS: '2000',
    ...(launcher ? launcherEnv(cliPath) : {}),
    ...gc.env,
    ...extraEnv,
  }
  // As operators start it (`loopers serve`): with the launcher's environment and node flags, unless an A/B asks for plain node.
  const nodeArgs = [...(launcher ? launcherFlags(cliPath) : []), ...nodeOptions, ...gc.nodeArgs, '--import', LISTEN_REPORT]
  if (cpuProfDir !== null) {
    mkdirSync(cpuProfDir, { recursive: true })
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`)
  }
  const child = spawnChild(process.execPath, [...nodeArgs, cliPath, 'serve'], {
    core: PROXY_CORE,
    pin,
    env,
    stdoutFile: join(dir, `${name}.log`),
    stderrFile: join(dir, `${name}.err`),
    reportPipe: true,
  })
  try {
    const [port, adminPort] = await reportedPorts(child, 2, `proxy (${name})`)
    const url = `http://127.0.0.1:${port}`
    await waitUntil(async () => (await fetch(`${url}/health`)).status === 200, `proxy (${name})`, child)
    const adminUrl = `http://127.0.0.1:${adminPort}`
    return { url, adminUrl, pid: child.pid, child, logFile: join(dir, `${name}.log`), gcFile, stop: () => stopChild(child, { timeoutMs: 10_000 }) }
  } catch (error) {
    await stopChild(child, { signal: 'SIGKILL' })
    throw new Error(`${error.message}\n${readTail(join(dir, `${name}.err`))}`)
  }
}

/** The `loopers` launcher: the CLI's first line, `#!/usr/bin/env -S [VAR=value …] node [flag …]`; null when it has another shape. */
function launcherLine(cliPath) {
  const match = /^#!\S*env -S((?: [A-Za-z_]\w*=\S*)*) node\b(.*)$/.exec(readFileSync(cliPath, 'utf8').split('\n', 1)[0])
  return match === null ? null : { env: match[1].trim().split(/\s+/).filter(Boolean), flags: match[2].trim().split(/\s+/).filter(Boolean) }
}

/** The node flags of the `loopers` launcher (the CLI's first line). */
export function launcherFlags(cliPath = join(ROOT, 'dist/cli.js')) {
  return launcherLine(cliPath)?.flags ?? []
}

/** The environment variables the `loopers` launcher sets (the CLI's first line), as an object. */
export function launcherEnv(cliPath = join(ROOT, 'dist/cli.js')) {
  return Object.fromEntries((launcherLine(cliPath)?.env ?? []).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]))
}

/** The first `count` ports a child started with LISTEN_REPORT reports on descriptor 3, in listening order. */
function reportedPorts(child, count, what) {
  return new Promise((resolve, reject) => {
    const ports = []
    let text = ''
    const finish = (error) => {
      clearTimeout(timer)
      child.stdio[3].off('data', onData)
      child.off('exit', onExit)
      if (error === null) resolve(ports.slice(0, count))
      else reject(error)
    }
    const onData = (chunk) => {
      text += chunk
      for (let end = text.indexOf('\n'); end >= 0; end = text.indexOf('\n')) {
        ports.push(JSON.parse(text.slice(0, end)).port)
        text = text.slice(end + 1)
      }
      if (ports.length >= count) finish(null)
    }
    const onExit = (code) => finish(new Error(`${what}: process exited (${code}) before listening`))
    const timer = setTimeout(() => finish(new Error(`${what}: not listening within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS)
    child.stdio[3].on('data', onData)
    child.once('exit', onExit)
  })
}

function readTail(file) {
  try {
    return readFileSync(file, 'utf8').slice(-2_000)
  } catch {
    return ''
  }
}

/** Versions and facts for the report's environment table. */
export function environment(pinning) {
  const run = (cmd, args) => {
    try {
      return execFileSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()
    } catch {
      return 'unknown'
    }
  }
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const dirty = run('git', ['status', '--porcelain']) !== ''
  return {
    cpu: /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    cores: os.cpus().length,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    redis: /v=(\S+)/.exec(run('redis-server', ['--version']))?.[1] ?? 'unknown',
    commit: `${run('git', ['rev-parse', '--short', 'HEAD'])}${dirty ? ' (work tree dirty)' : ''}`,
    taskset: pinning.used,
    pinning: pinning.reason,
    loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
  }
}
