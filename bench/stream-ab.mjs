// Stream A/B of two builds, both loaded at once on the proxy core: each trial sends K streams of M chunks to A
// and to B at the same time (one fake upstream, one Redis, one key) and reads each proxy's CPU time, so a shared
// machine's drift hits both sides alike (node-flags-ab.mjs runs its sides one after the other). Prints CPU per
// chunk of each side and B ÷ A per trial, then medians with spread.
//   node bench/stream-ab.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] [--trials=8] [--streams=20] [--chunks=1000]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { burst, createPool } from './load.mjs'
import { cpuSeconds, createBenchKey, detectPinning, OTHERS_CORE, pinSelf, ROOT, sleep, startFake, startProxy, startRedis } from './procs.mjs'
import { spread } from './report.mjs'
import { requestPair, streamBody } from './scenarios.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
if (arg('a', null) === null) {
  process.stderr.write('usage: node bench/stream-ab.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] [--trials=8] [--streams=20] [--chunks=1000]\n')
  process.exit(2)
}
const builds = { a: resolve(arg('a')), b: resolve(arg('b', join(ROOT, 'dist/cli.js'))) }
const streams = Number(arg('streams', 20))
const chunks = Number(arg('chunks', 1000))
const trials = Number(arg('trials', 8))
const median = (xs) => spread(xs).median
const ratioSpread = (xs) => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`

const pinning = detectPinning()
if (pinning.used) pinSelf(OTHERS_CORE)
const dir = mkdtempSync(join(tmpdir(), 'loopers-stream-ab-'))
const started = []
const watchdog = setTimeout(() => process.exit(1), 20 * 60_000)
try {
  const redis = await startRedis({ pin: pinning.used, dir })
  started.push(redis)
  const fake = await startFake({ pin: pinning.used })
  started.push(fake)
  const sides = {}
  for (const name of ['a', 'b']) {
    sides[name] = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name, cliPath: builds[name] })
    started.push(sides[name])
  }
  const key = await createBenchKey(redis.url, 'bench-stream-ab')
  const request = requestPair(key, streamBody()).proxied
  const pools = { a: createPool(sides.a.url, streams), b: createPool(sides.b.url, streams) }
  // Warm-up: both proxies serve a round of short streams first.
  await fake.reset({ chunks: 50, chunkDelayMs: 2 })
  for (const name of ['a', 'b']) await burst({ origin: sides[name].url, requests: Array(streams).fill(request), pool: pools[name] })
  await sleep(2_000)
  const ratios = []
  const perChunk = { a: [], b: [] }
  for (let t = 1; t <= trials; t++) {
    await fake.reset({ chunks, chunkDelayMs: 2 })
    await sleep(200)
    const before = { a: cpuSeconds(sides.a.pid), b: cpuSeconds(sides.b.pid) }
    const runs = await Promise.all(['a', 'b'].map((name) => burst({ origin: sides[name].url, requests: Array(streams).fill(request), pool: pools[name] })))
    const us = {}
    for (const [i, name] of ['a', 'b'].entries()) {
      us[name] = ((cpuSeconds(sides[name].pid) - before[name]) * 1e6) / (streams * chunks)
      perChunk[name].push(us[name])
      if (runs[i].ok !== streams) throw new Error(`trial ${t}: ${name} answered ${runs[i].ok} of ${streams} streams`)
    }
    ratios.push(us.b / us.a)
    process.stdout.write(`trial ${t}: a ${us.a.toFixed(1)} µs/chunk, b ${us.b.toFixed(1)} µs/chunk, b ÷ a ${(us.b / us.a).toFixed(3)}; client reads per stream a ${runs[0].readsPerResponse?.toFixed(0)} b ${runs[1].readsPerResponse?.toFixed(0)}\n`)
  }
  process.stdout.write(`CPU per chunk: a ${median(perChunk.a).toFixed(1)} µs, b ${median(perChunk.b).toFixed(1)} µs; b ÷ a median ${ratioSpread(ratios)}, lower in ${ratios.filter((r) => r < 1).length}/${trials}\n`)
  for (const pool of Object.values(pools)) await pool.close()
} finally {
  clearTimeout(watchdog)
  for (const s of started.reverse()) await s.stop().catch(() => undefined)
  rmSync(dir, { recursive: true, force: true })
}
