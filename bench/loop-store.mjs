// The loop guard's cost inside the budget store, where it lives: one request's store work (reserve with the
// loop check, then settle) with the guard on vs off (`--loop-limit 0`), in this process and, on Redis, in
// redis-server (the Lua script runs there). Worst case by default: every request is a new step of one
// conversation whose scope is full, so it grows past the limit and is trimmed. Trials alternate on/off; the
// result is the median over trials of the difference in µs of CPU per request (on and off alternate every 50
// requests within a trial). Set it beside the proxy's CPU
// per request (`bench/loop-guard.mjs`, ~1,100 µs) for the ratio: the end-to-end run on a shared 2-core machine
// is too noisy to resolve 3% (its --control A/A run shows the spread).
// Bounded: TRIALS × 2 × N sequential requests against a temporary store; every process it starts is stopped.
// Run: `npm run build && node bench/loop-store.mjs [--store=sqlite|redis] [--scopes=one|many] [--requests=N] [--trials=T]`.
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRedis, threadsCpuMs } from './procs.mjs'

const option = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback
const N = Number(option('requests', 2000))
const TRIALS = Number(option('trials', 9))
const STORE = option('store', 'sqlite')
const ONE_SCOPE = option('scopes', 'one') !== 'many'
if (STORE !== 'sqlite' && STORE !== 'redis') throw new Error(`--store must be sqlite or redis, not ${STORE}`)

const cpuMs = threadsCpuMs

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const hex = (n) => n.toString(16).padStart(16, '0')

const dir = mkdtempSync(join(tmpdir(), 'loopers-bench-loop-store-'))
const redisServer = STORE === 'redis' ? await startRedis({ pin: false, dir }) : null
const closers = []
try {
  let store
  let admin
  if (STORE === 'sqlite') {
    const { createDb } = await import('../dist/budget/sqlite/database.js')
    const { createSqliteKeyAdmin } = await import('../dist/budget/sqlite/admin.js')
    const { createSqliteBudgetStore } = await import('../dist/budget/sqlite/store.js')
    const db = createDb(join(dir, 'loopers.db'))
    closers.push(() => db.close())
    store = createSqliteBudgetStore(db)
    admin = createSqliteKeyAdmin(db)
  } else {
    const { createRedisClient } = await import('../dist/budget/redis/redis-client.js')
    const { createKeyAdmin } = await import('../dist/budget/redis/admin.js')
    const { createBudgetStore } = await import('../dist/budget/redis/store.js')
    const redis = createRedisClient({ url: redisServer.url, clusterNodes: null, commandTimeoutMs: 2_000 })
    closers.push(() => redis.disconnect())
    for (let t = 0; redis.status !== 'ready'; t++) {
      if (t > 100) throw new Error('redis did not connect')
      await new Promise((r) => setTimeout(r, 20))
    }
    store = createBudgetStore(redis)
    admin = createKeyAdmin(redis)
  }
  const keys = {
    on: (await admin.createKey('guard-on', ['openai'], { unlimited: true })).record.hash,
    off: (await admin.createKey('guard-off', ['openai'], { unlimited: true, loopLimit: 0 })).record.hash,
  }
  let step = 0
  const request = async (hash) => {
    step++
    const loop = { scope: `c:${hex(ONE_SCOPE ? 1 : step)}`, step: hex(step) }
    const r = await store.reserve({ keyHash: hash, provider: 'openai', requestId: randomUUID(), minMicros: 10, maxMicros: 100, session: null, loop })
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    await store.settle(r.reservation, 50)
  }
  const pids = redisServer === null ? [process.pid] : [process.pid, redisServer.pid]
  const cpu = () => pids.map(cpuMs)
  for (let i = 0; i < 600; i++) await request(keys.on) // warm-up; the one scope fills
  for (let i = 0; i < 300; i++) await request(keys.off)
  // On and off alternate every CHUNK requests within a trial, so both see the same neighbours on a shared machine.
  const CHUNK = 50
  const trials = []
  for (let trial = 0; trial < TRIALS; trial++) {
    const per = { on: pids.map(() => 0), off: pids.map(() => 0) }
    for (let done = 0; done < N; done += CHUNK) {
      const n = Math.min(CHUNK, N - done)
      for (const name of (trial + done / CHUNK) % 2 === 0 ? ['on', 'off'] : ['off', 'on']) {
        const before = cpu()
        for (let i = 0; i < n; i++) await request(keys[name])
        cpu().forEach((ms, i) => (per[name][i] += ((ms - before[i]) * 1000) / N))
      }
    }
    trials.push(per)
  }
  const sum = (xs) => xs.reduce((a, b) => a + b, 0)
  const round = (x) => Math.round(x * 10) / 10
  const result = {
    store: STORE, scopes: ONE_SCOPE ? 'one' : 'many', requests: TRIALS * 2 * N, trials: TRIALS,
    cpu_us_per_request: { guard_on: round(median(trials.map((t) => sum(t.on)))), guard_off: round(median(trials.map((t) => sum(t.off)))) },
    guard_us_per_request: round(median(trials.map((t) => sum(t.on) - sum(t.off)))),
    // The quietest trial of each side: contention from other processes only ever adds CPU time.
    guard_us_per_request_quietest: round(Math.min(...trials.map((t) => sum(t.on))) - Math.min(...trials.map((t) => sum(t.off)))),
    trial_guard_us: trials.map((t) => round(sum(t.on) - sum(t.off))),
  }
  if (redisServer !== null) result.redis_guard_us_per_request = round(median(trials.map((t) => t.on[1] - t.off[1])))
  console.log(JSON.stringify(result))
} finally {
  for (const close of closers) close()
  await redisServer?.stop()
  rmSync(dir, { recursive: true, force: true })
}
