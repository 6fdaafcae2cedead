/**
 * A fresh embedded store on a temporary database file, with its key admin and one OpenAI key, for the tests that
 * drive the store directly (no proxy). `close()` closes the connection and removes the file.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSqliteKeyAdmin } from '../../src/budget/sqlite/admin.js'
import { createDb, type Db } from '../../src/budget/sqlite/database.js'
import { createSqliteBudgetStore } from '../../src/budget/sqlite/store.js'
import type { BudgetChange, BudgetStore, KeyAdmin } from '../../src/budget/types.js'

export interface SqliteStack {
  path: string
  db: Db
  store: BudgetStore
  admin: KeyAdmin
  /** The hash of the key created with `budget`. */
  hash: string
  close(): void
}

/** A store and admin on a new file named after `name`, with a key of `budget`; `now` is both's clock when given. */
export async function openSqliteStack(name: string, budget: BudgetChange, now?: () => number): Promise<SqliteStack> {
  const dir = mkdtempSync(join(tmpdir(), `loopers-${name}-`))
  const path = join(dir, 'loopers.db')
  const db = createDb(path)
  const clock = now === undefined ? {} : { now }
  const store = createSqliteBudgetStore(db, clock)
  const admin = createSqliteKeyAdmin(db, clock)
  const { record } = await admin.createKey(name, ['openai'], budget)
  return {
    path,
    db,
    store,
    admin,
    hash: record.hash,
    close() {
      db.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
