import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createSqliteKeyAdmin } from '../../src/budget/sqlite/admin.js'
import { startCheckpointer, type Checkpointer } from '../../src/budget/sqlite/checkpointer.js'
import { createDb } from '../../src/budget/sqlite/database.js'
import { createSqliteBudgetStore } from '../../src/budget/sqlite/store.js'
import { reserveInput } from '../support/budget-fixture.js'
import { eventually } from '../support/proxy.js'

// Under commits that never pause, each PASSIVE checkpoint ends with newer frames already in the WAL, so
// SQLite never starts the WAL over and journal_size_limit never cuts it back: it grew by ~1 KiB a request
// (hundreds of MB a minute at peak). The worker empties it once it holds more than truncateFrames.
describe('embedded store WAL under sustained commits', () => {
  it('is cut back while every reserve and settle succeeds and the ledger stays exact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loopers-wal-'))
    const path = join(dir, 'loopers.db')
    let checkpointer: Checkpointer | null = null
    const db = createDb(path, { onCommit: () => checkpointer?.wake() })
    const wal = (): number => {
      try {
        return statSync(`${path}-wal`).size
      } catch {
        return 0
      }
    }
    let cutBack = 0
    let last = 0
    const sample = (): void => {
      const size = wal()
      if (size < last) cutBack += 1
      last = size
    }
    const sampler = setInterval(sample, 5)
    try {
      const store = createSqliteBudgetStore(db)
      const admin = createSqliteKeyAdmin(db)
      const { record } = await admin.createKey('wal', ['openai'], { limits: { daily: 1_000_000_000_000 }, loopLimit: 0 })
      db.setAutoCheckpoint(false)
      // 128 frames: 512 KiB. Without the truncation these requests leave a WAL of ~65 MB that never shrinks.
      checkpointer = startCheckpointer(path, () => db.setAutoCheckpoint(true), { intervalMs: 25, truncateFrames: 128 })
      const requests = 60_000
      const inFlight = 64
      let settled = 0
      await Promise.all(
        Array.from({ length: inFlight }, async (_, lane) => {
          for (let i = lane; i < requests; i += inFlight) {
            const r = await store.reserve(reserveInput(record.hash, 100))
            if (!r.ok) throw new Error(`refused: ${r.reason}`)
            const s = await store.settle(r.reservation, 7)
            if (s.alreadySettled || s.chargedMicros !== 7) throw new Error('settle did not charge once')
            settled += 1
            sample()
          }
        }),
      )
      expect(settled).toBe(requests)
      // Cut back while commits went on (the time between cuts stretches with the machine's fsyncs, so no
      // size bound here is both safe on a loaded machine and tight), and emptied once they stop.
      expect(cutBack).toBeGreaterThan(0)
      await eventually(() => wal() < 512 * 1024, 'the WAL cut back under the threshold', 5_000)
      const status = await admin.status(record.hash)
      expect(status?.daily).toMatchObject({ spentMicros: 7 * requests, heldMicros: 0 })
    } finally {
      clearInterval(sampler)
      await checkpointer?.stop()
      db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)
})
