import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSqliteKeyAdmin } from '../../src/budget/sqlite/admin.js'
import { createDb } from '../../src/budget/sqlite/database.js'
import { createSqliteBudgetStore } from '../../src/budget/sqlite/store.js'
import { WINDOW_NAMES } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createBudgetFixture, reserveInput, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

/** The embedded store shared by several processes on one machine (`npm test` builds dist/ first). */

const STORE_JS = new URL('../../dist/budget/sqlite/store.js', import.meta.url).href
const DB_JS = new URL('../../dist/budget/sqlite/database.js', import.meta.url).href

/** A separate Node process that sends `count` reserves of `micros` against the database at `path`; resolves with how many were admitted. */
function floodFromProcess(path: string, hash: string, count: number, micros: number): Promise<number> {
  const script = `
    const { createDb } = await import(${JSON.stringify(DB_JS)})
    const { createSqliteBudgetStore } = await import(${JSON.stringify(STORE_JS)})
    const store = createSqliteBudgetStore(createDb(process.argv[1], { busyTimeoutMs: 5000 }))
    const results = await Promise.all(Array.from({ length: Number(process.argv[3]) }, (_, i) => store.reserve({
      keyHash: process.argv[2], provider: 'openai', requestId: process.pid + '-' + i,
      minMicros: Number(process.argv[4]), maxMicros: Number(process.argv[4]), session: null,
    })))
    process.stdout.write(String(results.filter((r) => r.ok).length))`
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', script, path, hash, String(count), String(micros)],
      { timeout: 60_000 },
      (err, stdout, stderr) => (err === null ? resolve(Number(stdout)) : reject(new Error(`${err.message}\n${stderr}`))),
    )
  })
}

let server: TestStore
let f: BudgetFixture

beforeAll(async () => {
  if (!existsSync(fileURLToPath(STORE_JS))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)')
  server = await startTestStore('sqlite')
  f = await createBudgetFixture(server)
})
afterAll(async () => {
  await f?.close()
  await server?.stop()
})

describe('embedded store across processes on one database file', () => {
  it('a flood from two processes at once admits exactly N', async () => {
    const X = 7_919
    const N = 137
    const hash = await f.newKey({ limits: { daily: N * X } })
    const admitted = await Promise.all([floodFromProcess(server.dbPath!, hash, 500, X), floodFromProcess(server.dbPath!, hash, 500, X)])
    expect(admitted[0]! + admitted[1]!).toBe(N)
    // The children booked at the real time (the fixture's clock is fake): read those periods.
    const db = createDb(server.dbPath!)
    const live = await createSqliteKeyAdmin(db).status(hash)
    db.close()
    for (const w of WINDOW_NAMES) expect(live?.[w]).toMatchObject({ spentMicros: 0, heldMicros: N * X })
  })

  it('waits for a write lock held by another connection on timers, never blocking the event loop, then fails closed', async () => {
    const hash = await f.newKey({ limits: { daily: 1_000 } })
    const other = new DatabaseSync(server.dbPath!)
    try {
      other.exec('BEGIN IMMEDIATE')
      let ticks = 0
      const ticker = setInterval(() => ticks++, 5)
      const started = performance.now()
      const refused = await f.store.reserve(reserveInput(hash, 10)).catch((e: unknown) => e)
      const waited = performance.now() - started
      clearInterval(ticker)
      expect(refused).toBeInstanceOf(StoreUnavailableError)
      // It waited about the busy timeout (250 ms), and the loop ran timers all along.
      expect(waited).toBeGreaterThanOrEqual(200)
      expect(ticks).toBeGreaterThanOrEqual(10)
      // Released within the wait: the next reserve gets the lock and is admitted.
      const pending = f.store.reserve(reserveInput(hash, 10))
      setTimeout(() => other.exec('COMMIT'), 30)
      expect((await pending).ok).toBe(true)
    } finally {
      if (other.isTransaction) other.exec('ROLLBACK')
      other.close()
    }
  })

  it('creates the folder 0700 and the file 0600', async () => {
    const root = mkdtempSync(join(tmpdir(), 'loopers-mode-'))
    try {
      const path = join(root, 'nested', 'loopers.db')
      const db = createDb(path)
      await createSqliteBudgetStore(db).ping()
      db.close()
      expect(statSync(join(root, 'nested')).mode & 0o777).toBe(0o700)
      expect(statSync(path).mode & 0o777).toBe(0o600)
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  })
})
