import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { openStore } from '../../src/budget/open-store.js'
import { createDb } from '../../src/budget/sqlite/database.js'
import { startCheckpointer } from '../../src/budget/sqlite/checkpointer.js'
import { loadConfig } from '../../src/config.js'
import { reserveInput } from '../support/budget-fixture.js'
import { eventually } from '../support/proxy.js'

// The server's embedded store checkpoints its WAL from a worker thread about once a second (bounding
// what a power cut can lose), never inside a request's commit on the event loop.
describe('embedded store WAL checkpoints', () => {
  it('a long-running store copies committed pages into the database file in the background', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loopers-ckpt-'))
    const path = join(dir, 'loopers.db')
    const opened = await openStore(loadConfig({ LOOPERS_DB: path }), { housekeeping: true })
    try {
      expect(await opened.ready(2_000)).toBe(true)
      const { record } = await opened.keys.createKey('ckpt', ['openai'], { unlimited: true })
      await new Promise((r) => setTimeout(r, 1_200))
      const size = statSync(path).size
      const started = performance.now()
      // Far fewer pages than SQLite's own auto-checkpoint (1,000) would wait for: only the worker moves them.
      for (let i = 0; i < 50; i++) {
        const r = await opened.store.reserve(reserveInput(record.hash, 1))
        if (!r.ok) throw new Error('refused')
        await opened.store.settle(r.reservation, 1)
      }
      // The commits themselves never checkpoint. On a loaded machine the loop can outlast the worker's
      // one-second tick, and a background checkpoint may then land inside it: only a short loop proves it.
      if (performance.now() - started < 500) expect(statSync(path).size).toBe(size)
      expect(statSync(`${path}-wal`).size).toBeGreaterThan(0)
      await eventually(() => statSync(path).size > size, 'a background checkpoint', 5_000)
    } finally {
      await opened.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  // The worker is a thread with its own V8 heap (~12-18 MB of RSS): a proxy that has served nothing does not
  // start it; what an earlier run left in the WAL is checkpointed at start on the store's own connection.
  it('starts no worker at start-up, checkpoints what an earlier run left, and starts the worker with the first commit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loopers-ckpt-'))
    const path = join(dir, 'loopers.db')
    const threads = (): number => readdirSync('/proc/self/task').length
    // An earlier run that ended with commits still in its WAL (auto-checkpoint off, as under the worker).
    const earlier = createDb(path)
    earlier.setAutoCheckpoint(false)
    earlier.transactionNow('schema', () => earlier.statement('CREATE TABLE IF NOT EXISTS t (v TEXT) STRICT').run())
    for (let i = 0; i < 20; i++) earlier.transactionNow('write', () => earlier.statement('INSERT INTO t VALUES (?)').run('x'.repeat(20_000)))
    const sizeBefore = statSync(path).size
    const before = threads()
    const opened = await openStore(loadConfig({ LOOPERS_DB: path }), { housekeeping: true })
    try {
      expect(await opened.ready(2_000)).toBe(true)
      expect(statSync(path).size).toBeGreaterThan(sizeBefore + 20 * 20_000)
      await new Promise((r) => setTimeout(r, 300))
      expect(threads()).toBe(before)
      await opened.keys.createKey('first', ['openai'], { unlimited: true })
      await eventually(() => threads() > before, 'the worker started by the first commit', 5_000)
    } finally {
      await opened.close()
      earlier.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  // The worker is a thread with its own V8 heap (~18 MB of RSS): an idle proxy should not keep it.
  it('runs the worker only while commits happen, and checkpoints again after a pause', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loopers-ckpt-'))
    const path = join(dir, 'loopers.db')
    const threads = (): number => readdirSync('/proc/self/task').length
    let exited = false
    const checkpointer = { current: null as ReturnType<typeof startCheckpointer> | null }
    const db = createDb(path, { onCommit: () => checkpointer.current?.wake() })
    try {
      db.transactionNow('schema', () => db.statement('CREATE TABLE IF NOT EXISTS t (v TEXT) STRICT').run())
      db.setAutoCheckpoint(false)
      const before = threads()
      checkpointer.current = startCheckpointer(path, () => (exited = true), { intervalMs: 50, idleStopMs: 400 })
      expect(threads()).toBe(before) // nothing committed yet: no worker
      const write = (): void => void db.transactionNow('write', () => db.statement('INSERT INTO t VALUES (?)').run('x'.repeat(20_000)))
      write()
      await eventually(() => threads() > before, 'the worker started by a commit', 5_000)
      await eventually(() => threads() === before, 'the worker stopped after an idle period', 5_000)
      const size = statSync(path).size
      write()
      await eventually(() => statSync(path).size > size, 'a checkpoint after the pause', 5_000)
      expect(exited).toBe(false)
    } finally {
      await checkpointer.current?.stop()
      db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
