/**
 * Checkpoints the embedded store's WAL from a worker thread once a second, so the proxy's event loop
 * never runs a checkpoint (page copies and fsyncs): the proxy's own connection has auto-checkpoint
 * off while this runs. Each checkpoint fsyncs the WAL, which bounds what a power cut can lose to about
 * the last second of commits. If the worker dies, `onExit` lets the caller turn auto-checkpoint back on.
 */
import { Worker } from 'node:worker_threads'

export const CHECKPOINT_INTERVAL_MS = 1_000

// Self-contained (no project imports), so it runs the same from src/ under the tests and from dist/.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads')
const { DatabaseSync } = require('node:sqlite')
const db = new DatabaseSync(workerData.path, { timeout: 1000 })
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
setInterval(() => {
  try { checkpoint.get() } catch {}
}, workerData.intervalMs)
`

export interface Checkpointer {
  stop(): Promise<void>
}

/** Starts the worker on the database at `path` (it must exist); `onExit` runs if the worker ends on its own. */
export function startCheckpointer(path: string, onExit: () => void, intervalMs = CHECKPOINT_INTERVAL_MS): Checkpointer {
  let stopping = false
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, intervalMs } })
  worker.unref()
  worker.on('error', () => undefined)
  worker.on('exit', () => {
    if (!stopping) onExit()
  })
  return {
    async stop() {
      stopping = true
      await worker.terminate()
    },
  }
}
