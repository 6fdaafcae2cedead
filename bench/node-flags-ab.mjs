// A/B of node flags or of two builds for the proxy, paired within one run so a shared machine's drift hits both
// sides alike: two proxies on the proxy core (A: plain node, without the launcher's flags; B: plain node + --flags;
// --a=CLI and --b=CLI pick each side's build, default dist/cli.js), the same Redis, fake upstream and key; each
// trial runs both, in alternating order, through (1) a closed loop of small chat requests (C=64) and (2) 20
// streams of 500 chunks, and reads each proxy's CPU time (all threads) and peak RSS. Prints per-trial ratios B ÷ A.
// `node bench/node-flags-ab.mjs --flags="--max-semi-space-size=16" [--trials=6]` after `npm run build`;
// `node bench/node-flags-ab.mjs --a=OLD/dist/cli.js [--b=dist/cli.js]` compares two builds.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { burst, closedLoop, createPool } from './load.mjs'
import { cpuSeconds, createBenchKey, detectPinning, OTHERS_CORE, pinSelf, ROOT, rssMb, sleep, startFake, startProxy, startRedis } from './procs.mjs'
import { spread } from './report.mjs'
import { requestPair, streamBody } from './scenarios.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const flags = arg('flags', '').split(/\s+/).filter(Boolean)
const trials = Number(arg('trials', '6'))
const builds = { A: resolve(arg('a', join(ROOT, 'dist/cli.js'))), B: resolve(arg('b', join(ROOT, 'dist/cli.js'))) }
const CHAT = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })
const watchdog = setTimeout(() => process.exit(1), 10 * 60_000)

const pinning = detectPinning()
if (pinning.used) pinSelf(OTHERS_CORE)
const dir = mkdtempSync(join(tmpdir(), 'loopers-ab-'))
const redis = await startRedis({ pin: pinning.used, dir })
const fake = await startFake({ pin: pinning.used })
const sides = {}
try {
  for (const [name, nodeOptions] of [['A', []], ['B', flags]]) {
    sides[name] = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: `proxy-${name}`, nodeOptions, launcher: false, cliPath: builds[name] })
  }
  const key = await createBenchKey(redis.url, 'ab')
  const chat = requestPair(key, CHAT).proxied
  const stream = requestPair(key, streamBody()).proxied
  const pools = Object.fromEntries(Object.entries(sides).map(([n, s]) => [n, createPool(s.url, 64)]))
  for (const [n, s] of Object.entries(sides)) await closedLoop({ origin: s.url, request: chat, concurrency: 64, durationMs: 1_000, pool: pools[n] })

  const rows = []
  for (let t = 0; t < trials; t++) {
    const row = {}
    for (const name of t % 2 === 0 ? ['A', 'B'] : ['B', 'A']) {
      const side = sides[name]
      await fake.reset({ completionTokens: 16 })
      await sleep(300)
      let cpu = cpuSeconds(side.pid)
      const run = await closedLoop({ origin: side.url, request: chat, concurrency: 64, durationMs: 3_000, pool: pools[name] })
      const chatUs = ((cpuSeconds(side.pid) - cpu) / run.ok) * 1e6
      await fake.reset({ chunks: 500, chunkDelayMs: 2, word: ' tok' })
      await sleep(300)
      cpu = cpuSeconds(side.pid)
      await burst({ origin: side.url, requests: Array(20).fill(stream), pool: pools[name] })
      const chunks = (await fake.ledger()).outputTokens
      const chunkUs = ((cpuSeconds(side.pid) - cpu) / chunks) * 1e6
      row[name] = { chatUs, rps: run.achievedRate, chunkUs, rssMb: rssMb(side.pid) }
    }
    rows.push(row)
    console.log(`trial ${t + 1}: CPU/request A ${row.A.chatUs.toFixed(0)} B ${row.B.chatUs.toFixed(0)} µs (B÷A ${(row.B.chatUs / row.A.chatUs).toFixed(3)}); CPU/chunk A ${row.A.chunkUs.toFixed(1)} B ${row.B.chunkUs.toFixed(1)} µs (B÷A ${(row.B.chunkUs / row.A.chunkUs).toFixed(3)}); RSS A ${row.A.rssMb.toFixed(0)} B ${row.B.rssMb.toFixed(0)} MiB`)
  }
  const med = (f) => spread(rows.map(f))
  const show = (s) => `median ${s.median.toFixed(3)} (${s.min.toFixed(3)} – ${s.max.toFixed(3)})`
  console.log(`A = ${builds.A}, B = ${builds.B} ${flags.join(' ') || '(no flags)'}: CPU per request B÷A ${show(med((r) => r.B.chatUs / r.A.chatUs))}; CPU per chunk B÷A ${show(med((r) => r.B.chunkUs / r.A.chunkUs))}`)
  await Promise.all(Object.values(pools).map((p) => p.close()))
} finally {
  for (const s of Object.values(sides)) await s.stop()
  await fake.stop()
  await redis.stop()
  rmSync(dir, { recursive: true, force: true })
  clearTimeout(watchdog)
}
