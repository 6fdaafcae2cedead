// The scheduling work a request costs, proxy against the floor, by load shape: counted inside each process by
// bench/schedule-probe.mjs (preloaded), so machine load does not move the counts. Per request, in each phase:
// async resources created by type (timers, immediates, nextTicks, promises, …), callbacks entered by type (each
// a separate entry from the event loop or the microtask queue), heap bytes allocated, and the main thread's CPU.
// Phases, each side alone after the bench's closed-loop warm-up and an open-loop warm-up at the first rate:
//   open-R     open loop at R req/s (--rates), --duration ms
//   isolated   one request at a time, --gap ms between them (the loop idle between requests)
//   closed     --concurrency at a time
// --no-hooks: the probe's hooks off (promise hooks cost far more than the work they count): main-thread CPU and
// allocation only, read the same way.
//   npm run build && node bench/open-schedule.mjs [--cli=dist/cli.js] [--rates=500,1000] [--duration=4000]
//     [--isolated=300] [--gap=20] [--concurrency=64] [--warm=12000] [--no-hooks]
// Measured (session 34's start, per request, proxy against floor, hooks on; two runs agree within 0.2): promises created
// 12.9-13.4 against 18.0, nextTicks 7.7-9.6 against 13.9-16.6, immediates 2.4-2.6 against 2.0 (the store's queued reserves
// and settles under its 2 ms hold: 2.0 isolated), timers 2.0-2.1 against 2.0 (fired 0.01 each), I/O callbacks entered
// (TCPWRAP) 1.4-2.3 against 1.4-2.8, heap bytes 26-29k against 33-41k, at 500 and 1,000 req/s. So the proxy schedules
// less a request than the floor in the open loop: its extra main-thread CPU there is not timers, ticks or promises.
// After a lone call queued by the hold alone stopped renewing it (session 34, one run each): immediates at 1,000 req/s
// 3.61 -> 3.23, at 500 2.09 -> 2.05; EVALSHA a request unchanged (bench/redis-delay.mjs: 1.99, 2.00).
// Main-thread CPU (--no-hooks) on this shared VM spread too far to read a ratio from one run (proxy 352 / 209 µs,
// floor 202 / 148 µs at 500 / 1,000 req/s; closed 71 against 87).
// Loads 127.0.0.1 only, bounded; stops every process it starts.
import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rates = arg('rates', '500,1000').split(',').map(Number)
const durationMs = Number(arg('duration', '4000'))
const isolated = Number(arg('isolated', '300'))
const gapMs = Number(arg('gap', '20'))
const concurrency = Number(arg('concurrency', '64'))
const warm = Number(arg('warm', '12000'))
const hooks = !process.argv.includes('--no-hooks')
const PROBE = join(ROOT, 'bench/schedule-probe.mjs')
if (!hooks) process.env.SCHEDULE_PROBE_HOOKS = '0'

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-open-schedule-', { watchdogMs: 20 * 60_000, fake: { completionTokens: 16 } })
try {
  const sides = {
    proxy: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath, nodeOptions: ['--import', PROBE], extraEnv: { SCHEDULE_PROBE_HOOKS: hooks ? '1' : '0' } }),
    floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, nodeArgs: ['--import', PROBE] }),
  }
  started.push(...Object.values(sides))
  const request = requestPair(await createBenchKey(redis.url, 'bench-schedule'), ONE_LINE_BODY).proxied
  const snapshot = async (name) => {
    const file = join(tmpdir(), `loopers-schedule-${sides[name].pid}.json`)
    rmSync(file, { force: true })
    process.kill(sides[name].pid, 'SIGUSR2')
    for (let i = 0; i < 200; i++) {
      await sleep(20)
      let text
      try {
        text = readFileSync(file, 'utf8')
      } catch {
        continue
      }
      rmSync(file, { force: true })
      return JSON.parse(text)
    }
    throw new Error(`no snapshot from ${name}`)
  }
  const lone = async (pool, n) => {
    let ok = 0
    for (let i = 0; i < n; i++) {
      await sleep(gapMs)
      const r = await pool.request({ path: request.path, method: 'POST', headers: request.headers, body: request.body })
      await r.body.text()
      if (r.statusCode === 200) ok++
    }
    return { ok }
  }
  const results = {}
  for (const name of Object.keys(sides)) {
    const origin = sides[name].url
    const pool = createPool(origin, 256)
    await closedLoop({ origin, request, concurrency, durationMs: 30_000, maxRequests: warm, pool })
    await openLoop({ origin, request, rate: rates[0], durationMs: 5_000, pool })
    const phases = [
      ...rates.map((rate) => [`open-${rate}`, () => openLoop({ origin, request, rate, durationMs, pool })]),
      ['isolated', () => lone(pool, isolated)],
      ['closed', () => closedLoop({ origin, request, concurrency, durationMs, pool })],
    ]
    results[name] = {}
    for (const [phase, run] of phases) {
      await sleep(300)
      const before = await snapshot(name)
      const r = await run()
      const after = await snapshot(name)
      const n = Math.max(1, r.ok)
      const per = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, Math.round(((a[k] - (b[k] ?? 0)) / n) * 100) / 100]).filter(([, v]) => v !== 0).sort((x, y) => y[1] - x[1]))
      results[name][phase] = {
        requests: r.ok,
        mainCpuUs: Math.round((after.mainCpuUs - before.mainCpuUs) / n),
        allocatedBytes: Math.round((after.allocated - before.allocated) / n),
        ...(hooks ? { created: per(after.created, before.created), entered: per(after.entered, before.entered) } : {}),
      }
      process.stderr.write(`${name} ${phase}: ${JSON.stringify(results[name][phase])}\n`)
    }
    await pool.close()
  }
  console.log(JSON.stringify({ cli: cliPath, hooks, rates, durationMs, isolated, gapMs, concurrency, ...results }))
} finally {
  await close()
}
