// Heap bytes allocated per request, and collections per 10k requests, of the floor (bench/floor.mjs) and two
// proxy builds in one run, each fed the bench's non-streamed chat request (closed loop, one side at a time, order
// rotating every trial). Counted inside each process by bench/alloc-probe.mjs (preloaded), so load barely moves it.
//   node bench/alloc.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] [--trials=4] [--duration=3000] [--concurrency=64]
//                        [--log-a=warn] [--log-b=warn] [--sample=DIR (sampling heap profiles of b and the floor: one trial)]
//                        [--body=BYTES] [--shape=chat|anthropic] [--stream] [--usage] [--guard] (a realistic agent request, each a new step; streamed; usage asked by the client; the key's default loop guard: bench/body-option.mjs)
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { closedLoop, createPool } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { bodyOption, guardOn, ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const trials = Number(arg('trials', '4'))
const durationMs = Number(arg('duration', '3000'))
const concurrency = Number(arg('concurrency', '64'))
const builds = { a: resolve(arg('a', join(ROOT, 'dist/cli.js'))), b: resolve(arg('b', join(ROOT, 'dist/cli.js'))) }
const sampleDir = arg('sample', null)
const PROBE = join(ROOT, 'bench/alloc-probe.mjs')
const body = bodyOption()

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-alloc-', { watchdogMs: 15 * 60_000, fake: { completionTokens: 16, ...body.fake } })
try {
  const sample = (on) => (sampleDir !== null && on ? { ALLOC_PROBE_SAMPLE: resolve(sampleDir) } : {})
  if (sampleDir !== null) mkdirSync(sampleDir, { recursive: true })
  if (sampleDir !== null) process.env.ALLOC_PROBE_SAMPLE = resolve(sampleDir)
  const sides = {
    floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, nodeArgs: ['--import', PROBE] }),
    a: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'a', logLevel: arg('log-a', 'warn'), cliPath: builds.a, nodeOptions: ['--import', PROBE], extraEnv: body.proxyEnv(fake.url) }),
    b: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'b', logLevel: arg('log-b', 'warn'), cliPath: builds.b, nodeOptions: ['--import', PROBE], extraEnv: { ...body.proxyEnv(fake.url), ...sample(true) } }),
  }
  started.push(...Object.values(sides))
  const key = await createBenchKey(redis.url, 'bench-alloc', guardOn(), body.providers)
  const request = body.request(requestPair(key, ONE_LINE_BODY).proxied)
  process.stdout.write(`${body.label}, loop guard ${guardOn() ? 'on' : 'off'}\n`)
  const names = Object.keys(sides)
  const pools = Object.fromEntries(names.map((n) => [n, createPool(sides[n].url, concurrency)]))
  const run = (n, ms) => closedLoop({ origin: sides[n].url, request, concurrency, durationMs: ms, pool: pools[n] })
  const snapshot = async (n) => {
    process.kill(sides[n].pid, 'SIGUSR2')
    const file = join(tmpdir(), `loopers-alloc-${sides[n].pid}.json`)
    for (let i = 0; i < 100; i++) {
      await sleep(20)
      try {
        const s = JSON.parse(readFileSync(file, 'utf8'))
        rmSync(file)
        return s
      } catch {}
    }
    throw new Error(`no snapshot from ${n}`)
  }
  for (const n of names) await run(n, 2_000)
  const per = Object.fromEntries(names.map((n) => [n, []]))
  for (let t = 0; t < (sampleDir === null ? trials : 1); t++) {
    const line = []
    for (const n of names.map((_, i) => names[(i + t) % names.length])) {
      await sleep(200)
      const before = await snapshot(n)
      const r = await run(n, durationMs)
      const after = await snapshot(n)
      const bytes = (after.allocated - before.allocated) / Math.max(1, r.ok)
      const scav = ((after.scavenges - before.scavenges) * 10_000) / Math.max(1, r.ok)
      per[n].push({ bytes, scav, errors: r.non2xx + r.transportErrors })
      line.push(`${n} ${Math.round(bytes)} B ${scav.toFixed(1)} scav/10k (${r.ok} req, ${after.markCompacts - before.markCompacts} mc)`)
    }
    process.stdout.write(`trial ${t + 1}: ${line.join(' | ')}\n`)
  }
  const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]
  for (const n of names) {
    const b = per[n].map((r) => r.bytes)
    process.stdout.write(`${n}: ${Math.round(med(b))} B/request (${Math.round(Math.min(...b))}–${Math.round(Math.max(...b))}), scavenges/10k ${med(per[n].map((r) => r.scav)).toFixed(1)}, errors ${per[n].reduce((s, r) => s + r.errors, 0)}\n`)
  }
  const ab = per.b.map((r, i) => r.bytes / per.a[i].bytes)
  process.stdout.write(`b ÷ a bytes/request: median ${med(ab).toFixed(3)} (${Math.min(...ab).toFixed(3)}–${Math.max(...ab).toFixed(3)})\n`)
  await Promise.all(Object.values(pools).map((p) => p.close()))
} finally {
  await close()
}
