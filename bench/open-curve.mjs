// CPU per request of the proxy and the floor, open loop, bucket after bucket after the bench's closed-loop JIT
// warm-up, with V8's tiering work in each bucket: does the open-loop gap stay, or is it tiering that the change
// from a closed loop to an open one sets off (code optimized on one loop's paths meeting the other's)? Both sides
// run with the launcher's flags plus --trace-opt --trace-deopt; they are fed one at a time, alternating per bucket.
// Per bucket and side: CPU per request of every thread and of the main thread and of V8's workers (µs), TurboFan
// jobs completed and deopts in the bucket, and the functions deoptimized.
//   node bench/open-curve.mjs [--cli=dist/cli.js] [--rates=500[,1000…] (--buckets at each, in turn)] [--buckets=8] [--duration=5000] [--warm=12000] [--warm-mode=closed|open]
//                              [--proxy-flags="…" (more node flags for the proxy, e.g. --trace-deopt-verbose)] [--proxy-only] [--keep-log=FILE (the proxy's trace, copied)]
import { copyFileSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy, startTracedFloor } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'
import { groupDelta, threadGroupsCpuMs } from './thread-probe.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rates = arg('rates', '500').split(',').map(Number)
const rate = rates[0]
const buckets = Number(arg('buckets', '8'))
const durationMs = Number(arg('duration', '5000'))
const warm = Number(arg('warm', '12000'))
// --warm-mode=open: the warm-up is itself open loop at --rate (as long as `warm` requests take), not closed.
const warmMode = arg('warm-mode', 'closed')
const TRACE = ['--trace-opt', '--trace-deopt']
const proxyFlags = arg('proxy-flags', '').split(/\s+/).filter(Boolean)

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-open-curve-', { fake: { completionTokens: 16 } })
try {
  const proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath, nodeOptions: [...TRACE, ...proxyFlags] })
  started.push(proxy)
  const floor = await startTracedFloor({ upstreamUrl: fake.url, redisUrl: redis.url, pin: pinning.used, cliPath, nodeArgs: TRACE })
  started.push(floor)
  const sides = { proxy: { ...proxy, lines: () => readFileSync(proxy.logFile, 'utf8') }, floor }
  const request = requestPair(await createBenchKey(redis.url, 'bench-curve'), ONE_LINE_BODY).proxied
  const pools = { proxy: createPool(proxy.url, 256), floor: createPool(floor.url, 256) }
  for (const name of Object.keys(sides)) {
    if (warmMode === 'closed') await closedLoop({ origin: sides[name].url, request, concurrency: 64, durationMs: 30_000, maxRequests: warm, pool: pools[name] })
    else await openLoop({ origin: sides[name].url, request, rate, durationMs: (warm / rate) * 1000, pool: pools[name] })
  }
  const seen = { proxy: sides.proxy.lines().length, floor: sides.floor.lines().length }
  for (let b = 0; b < buckets * rates.length; b++) {
    const bucketRate = rates[Math.floor(b / buckets)]
    const cells = []
    for (const name of process.argv.includes('--proxy-only') ? ['proxy'] : b % 2 === 0 ? ['proxy', 'floor'] : ['floor', 'proxy']) {
      const side = sides[name]
      await sleep(300)
      const before = threadGroupsCpuMs(side.pid)
      const r = await openLoop({ origin: side.url, request, rate: bucketRate, durationMs, pool: pools[name] })
      const groups = groupDelta(before, threadGroupsCpuMs(side.pid))
      const text = side.lines()
      const fresh = text.slice(seen[name])
      seen[name] = text.length
      const per = (ms) => ((ms ?? 0) * 1000) / Math.max(1, r.ok)
      const all = Object.values(groups).reduce((s, v) => s + v, 0)
      const jobs = (fresh.match(/\[completed compiling/g) ?? []).length
      // V8's own timing of each job: prepare, execute (on a worker) and finalize (on the main thread), in ms.
      const compileMs = [...fresh.matchAll(/\[completed compiling .* took ([\d.]+), ([\d.]+), ([\d.]+) ms\]/g)].reduce((sum, m) => sum + Number(m[1]) + Number(m[2]) + Number(m[3]), 0)
      const deopts = [...fresh.matchAll(/\[bailout \(kind: ([^,]+), reason: ([^)]+)\): begin\. deoptimizing \S+ <JSFunction ([^ >]*)/g)].map((m) => `${m[3] || '(anon)'}: ${m[2]}`)
      cells.push(`${name} all ${per(all).toFixed(0)} main ${per(groups.main).toFixed(0)} v8w ${per(groups['v8-workers']).toFixed(1)} µs, ${jobs} jobs (${compileMs.toFixed(1)} ms), ${deopts.length} deopts${deopts.length > 0 ? ` [${deopts.join('; ')}]` : ''}`)
    }
    process.stdout.write(`bucket ${b + 1} (${bucketRate}/s): ${cells.join(' | ')}\n`)
  }
  await Promise.all(Object.values(pools).map((p) => p.close()))
  if (arg('keep-log', null) !== null) copyFileSync(proxy.logFile, resolve(arg('keep-log')))
} finally {
  await close()
}
