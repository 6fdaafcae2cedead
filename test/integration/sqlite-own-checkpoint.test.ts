import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createSqliteKeyAdmin } from '../../src/budget/sqlite/admin.js'
import { startCheckpointer, type Checkpointer } from '../../src/budget/sqlite/checkpointer.js'
import { createDb } from '../../src/budget/sqlite/database.js'
import { createSqliteBudgetStore } from '../../src/budget/sqlite/store.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { reserveInput } from '../support/budget-fixture.js'
import { holdWriteLock } from '../support/sqlite-lock.js'

const tempDir = (): string => mkdtempSync(join(tmpdir(), 'loopers-own-ckpt-'))

// A settle failed with "database is locked" at one request in flight: the checkpoint worker's TRUNCATE held the
// write lock past the 250 ms busy timeout (it copies the frames written since its last PASSIVE and fsyncs, and
// cuts a WAL of hundreds of MB, with the lock held). A checkpoint the store runs itself must never fail a commit.
describe('embedded store commits while its own checkpoint holds the write lock', () => {
  it('a commit waits past its busy timeout while the store says its checkpoint holds the lock, and not otherwise', async () => {
    const dir = tempDir()
    const path = join(dir, 'loopers.db')
    let checkpointing = false
    const db = createDb(path, { busyTimeoutMs: 20, checkpointing: () => checkpointing })
    try {
      await db.transaction('first', () => undefined)
      checkpointing = true
      const held = holdWriteLock(path, 150)
      await expect(db.transaction('during own checkpoint', () => 'committed')).resolves.toBe('committed')
      await held
      checkpointing = false
      const other = holdWriteLock(path, 150)
      await expect(db.transaction('during another writer', () => 'committed')).rejects.toBeInstanceOf(StoreUnavailableError)
      await other
    } finally {
      db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  // SQLite's busy handler sleeps up to 100 ms between tries: a commit can report the lock taken after the TRUNCATE let
  // it go and lowered its flag. The checkpointer still owns up to it for a while (a 1 ms busy timeout failed so in CI).
  it('the checkpointer still says it truncates just after a TRUNCATE ended, and not long after', async () => {
    const dir = tempDir()
    const path = join(dir, 'loopers.db')
    const db = createDb(path)
    let checkpointer: Checkpointer | null = null
    try {
      db.setAutoCheckpoint(false)
      await db.transaction('write', () => db.statement('CREATE TABLE t (v TEXT) STRICT').run())
      checkpointer = startCheckpointer(path, () => undefined, { intervalMs: 5, truncateFrames: 0 })
      checkpointer.wake()
      const started = Date.now()
      while (statSync(`${path}-wal`).size > 0 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 1))
      expect(statSync(`${path}-wal`).size).toBe(0)
      // The WAL is empty: the TRUNCATE has ended (and with no commit since, no other starts).
      expect(checkpointer.truncating()).toBe(true)
      await new Promise((r) => setTimeout(r, 400))
      expect(checkpointer.truncating()).toBe(false)
    } finally {
      await checkpointer?.stop()
      db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('one request at a time with the checkpoint worker emptying the WAL, every reserve and settle commits', async () => {
    const dir = tempDir()
    const path = join(dir, 'loopers.db')
    let checkpointer: Checkpointer | null = null
    // A 1 ms busy timeout: without the wait for the worker, its TRUNCATEs fail commits within a few hundred requests.
    const db = createDb(path, { busyTimeoutMs: 1, onCommit: () => checkpointer?.wake(), checkpointing: () => checkpointer?.truncating() === true })
    try {
      const store = createSqliteBudgetStore(db)
      const admin = createSqliteKeyAdmin(db)
      const { record } = await admin.createKey('own-ckpt', ['openai'], { limits: { daily: 1_000_000_000_000 }, loopLimit: 0 })
      db.setAutoCheckpoint(false)
      checkpointer = startCheckpointer(path, () => db.setAutoCheckpoint(true), { intervalMs: 5, truncateFrames: 16 })
      const requests = 6_000
      for (let i = 0; i < requests; i++) {
        const r = await store.reserve(reserveInput(record.hash, 100))
        if (!r.ok) throw new Error(`refused: ${r.reason}`)
        const s = await store.settle(r.reservation, 7)
        if (s.alreadySettled || s.chargedMicros !== 7) throw new Error('settle did not charge once')
      }
      const status = await admin.status(record.hash)
      expect(status?.daily).toMatchObject({ spentMicros: 7 * requests, heldMicros: 0 })
    } finally {
      await checkpointer?.stop()
      db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
