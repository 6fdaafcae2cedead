// Stream A/B of two builds, both loaded at once on the proxy core: each trial sends K streams of M chunks to A
// and to B at the same time (one fake upstream, one Redis, one key) and reads each proxy's CPU time, so a shared
// machine's drift hits both sides alike (node-flags-ab.mjs runs its sides one after the other). Prints CPU per
// chunk of each side and B ÷ A per trial, then medians with spread.
// --ttfb: time to first byte instead, the bench's short streams (20 chunks 5 ms apart, max_tokens 64) sent open
// loop at --rate per second to A and to B at once for --duration ms per trial; prints each side's p50 and B − A.
//   node bench/stream-ab.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] [--trials=8] [--streams=20] [--chunks=1000]
//   node bench/stream-ab.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] --ttfb [--trials=8] [--rate=100] [--duration=3000]
import { join, resolve } from 'node:path'
import { burst, createPool, openLoop } from './load.mjs'
import { cpuSeconds, createBenchKey, ROOT, sleep, startBenchStack, startProxy } from './procs.mjs'
import { spread } from './report.mjs'
import { requestPair, streamBody } from './scenarios.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
if (arg('a', null) === null) {
  process.stderr.write('usage: node bench/stream-ab.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] [--trials=8] [--streams=20] [--chunks=1000] [--ttfb [--rate=100] [--duration=3000]]\n')
  process.exit(2)
}
const builds = { a: resolve(arg('a')), b: resolve(arg('b', join(ROOT, 'dist/cli.js'))) }
const streams = Number(arg('streams', 20))
const chunks = Number(arg('chunks', 1000))
const trials = Number(arg('trials', 8))
const ttfb = process.argv.includes('--ttfb')
const rate = Number(arg('rate', 100))
const durationMs = Number(arg('duration', 3000))
const median = (xs) => spread(xs).median
const ratioSpread = (xs) => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-stream-ab-')
try {
  const sides = {}
  for (const name of ['a', 'b']) {
    sides[name] = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name, cliPath: builds[name] })
    started.push(sides[name])
  }
  const key = await createBenchKey(redis.url, 'bench-stream-ab')
  if (ttfb) await compareTtfb(sides, fake, key)
  else await compareChunks(sides, fake, key)
} finally {
  await close()
}

/** Both builds' p50 time to first byte, trial by trial, under the same open-loop load at once. */
async function compareTtfb(sides, fake, key) {
  const request = requestPair(key, streamBody(64)).proxied
  const pools = { a: createPool(sides.a.url, 256), b: createPool(sides.b.url, 256) }
  await fake.reset({ chunks: 20, chunkDelayMs: 5, word: ' tok' })
  // One side's requests fall halfway between the other's (neither's stream waits behind the other's in the same
  // turn); which side goes second alternates by trial, so neither is always the one sent into the other's wake.
  const run = (name) => openLoop({ origin: sides[name].url, request, rate, durationMs, pool: pools[name] })
  const later = (name) => sleep(500 / rate).then(() => run(name))
  const load = (t) => Promise.all(t % 2 === 1 ? [run('a'), later('b')] : [later('a'), run('b')])
  await load(0)
  const p50 = { a: [], b: [] }
  const diffs = []
  for (let t = 1; t <= trials; t++) {
    await sleep(300)
    const runs = await load(t)
    for (const [i, name] of ['a', 'b'].entries()) {
      if (runs[i].ok !== runs[i].sent) throw new Error(`trial ${t}: ${name} answered ${runs[i].ok} of ${runs[i].sent} streams`)
      p50[name].push(runs[i].ttfbMs.p50)
    }
    diffs.push(p50.b.at(-1) - p50.a.at(-1))
    process.stdout.write(`trial ${t}: p50 ttfb a ${p50.a.at(-1).toFixed(3)} ms, b ${p50.b.at(-1).toFixed(3)} ms, b − a ${diffs.at(-1).toFixed(3)} ms\n`)
  }
  const ratios = p50.b.map((b, i) => b / p50.a[i])
  process.stdout.write(`p50 ttfb: a ${median(p50.a).toFixed(3)} ms, b ${median(p50.b).toFixed(3)} ms; b − a median ${median(diffs).toFixed(3)} ms (${Math.min(...diffs).toFixed(3)}–${Math.max(...diffs).toFixed(3)}); b ÷ a ${ratioSpread(ratios)}, lower in ${diffs.filter((d) => d < 0).length}/${trials}\n`)
  for (const pool of Object.values(pools)) await pool.close()
}

/** Both builds' CPU per streamed chunk, trial by trial, K long streams to each at once. */
async function compareChunks(sides, fake, key) {
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
}
