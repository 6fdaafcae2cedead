// The proxy's memory under continuous load: for each variant in turn (`--variants=NAME=FLAGS;…`, node flags after the
// launcher's; an empty FLAGS is the launcher alone) a fresh proxy serves the latency scenario's warm-up (12,000 requests,
// 64 at a time), then an open loop at `--rate` for `--duration` ms; its RSS is sampled every 100 ms (/proc) and the
// peak and the last sample of the loop are printed, with the run's p99 and CPU per request (all threads).
// `--rounds` repeats the variants, alternating their order.
//   node bench/load-rss.mjs [--cli=dist/cli.js] [--rate=1000] [--duration=60000] [--rounds=1]
//                           [--variants="launcher=;no-pretenuring=--no-allocation-site-pretenuring"]
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, rssMb, startBenchStack, startProxy, threadsCpuMs } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '1000'))
const durationMs = Number(arg('duration', '60000'))
const rounds = Number(arg('rounds', '1'))
const variants = arg('variants', 'launcher=;no-pretenuring=--no-allocation-site-pretenuring')
  .split(';')
  .map((v) => [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1).split(/[\s,]+/).filter(Boolean)])

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-load-rss-', { watchdogMs: 40 * 60_000, fake: { completionTokens: 16 } })
try {
  const request = requestPair(await createBenchKey(redis.url, 'bench-load-rss'), ONE_LINE_BODY).proxied
  for (let r = 0; r < rounds; r++) {
    for (const [name, flags] of r % 2 === 0 ? variants : [...variants].reverse()) {
      const proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: `${name}-${r}`, cliPath, nodeOptions: flags })
      started.push(proxy)
      const pool = createPool(proxy.url, 256)
      await closedLoop({ origin: proxy.url, request, concurrency: 64, durationMs: 60_000, maxRequests: 12_000, pool })
      const warmRss = rssMb(proxy.pid)
      let peak = 0
      let last = 0
      const timer = setInterval(() => {
        last = rssMb(proxy.pid)
        peak = Math.max(peak, last)
      }, 100)
      const cpuBefore = threadsCpuMs(proxy.pid)
      const run = await openLoop({ origin: proxy.url, request, rate, durationMs, pool })
      const cpuMs = threadsCpuMs(proxy.pid) - cpuBefore
      clearInterval(timer)
      // A drain that timed out has destroyed the pool already.
      await pool.close().catch(() => undefined)
      process.stdout.write(`round ${r + 1} ${name} (${flags.join(' ') || 'launcher'}): after warm-up ${warmRss.toFixed(1)} MiB; under ${rate} req/s for ${durationMs / 1000} s peak ${peak.toFixed(1)} MiB, last ${last.toFixed(1)} MiB; ${run.ok} ok, p99 ${run.latencyMs.p99.toFixed(2)} ms, CPU ${((cpuMs * 1000) / run.ok).toFixed(0)} µs a request\n`)
      await proxy.stop()
      started.splice(started.indexOf(proxy), 1)
    }
  }
} finally {
  await close()
}
