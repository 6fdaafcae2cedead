// Where a request's store time goes at a low open rate (scenario f's 300 req/s: most requests alone), timed inside
// each proxy: one proxy on Redis and one on the embedded store, both preloaded with bench/store-phases-hook.mjs (never
// in production), each first warmed (12,000 requests, 64 at a time), then TRIALS open-loop runs each at RATE,
// alternating trial by trial (order alternating). Prints per store the median and p90 of each store call (reserve,
// settle: from the call to its end), and on the embedded store each phase of a lone request's commit (the wait for
// the group commit's turn, split into the caller's own code after the call and what follows it, BEGIN IMMEDIATE,
// statements, deferred writes, COMMIT) and the batches' sizes.
//   node bench/store-phases.mjs [--build=dist/cli.js] [--rate=300] [--trials=5] [--duration=5000]
// Bounded: the stack's watchdog (10 min); every process it starts is stopped.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('build', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '300'))
const trials = Number(arg('trials', '5'))
const durationMs = Number(arg('duration', '5000'))
const HOOK = fileURLToPath(new URL('./store-phases-hook.mjs', import.meta.url))
const WARM_REQUESTS = 12_000

const quantile = (xs, q) => {
  const s = Float64Array.from(xs).sort()
  return s.length === 0 ? null : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]
}
const us = (ms) => (ms === null ? '–' : `${Math.round(ms * 1000)}`)
const line = (label, xs) => `    ${label.padEnd(44)} p50 ${us(quantile(xs, 0.5)).padStart(5)} µs  p90 ${us(quantile(xs, 0.9)).padStart(5)} µs  (n ${xs.length})`

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-phases-', { watchdogMs: 10 * 60_000, fake: { completionTokens: 16 } })
try {
  const phasesFile = (name) => join(dir, `${name}.jsonl`)
  const start = (name, store) =>
    startProxy({ pin: pinning.used, ...store, upstreamUrl: fake.url, dir, name, cliPath, nodeOptions: ['--import', HOOK], extraEnv: { ...store.extraEnv, LOOPERS_BENCH_PHASES_FILE: phasesFile(name) } })
  const sides = {
    redis: { proxy: await start('redis', { redisUrl: redis.url, extraEnv: {} }), key: await createBenchKey(redis.url, 'phases') },
    sqlite: { proxy: await start('sqlite', { redisUrl: null, extraEnv: { LOOPERS_DB: join(dir, 'sqlite.db') } }), key: null },
  }
  for (const s of Object.values(sides)) started.push(s.proxy)
  // The embedded store's key is made on its file by this process, as the CLI would (bench/stores.mjs alike).
  const { createDb } = await import(join(cliPath, '../budget/sqlite/database.js'))
  const { createSqliteKeyAdmin } = await import(join(cliPath, '../budget/sqlite/admin.js'))
  const db = createDb(join(dir, 'sqlite.db'))
  try {
    const admin = createSqliteKeyAdmin(db)
    const { key, record } = await admin.createKey('phases', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 10_000_000_000_000 }, loopLimit: 0 })
    sides.sqlite.key = key
  } finally {
    db.close()
  }
  const latencies = { redis: [], sqlite: [] }
  for (const [name, s] of Object.entries(sides)) {
    s.request = requestPair(s.key, ONE_LINE_BODY).proxied
    s.pool = createPool(s.proxy.url, 256)
    await closedLoop({ origin: s.proxy.url, request: s.request, concurrency: 64, durationMs: 60_000, maxRequests: WARM_REQUESTS, pool: s.pool })
    process.kill(s.proxy.pid, 'SIGUSR2') // the first window opens; what it holds from now on is dropped at the next
    console.log(`warmed ${name}`)
  }
  for (let t = 0; t < trials; t++) {
    for (const name of t % 2 === 0 ? ['redis', 'sqlite'] : ['sqlite', 'redis']) {
      const s = sides[name]
      await openLoop({ origin: s.proxy.url, request: s.request, rate, durationMs: 1_000, pool: s.pool })
      process.kill(s.proxy.pid, 'SIGUSR2') // drops the lead-in's samples
      await sleep(100)
      const run = await openLoop({ origin: s.proxy.url, request: s.request, rate, durationMs, pool: s.pool })
      process.kill(s.proxy.pid, 'SIGUSR2') // appends this run's samples
      latencies[name].push(run.latencyMs.p50)
      console.log(`trial ${t + 1} ${name}: p50 ${run.latencyMs.p50.toFixed(3)} ms, p99 ${run.latencyMs.p99.toFixed(3)} ms, errors ${run.non2xx + run.transportErrors}`)
    }
  }
  await sleep(300)
  for (const name of Object.keys(sides)) {
    // Windows 2, 4, …: the measured runs (1, 3, …: each run's lead-in).
    const windows = readFileSync(phasesFile(name), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((_, i) => i % 2 === 1)
    const all = { calls: windows.flatMap((w) => w.calls), waits: windows.flatMap((w) => w.waits), txs: windows.flatMap((w) => w.txs) }
    console.log(`${name}: client p50 per trial ${latencies[name].map((x) => x.toFixed(3)).join(', ')} ms`)
    for (const op of ['reserve', 'settle']) console.log(line(`${op}: call to end`, all.calls.filter(([o]) => o === op).map(([, ms]) => ms)))
    if (all.txs.length === 0) continue
    for (const op of ['reserve', 'settle']) {
      const alone = all.txs.filter(([what]) => what === op)
      const lone = all.waits.filter(([what, size]) => what === op && size === 1)
      console.log(line(`${op} alone: queued to its turn`, lone.map(([, , ms]) => ms)))
      console.log(line(`${op} alone: of it, the caller's own code`, lone.filter((w) => w[3] !== null).map((w) => w[3])))
      console.log(line(`${op} alone: of it, after the caller's code`, lone.filter((w) => w[3] !== null).map((w) => w[2] - w[3])))
      for (const [i, phase] of ['BEGIN IMMEDIATE', 'statements', 'deferred writes', 'COMMIT'].entries()) console.log(line(`${op} alone: ${phase}`, alone.map((r) => r[2 + i])))
    }
    const sizes = all.waits.map(([, size]) => size)
    const lone = sizes.filter((n) => n === 1).length
    const batched = all.txs.filter(([what]) => what === 'batch')
    console.log(`    works committed alone ${lone} of ${sizes.length} (${((100 * lone) / Math.max(1, sizes.length)).toFixed(1)} %); batches of 2+: ${batched.length}, median size ${quantile(batched.map((r) => r[1]), 0.5) ?? '–'}`)
    for (const op of ['reserve', 'settle']) console.log(line(`${op} in a batch of 2+: queued to its turn`, all.waits.filter(([what, size]) => what === op && size > 1).map(([, , ms]) => ms)))
    console.log(line('other commits (housekeeping): whole', all.txs.filter(([what]) => what === 'other').map((r) => r[2] + r[3] + r[4] + r[5])))
  }
  for (const s of Object.values(sides)) await s.pool.close()
} finally {
  await close()
}
