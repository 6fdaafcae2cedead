import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { openStore } from '../../src/budget/open-store.js'
import { loadConfig } from '../../src/config.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { reserveInput } from '../support/budget-fixture.js'
import { holdWriteLock } from '../support/sqlite-lock.js'

// The checkpoint worker stands in for itself here: the test decides when it "holds the lock for TRUNCATE",
// so what is checked is openStore's wiring — the server's store asks its own checkpointer before a commit
// gives up on a taken lock (test/integration/sqlite-own-checkpoint.test.ts checks the worker and the wait).
const worker = vi.hoisted(() => ({ truncating: false, started: 0 }))
vi.mock('../../src/budget/sqlite/checkpointer.js', () => ({
  startCheckpointer: () => {
    worker.started++
    return { wake: () => undefined, truncating: () => worker.truncating, stop: async () => undefined }
  },
}))

describe("the server's embedded store and its own checkpoint", () => {
  it("a commit outwaits its busy timeout while the store's checkpointer holds the lock, and fails closed otherwise", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loopers-open-ckpt-'))
    const path = join(dir, 'loopers.db')
    const opened = await openStore(loadConfig({ LOOPERS_DB: path }), { housekeeping: true })
    try {
      expect(await opened.ready(2_000)).toBe(true)
      expect(worker.started).toBe(1)
      const { record } = await opened.keys.createKey('own-ckpt', ['openai'], { unlimited: true })
      // 600 ms: well past the 250 ms busy timeout, well within the 2 s more a commit gives its own checkpoint.
      worker.truncating = true
      const held = holdWriteLock(path, 600)
      const started = performance.now()
      const admitted = await opened.store.reserve(reserveInput(record.hash, 1))
      expect(admitted.ok).toBe(true)
      expect(performance.now() - started).toBeGreaterThan(500)
      await held
      worker.truncating = false
      const other = holdWriteLock(path, 600)
      await expect(opened.store.reserve(reserveInput(record.hash, 1))).rejects.toBeInstanceOf(StoreUnavailableError)
      await other
    } finally {
      await opened.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
