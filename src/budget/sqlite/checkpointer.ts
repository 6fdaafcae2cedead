/**
 * Checkpoints the embedded store's WAL from a worker thread once a second, so the proxy's event loop
 * never runs a checkpoint (page copies and fsyncs): the proxy's own connection has auto-checkpoint
 * off while this runs. Each checkpoint fsyncs the WAL, which bounds what a power cut can lose to about
 * the last second of commits. If the worker dies, `onExit` lets the caller turn auto-checkpoint back on.
 * The worker (a thread with its own V8 heap, ~18 MB of RSS) runs only while there are commits: it
 * starts on the first commit and stops once a whole idle period has passed without one, after many
 * checkpoints have run since the last commit.
 */
import { Worker } from 'node:worker_threads'

export const CHECKPOINT_INTERVAL_MS = 1_000
export const CHECKPOINT_IDLE_STOP_MS = 30_000

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
  /** A transaction committed: starts the worker unless it is running (cheap: called on every commit). */
  wake(): void
  stop(): Promise<void>
}

export interface CheckpointerOptions {
  intervalMs?: number
  /** The worker stops after between one and two of these without a commit. */
  idleStopMs?: number
}

/** Checkpoints the database at `path` (it must exist) while commits happen; `onExit` runs if the worker ends on its own. */
export function startCheckpointer(path: string, onExit: () => void, opts: CheckpointerOptions = {}): Checkpointer {
  const intervalMs = opts.intervalMs ?? CHECKPOINT_INTERVAL_MS
  const idleStopMs = opts.idleStopMs ?? CHECKPOINT_IDLE_STOP_MS
  let worker: Worker | null = null
  let idleTimer: NodeJS.Timeout | null = null
  let commits = 0
  let seen = 0
  let stopped = false
  let failed = false

  function start(): void {
    const started = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, intervalMs } })
    worker = started
    started.unref()
    started.on('error', () => undefined)
    started.on('exit', () => {
      if (worker !== started) return // stopped on purpose (idle or stop)
      worker = null
      failed = true
      clearIdleTimer()
      onExit()
    })
    seen = commits
    idleTimer = setInterval(() => {
      if (commits !== seen) seen = commits
      else void retire()
    }, idleStopMs)
    idleTimer.unref()
  }

  function clearIdleTimer(): void {
    if (idleTimer !== null) clearInterval(idleTimer)
    idleTimer = null
  }

  async function retire(): Promise<void> {
    const running = worker
    worker = null
    clearIdleTimer()
    await running?.terminate()
  }

  return {
    wake() {
      commits += 1
      if (worker !== null || stopped || failed) return
      try {
        start()
      } catch {
        failed = true // no thread to be had: the caller's connection checkpoints by itself again
        onExit()
      }
    },
    async stop() {
      stopped = true
      await retire()
    },
  }
}
