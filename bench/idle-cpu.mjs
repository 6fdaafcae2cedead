// Idle cost of the proxy and the floor: after the bench's warm-up, nobody sends anything for --idle ms; per side,
// the CPU each thread group used, the main thread's wake-ups (context switches) and system calls, per second.
// Work a quiet process does per second is paid per request at a moderate rate (at 500 req/s, 1 ms a second is 2 µs a request).
//   node bench/idle-cpu.mjs [--cli=dist/cli.js] [--idle=10000] [--warm=12000] [--strace=FILE (the proxy's system calls while idle, by strace -f -tt)]
import { spawn } from 'node:child_process'
import { join, resolve } from 'node:path'
import { closedLoop, createPool } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'
import { groupDelta, startPerfStat, threadGroupsCpuMs } from './thread-probe.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const idleMs = Number(arg('idle', '10000'))
const warm = Number(arg('warm', '12000'))
const EVENTS = ['context-switches', 'raw_syscalls:sys_enter', 'sched:sched_waking', 'syscalls:sys_enter_epoll_pwait', 'syscalls:sys_enter_futex']

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-idle-cpu-', { fake: { completionTokens: 16 } })
try {
  const sides = {
    proxy: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath }),
    floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url }),
  }
  started.push(...Object.values(sides))
  const request = requestPair(await createBenchKey(redis.url, 'bench-idle'), ONE_LINE_BODY).proxied
  for (const side of Object.values(sides)) {
    const pool = createPool(side.url, 256)
    await closedLoop({ origin: side.url, request, concurrency: 64, durationMs: 30_000, maxRequests: warm, pool })
    await pool.close()
  }
  await sleep(2_000)
  const probes = Object.fromEntries(Object.entries(sides).map(([n, s]) => [n, { before: threadGroupsCpuMs(s.pid), perf: startPerfStat(s.pid, EVENTS) }]))
  const straceFile = arg('strace', null)
  const strace = straceFile === null ? null : spawn('strace', ['-f', '-tt', '-o', straceFile, '-p', String(sides.proxy.pid)], { stdio: 'ignore' })
  await sleep(idleMs)
  if (strace !== null) {
    strace.kill('SIGINT')
    await new Promise((resolve) => strace.once('exit', resolve))
  }
  for (const [n, s] of Object.entries(sides)) {
    const groups = groupDelta(probes[n].before, threadGroupsCpuMs(s.pid))
    const counts = await probes[n].perf.stop()
    const perS = (v) => ((v * 1000) / idleMs).toFixed(2)
    process.stdout.write(`${n} idle, per second: CPU ms ${Object.entries(groups).filter(([, v]) => v > 0).map(([g, v]) => `${g} ${perS(v)}`).join(', ')}; ${Object.entries(counts).map(([e, v]) => `${e} ${perS(v)}`).join(', ')}\n`)
  }
} finally {
  await close()
}
