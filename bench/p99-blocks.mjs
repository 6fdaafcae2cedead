// The proxy's and the floor's own long blocks at an open-loop rate, side by side with each trial's p99: with
// bench/loop-delay.mjs preloaded into both (a 2 ms timer on the main thread; it costs both alike), every stretch of
// more than 1 ms of a side's own work on its main thread (wall time less idle time and time waiting for a core) and
// every collection pause of 1 ms or more during each trial is counted. Whether the proxy's added p99 is its own
// work (collections, long callbacks) or the machine's shows here: a p99 that moves without blocks is not the proxy's.
//   node bench/p99-blocks.mjs [--cli=dist/cli.js] [--rate=1000] [--trials=6] [--duration=5000] [--warm=12000]
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '1000'))
const trials = Number(arg('trials', '6'))
const durationMs = Number(arg('duration', '5000'))
const warm = Number(arg('warm', '12000'))
const PROBE = join(ROOT, 'bench/loop-delay.mjs')

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-p99-blocks-', { fake: { completionTokens: 16 } })
try {
  const files = { proxy: join(dir, 'proxy.blocks'), floor: join(dir, 'floor.blocks') }
  // The floor takes this process's environment; the proxy only what it is given.
  process.env.LOOPERS_BENCH_LOOP_DELAY_FILE = files.floor
  const sides = {
    floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, nodeArgs: ['--import', PROBE] }),
    proxy: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath, nodeOptions: ['--import', PROBE], extraEnv: { LOOPERS_BENCH_LOOP_DELAY_FILE: files.proxy } }),
  }
  started.push(...Object.values(sides))
  const request = requestPair(await createBenchKey(redis.url, 'bench-p99'), ONE_LINE_BODY).proxied
  const pools = { proxy: createPool(sides.proxy.url, 256), floor: createPool(sides.floor.url, 256) }
  for (const name of Object.keys(sides)) {
    await closedLoop({ origin: sides[name].url, request, concurrency: 64, durationMs: 30_000, maxRequests: warm, pool: pools[name] })
    await openLoop({ origin: sides[name].url, request, rate, durationMs: 3_000, pool: pools[name] })
  }
  const rows = { proxy: [], floor: [] }
  for (let t = 0; t < trials; t++) {
    const cells = []
    for (const name of t % 2 === 0 ? ['proxy', 'floor'] : ['floor', 'proxy']) {
      await sleep(300)
      const from = Date.now()
      const r = await openLoop({ origin: sides[name].url, request, rate, durationMs, pool: pools[name] })
      const to = Date.now()
      const lines = readLines(files[name]).filter((l) => l.at >= from && l.at <= to)
      const blocks = lines.filter((l) => l.ownMs > 1).map((l) => l.ownMs)
      const gcs = lines.filter((l) => l.gcMs !== undefined).map((l) => l.gcMs)
      const waits = lines.filter((l) => l.blockedMs > 5).map((l) => l.blockedMs)
      const row = { p99: r.latencyMs.p99, blocks: blocks.length, longest: Math.max(0, ...blocks), gcs: gcs.length, longestGc: Math.max(0, ...gcs), late: waits.length, latest: Math.max(0, ...waits) }
      rows[name].push(row)
      cells.push(`${name} p99 ${row.p99.toFixed(2)} ms, own blocks >1 ms ${row.blocks} (longest ${row.longest.toFixed(2)}), GC pauses ≥1 ms ${row.gcs} (longest ${row.longestGc.toFixed(2)}), timer >5 ms late ${row.late} (latest ${row.latest.toFixed(1)})`)
    }
    process.stdout.write(`trial ${t + 1}: ${cells.join(' | ')}\n`)
  }
  const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]
  for (const name of Object.keys(rows)) {
    const of = (field) => med(rows[name].map((r) => r[field])).toFixed(2)
    process.stdout.write(`${name} medians: p99 ${of('p99')} ms, own blocks >1 ms ${of('blocks')} (longest ${of('longest')}), GC pauses ${of('gcs')} (longest ${of('longestGc')}), timer >5 ms late ${of('late')} (latest ${of('latest')})\n`)
  }
  await Promise.all(Object.values(pools).map((p) => p.close()))
} finally {
  await close()
}

function readLines(file) {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line))
  } catch {
    return []
  }
}
