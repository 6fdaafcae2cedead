import { execFile } from 'node:child_process'
import { DatabaseSync } from 'node:sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createSqliteKeyAdmin } from '../../src/budget/sqlite/admin.js'
import { createDb, type Db } from '../../src/budget/sqlite/database.js'
import type { BudgetStore, KeyAdmin } from '../../src/budget/types.js'
import { reserveInput } from '../support/budget-fixture.js'
import { openSqliteStack, type SqliteStack } from '../support/sqlite-stack.js'

/** Runs `sql` with `args` from a separate Node process on the file at `path` (as the CLI or another proxy would). */
function runInProcess(path: string, sql: string, ...args: Array<string | number>): Promise<void> {
  const script = `
    const { DatabaseSync } = await import('node:sqlite')
    const db = new DatabaseSync(process.argv[1], { timeout: 5000 })
    db.prepare(process.argv[2]).run(...JSON.parse(process.argv[3]))
    db.close()`
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script, path, sql, JSON.stringify(args)], { timeout: 30_000 }, (err, _stdout, stderr) =>
      err === null ? resolve() : reject(new Error(`${err.message}\n${stderr}`)),
    )
  })
}

// The store keeps key rows between transactions (key-cache.ts): every way a key can change must reach the very next request.
describe('embedded store: a changed key bites on the very next request', () => {
  let stack: SqliteStack
  let path: string
  let db: Db
  let store: BudgetStore
  let admin: KeyAdmin
  let hash: string

  beforeEach(async () => {
    stack = await openSqliteStack('key-cache', { limits: { daily: 1_000 } })
    ;({ path, db, store, admin, hash } = stack)
    // The key's row is read, and kept, by an admitted reserve first.
    expect((await store.reserve(reserveInput(hash, 1))).ok).toBe(true)
  })
  afterEach(() => stack.close())

  it('revoked by this process (its own connection)', async () => {
    expect(await admin.revokeKey(hash)).toBe(true)
    expect(await store.reserve(reserveInput(hash, 1))).toEqual({ ok: false, reason: 'key_revoked' })
  })

  it('re-limited by this process (its own connection)', async () => {
    await admin.setBudget(hash, { limits: { daily: 100 } })
    expect(await store.reserve(reserveInput(hash, 200))).toMatchObject({ ok: false, reason: 'budget_exceeded', window: 'daily', limitMicros: 100 })
  })

  it('changed by any write on this connection, not only the admin module', async () => {
    db.statement("UPDATE keys SET providers = 'anthropic' WHERE hash = ?").run(hash)
    expect(await store.reserve(reserveInput(hash, 1))).toEqual({ ok: false, reason: 'provider_not_allowed' })
  })

  it('revoked and re-limited within the group commit of the reserves around it', async () => {
    const [before, , after] = await Promise.all([
      store.reserve(reserveInput(hash, 200)),
      admin.setBudget(hash, { limits: { daily: 100 } }),
      store.reserve(reserveInput(hash, 200)),
    ])
    expect(before.ok).toBe(true)
    expect(after).toMatchObject({ ok: false, reason: 'budget_exceeded', limitMicros: 100 })
    const [, revoked] = await Promise.all([store.reserve(reserveInput(hash, 1, { provider: 'gemini' })), admin.revokeKey(hash), store.reserve(reserveInput(hash, 1))])
    expect(revoked).toBe(true)
    expect(await store.reserve(reserveInput(hash, 1))).toEqual({ ok: false, reason: 'key_revoked' })
  })

  it('a key write rolled back with its group commit is not kept', async () => {
    // One commit: a revoke (made on its first run only), a reserve that reads the key revoked, and a work that
    // fails once; the commit rolls back and each runs again alone, the revoke now a no-op.
    let runs = 0
    const revokeOnce = db.transaction('revoke once', () => {
      if (runs++ === 0) db.statement('UPDATE keys SET active = 0 WHERE hash = ?').run(hash)
    })
    const reserved = store.reserve(reserveInput(hash, 1))
    let failed = false
    const failOnce = db.transaction('fail once', () => {
      if (!failed) {
        failed = true
        throw new Error('fails once')
      }
    })
    await Promise.all([revokeOnce, failOnce])
    expect(runs).toBe(2)
    expect((await reserved).ok).toBe(true)
    expect((await store.reserve(reserveInput(hash, 1))).ok).toBe(true)
  })

  it('revoked by another connection of this process (the CLI run in-process)', async () => {
    const other = createDb(path)
    try {
      expect(await createSqliteKeyAdmin(other).revokeKey(hash)).toBe(true)
    } finally {
      other.close()
    }
    expect(await store.reserve(reserveInput(hash, 1))).toEqual({ ok: false, reason: 'key_revoked' })
  })

  it('re-limited by another connection', async () => {
    const other = new DatabaseSync(path, { timeout: 5_000 })
    try {
      other.prepare('UPDATE keys SET lim_daily = 100 WHERE hash = ?').run(hash)
    } finally {
      other.close()
    }
    expect(await store.reserve(reserveInput(hash, 200))).toMatchObject({ ok: false, reason: 'budget_exceeded', limitMicros: 100 })
  })

  it('revoked, then re-limited, by another process', async () => {
    await runInProcess(path, 'UPDATE keys SET lim_daily = 100 WHERE hash = ?', hash)
    expect(await store.reserve(reserveInput(hash, 200))).toMatchObject({ ok: false, reason: 'budget_exceeded', limitMicros: 100 })
    expect((await store.reserve(reserveInput(hash, 50))).ok).toBe(true)
    await runInProcess(path, 'UPDATE keys SET active = 0 WHERE hash = ?', hash)
    expect(await store.reserve(reserveInput(hash, 1))).toEqual({ ok: false, reason: 'key_revoked' })
  })

  it('deleted, and created, by another process', async () => {
    await runInProcess(path, 'DELETE FROM keys WHERE hash = ?', hash)
    expect(await store.reserve(reserveInput(hash, 1))).toEqual({ ok: false, reason: 'invalid_key' })
    await runInProcess(path, "INSERT INTO keys (hash, name, providers, active, created_at, lim_daily) VALUES (?, 'again', 'openai', 1, '2026-01-01T00:00:00.000Z', 5)", hash)
    expect(await store.reserve(reserveInput(hash, 10))).toMatchObject({ ok: false, reason: 'budget_exceeded', limitMicros: 5 })
  })

  it('revoked elsewhere while a stream runs: extend is refused', async () => {
    const r = await store.reserve(reserveInput(hash, 1))
    if (!r.ok) throw new Error(r.reason)
    await runInProcess(path, 'UPDATE keys SET active = 0 WHERE hash = ?', hash)
    expect(await store.extend(r.reservation, 1, 10)).toEqual({ ok: false, reason: 'key_revoked' })
  })
})
