// What a proxied request makes the *other* core pay (the load generator, the fake upstream and redis-server, which
// share core 1 in the bench's peak scenario), for the floor (bench/floor.mjs) and one or two proxy builds in one run:
// each side in turn (order rotating every trial) serves the peak scenario's closed loop (the one-line chat request,
// C=64), and per request the script reads each process's CPU (schedstat), its system calls and context switches
// (`perf stat -e raw_syscalls:sys_enter,context-switches -p PID`: the calls load does not move, the switches it does),
// Redis's commands and bytes (INFO), and TCP segments (`nstat`, machine-wide: other tenants' loopback traffic counts
// too). Then one request to each side on a raw socket shows the response as the client reads it (bytes, reads).
//   node bench/other-core.mjs [--a=OLD/dist/cli.js] [--b=dist/cli.js] [--trials=4] [--duration=4000] [--warm=12000]
import { execFileSync } from 'node:child_process'
import net from 'node:net'
import { join, resolve } from 'node:path'
import { closedLoop, createPool } from './load.mjs'
import { coreBusy, coreTimes, createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy, threadsCpuMs } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { startPerfStat } from './thread-probe.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const trials = Number(arg('trials', '4'))
const durationMs = Number(arg('duration', '4000'))
const warm = Number(arg('warm', '12000'))
const builds = { a: arg('a', null), b: arg('b', join(ROOT, 'dist/cli.js')) }
const CHAT_BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-other-core-', { fake: { completionTokens: 16 } })
try {
  const sides = { floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url }) }
  started.push(sides.floor)
  for (const n of ['a', 'b']) {
    if (builds[n] === null) continue
    sides[n] = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: n, cliPath: resolve(builds[n]) })
    started.push(sides[n])
  }
  const names = Object.keys(sides)
  // A key per side: a build before the string layout of a key's periods fails closed on a key this build has moved
  // (its scripts meet the tombstones), so two builds never share one.
  const requests = {}
  for (const n of names) requests[n] = requestPair(await createBenchKey(redis.url, `bench-other-core-${n}`), CHAT_BODY).proxied
  const pools = Object.fromEntries(names.map((n) => [n, createPool(sides[n].url, 64)]))
  const others = { loadgen: process.pid, fake: fake.pid, redis: redis.pid }
  process.stdout.write(`pids: ${[...names.map((n) => `${n} ${sides[n].pid}`), ...Object.entries(others).map(([k, v]) => `${k} ${v}`)].join(', ')}\n`)
  for (const n of names) await closedLoop({ origin: sides[n].url, request: requests[n], concurrency: 64, durationMs: 30_000, maxRequests: warm, pool: pools[n] })

  const per = Object.fromEntries(names.map((n) => [n, []]))
  for (let t = 0; t < trials; t++) {
    for (const n of names.map((_, i) => names[(i + t) % names.length])) {
      await sleep(300)
      const pids = { proxy: sides[n].pid, ...others }
      const perf = Object.fromEntries(Object.entries(pids).map(([p, pid]) => [p, startPerfStat(pid, ['raw_syscalls:sys_enter', 'context-switches'])]))
      await sleep(150)
      const cpu0 = Object.fromEntries(Object.entries(pids).map(([p, pid]) => [p, threadsCpuMs(pid)]))
      const info0 = await redisInfo(redis.url)
      const segs0 = tcpSegments()
      const cores0 = coreTimes()
      const r = await closedLoop({ origin: sides[n].url, request: requests[n], concurrency: 64, durationMs, pool: pools[n] })
      const busy = coreBusy(cores0, coreTimes())
      const segs = tcpSegments()
      const info = await redisInfo(redis.url)
      const cpu = Object.fromEntries(Object.entries(pids).map(([p, pid]) => [p, threadsCpuMs(pid) - cpu0[p]]))
      const calls = {}
      const switches = {}
      for (const [p, probe] of Object.entries(perf)) {
        const counts = await probe.stop()
        calls[p] = counts['raw_syscalls:sys_enter'] ?? null
        switches[p] = counts['context-switches'] ?? null
      }
      const ok = Math.max(1, r.ok)
      const row = {
        rps: r.achievedRate,
        errors: r.non2xx + r.transportErrors,
        otherCoreBusy: busy[1],
        ...Object.fromEntries(Object.keys(pids).map((p) => [`${p} µs`, (cpu[p] * 1000) / ok])),
        ...Object.fromEntries(Object.keys(pids).map((p) => [`${p} syscalls`, calls[p] === null ? null : calls[p] / ok])),
        ...Object.fromEntries(Object.keys(pids).map((p) => [`${p} context switches`, switches[p] === null ? null : switches[p] / ok])),
        'redis commands': (info.commands - info0.commands) / ok,
        'redis bytes in': (info.netIn - info0.netIn) / ok,
        'redis bytes out': (info.netOut - info0.netOut) / ok,
        'tcp out segments (machine)': (segs.out - segs0.out) / ok,
      }
      row['other core µs'] = row['loadgen µs'] + row['fake µs'] + row['redis µs']
      per[n].push(row)
      process.stdout.write(`trial ${t + 1} ${n}: ${Math.round(r.achievedRate)}/s, other core ${fmt(row['other core µs'])} µs/request (loadgen ${fmt(row['loadgen µs'])}, fake ${fmt(row['fake µs'])}, redis ${fmt(row['redis µs'])}), proxy ${fmt(row['proxy µs'])} µs\n`)
    }
  }
  const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]
  process.stdout.write(`\nper request, medians over ${trials} trials (min–max):\n`)
  for (const field of Object.keys(per.floor[0])) {
    const cells = names.map((n) => {
      const xs = per[n].map((r) => r[field]).filter((x) => x !== null)
      return xs.length === 0 ? `${n} —` : `${n} ${fmt(med(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`
    })
    process.stdout.write(`${field}: ${cells.join(' | ')}\n`)
  }
  await Promise.all(Object.values(pools).map((p) => p.close()))
  process.stdout.write('\none response as the client reads it:\n')
  for (const n of names) {
    const seen = await rawRequest(sides[n].url, requests[n])
    process.stdout.write(`--- ${n}: ${seen.bytes} bytes in ${seen.reads} read(s)\n${seen.text}\n`)
  }
} finally {
  await close()
}

