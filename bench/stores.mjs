// (f) The two budget stores side by side on one machine: the same chat load through a proxy on Redis
// (the main proxy) and through one on the embedded SQLite store: added latency at RATE req/s (a rate a shared
// 2-core machine sustains, so queueing does not swamp the difference), peak throughput and the proxy's CPU per
// request. Trials: the run's --trials (latency and peak alike).
// The latency trials interleave the stores: each trial runs the direct side, the Redis proxy and the embedded one in
// turn (the order rotating every trial, as every latency series does: Redis before the embedded one in two trials
// of three), and both stores' added latency is read
// against that one direct run, so the embedded − Redis difference of a trial is its two proxied runs' and neither
// drift between minutes nor the direct run's own noise lands in it (until this round the stores ran in two blocks,
// all Redis trials then all embedded ones, each against a direct run of its own, whose p50 moved 1.16-1.56 ms from
// trial to trial in the last full run). The trial's CPU phase then compares the two proxies at RATE (embedded as
// "floor" in its log line).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startFloor } from './procs.mjs'
import { latency, peak } from './scenarios.mjs'

const LATENCY_BUDGET = 10_000_000_000_000 // µUSD: enforcement runs but never refuses
export const RATE = 300

export async function stores(ctx) {
  const dbDir = mkdtempSync(join(tmpdir(), 'loopers-bench-db-'))
  const dbPath = join(dbDir, 'loopers.db')
  const proxy = await ctx.startProxy({ name: 'proxy-sqlite', redisUrl: null, extraEnv: { LOOPERS_DB: dbPath } })
  // The key is made by this process on the same file, as the CLI would.
  const { createDb } = await import('../dist/budget/sqlite/database.js')
  const { createSqliteKeyAdmin } = await import('../dist/budget/sqlite/admin.js')
  const { hashKey } = await import('../dist/keys.js')
  const db = createDb(dbPath)
  // The embedded store's floor: the same pass-through doing two small SQLite transactions per request.
  const floor = await startFloor({ pin: ctx.pin, upstreamUrl: ctx.fake.url, store: 'sqlite', dbPath: join(dbDir, 'floor.db') })
  try {
    const admin = createSqliteKeyAdmin(db)
    const { record } = await admin.createKey('bench-sqlite', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: LATENCY_BUDGET }, loopLimit: 0 })
    // The embedded key takes the Redis key's secret (its row's hash), so the same request serves both proxies.
    await db.transaction('bench key', () => db.statement('UPDATE keys SET hash = ? WHERE hash = ?').run(hashKey(ctx.key), record.hash))
    // redisPid null: neither SQLite side uses Redis, so its stalls are none of theirs (the peak runs' pile-up flags).
    const on = { redis: ctx, sqlite: { ...ctx, proxy, floor, redisPid: null } }
    ctx.log(`  stores: latency, Redis and embedded interleaved`)
    // The embedded proxy takes the floor's slot of the latency series (its third side), with the same request.
    const series = await latency(ctx, { proxy: ctx.proxy, floor: proxy, rates: [RATE], trials: ctx.trials, label: 'redis (floor slot: embedded)' })
    const { byRate, ...common } = series
    const trials = byRate[RATE]
    const out = {
      redis: { latency: { ...common, byRate: { [RATE]: trials.map((t) => sideOf(t, t.proxied, t.added)) } } },
      sqlite: { latency: { ...common, byRate: { [RATE]: trials.map((t) => sideOf(t, t.floor, t.floorAdded)) } } },
    }
    for (const store of ['sqlite', 'redis']) {
      out[store].peak = await peak({ ...on[store], trials: ctx.trials })
    }
    return { rate: RATE, latencyOrder: 'interleaved', ...out }
  } finally {
    db.close()
    await floor.stop()
    await proxy.stop()
    rmSync(dbDir, { recursive: true, force: true })
  }
}

/**
 * One store's side of an interleaved latency trial, shaped as a latency series' trial of its own: the shared direct
 * run, the store's proxied run and its added latency; `interleaved` is the trial's CPU phase, Redis proxy (`proxied`)
 * against embedded (`floor`), the same object on both sides.
 */
function sideOf(trial, proxied, added) {
  return { quiet: trial.quiet, rewarmed: trial.rewarmed, direct: trial.direct, proxied, added, interleaved: trial.interleaved }
}
