// (f) The two budget stores side by side on one machine: the same chat load through a proxy on Redis
// (the main proxy) and through one on the embedded SQLite store, back to back: added latency at
// RATE req/s (a rate a shared 2-core machine sustains, so queueing does not swamp the difference),
// peak throughput and the proxy's CPU per request. Trials: the run's --trials (latency and peak alike).
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
  const db = createDb(dbPath)
  // The embedded store's floor: the same pass-through doing two small SQLite transactions per request.
  const floor = await startFloor({ pin: ctx.pin, upstreamUrl: ctx.fake.url, store: 'sqlite', dbPath: join(dbDir, 'floor.db') })
  try {
    const admin = createSqliteKeyAdmin(db)
    const { key, record } = await admin.createKey('bench-sqlite', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: LATENCY_BUDGET }, loopLimit: 0 })
    // redisPid null: neither SQLite side uses Redis, so its stalls are none of theirs (the latency runs' pile-up flags).
    const on = { redis: ctx, sqlite: { ...ctx, proxy, key, floor, redisPid: null } }
    const out = { redis: {}, sqlite: {} }
    for (const store of ['redis', 'sqlite']) {
      ctx.log(`  stores: ${store}`)
      out[store].latency = await latency(on[store], { rates: [RATE], trials: ctx.trials, label: store })
      ctx.quietBudgetMs = on[store].quietBudgetMs
    }
    for (const store of ['sqlite', 'redis']) {
      out[store].peak = await peak({ ...on[store], trials: ctx.trials })
    }
    return { rate: RATE, ...out }
  } finally {
    db.close()
    await floor.stop()
    await proxy.stop()
    rmSync(dbDir, { recursive: true, force: true })
  }
}