function fmt(x) {
  return x === null || x === undefined ? '—' : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2)
}

/** Machine-wide TCP segments sent so far (nstat's absolute counters). */
function tcpSegments() {
  const text = execFileSync('nstat', ['-az', '-j', 'TcpOutSegs']).toString()
  return { out: JSON.parse(text).kernel.TcpOutSegs }
}

/** Redis's commands processed and network bytes so far. */
async function redisInfo(url) {
  const text = await rawRedis(url, 'INFO stats\r\n')
  const field = (name) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(text)?.[1] ?? NaN)
  return { commands: field('total_commands_processed'), netIn: field('total_net_input_bytes'), netOut: field('total_net_output_bytes') }
}

function rawRedis(url, command) {
  const { hostname, port } = new URL(url)
  return new Promise((resolveText, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    let text = ''
    socket.once('connect', () => socket.write(command))
    socket.on('data', (c) => {
      text += c
      const m = /^\$(\d+)\r\n/.exec(text)
      if (m !== null && Buffer.byteLength(text) >= m[0].length + Number(m[1]) + 2) {
        socket.destroy()
        resolveText(text)
      }
    })
    socket.once('error', reject)
  })
}

/** One request on a fresh socket: the response's bytes, and how many reads they came in (within 200 ms of the last). */
function rawRequest(url, req) {
  const { hostname, port } = new URL(url)
  const head = [`POST ${req.path} HTTP/1.1`, `host: ${hostname}:${port}`, ...Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`), `content-length: ${Buffer.byteLength(req.body)}`, '', ''].join('\r\n')
  return new Promise((resolveSeen) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    socket.setNoDelay(true)
    const chunks = []
    let timer = null
    const done = () => {
      socket.destroy()
      const all = Buffer.concat(chunks)
      resolveSeen({ bytes: all.length, reads: chunks.length, text: all.toString('latin1').replace(/\r\n/g, '\\r\\n\n') })
    }
    socket.once('connect', () => socket.write(head + req.body))
    socket.on('data', (c) => {
      chunks.push(c)
      clearTimeout(timer)
      timer = setTimeout(done, 200)
    })
    socket.once('error', done)
  })
}
