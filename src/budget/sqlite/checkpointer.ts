/**
 * Checkpoints the embedded store's WAL from a worker thread once a second, so the proxy's event loop
 * never runs a checkpoint (page copies and fsyncs): the proxy's own connection has auto-checkpoint
 * off while this runs. Each checkpoint fsyncs the WAL, which bounds what a power cut can lose to about
 * the last second of commits. Under commits that never pause, a PASSIVE checkpoint always ends with newer
 * frames in the WAL, so SQLite never starts it over and it grows without end (~1 KiB a request); once it
 * holds more than `truncateFrames`, the worker takes the write lock for a TRUNCATE checkpoint (5-20 ms:
 * commits meanwhile retry on timers, never blocking the event loop) and the next commit starts it over.
 * While it tries for the lock, and for a while after (`truncating`), it says so: a commit waits that out beyond its
 * busy timeout, so no commit fails for a checkpoint the store runs itself (the TRUNCATE copies the frames written since the
 * last PASSIVE, fsyncs and cuts the WAL with the lock held: hundreds of ms on a loaded disk).
 * If the worker dies, `onExit` lets the caller turn auto-checkpoint back on.
 * The worker (a thread with its own V8 heap, ~18 MB of RSS) runs only while there are commits: it
 * starts on the first commit and stops once a whole idle period has passed without one, after many
 * checkpoints have run since the last commit.
 */
import { Worker } from 'node:worker_threads'

const CHECKPOINT_INTERVAL_MS = 1_000
const CHECKPOINT_IDLE_STOP_MS = 30_000
/** WAL frames (pages, 4 KiB each) past which the worker empties the WAL: journal_size_limit's 16 MiB. */
const CHECKPOINT_TRUNCATE_FRAMES = 4_096
/** How long the worker keeps trying (at most 64 tries) for the write lock to empty the WAL before its next round. */
const TRUNCATE_TRY_MS = 500
/**
 * How long after a TRUNCATE try ends a commit still counts a taken lock as the checkpoint's: SQLite's busy handler
 * sleeps up to 100 ms between its tries, so a commit can report the lock taken well after the checkpoint let it go,
 * when the flag is already down (a 1 ms busy timeout failed a commit so).
 */
const TRUNCATE_AFTERMATH_MS = 250
/** Milliseconds on a 31-bit clock, to share in an Int32Array; it wraps every ~24.8 days (differences are taken modulo). */
const clock31 = (): number => Date.now() & 0x7fffffff

// Self-contained (no project imports), so it runs the same from src/ under the tests and from dist/.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads')
const { DatabaseSync } = require('node:sqlite')
const db = new DatabaseSync(workerData.path, { timeout: 1000 })
// Only TRUNCATE waits for locks, and it waits by retrying below: SQLite's busy handler sleeps 1-100 ms
// between tries and, under commits that never pause, rarely finds the write lock free.
db.exec('PRAGMA busy_timeout = 0')
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
const truncate = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)')
const pause = new Int32Array(new SharedArrayBuffer(4))
// [0] set while a TRUNCATE may hold the write lock, [1] when the last try ended (31-bit ms): the proxy's commits
// wait that out (Checkpointer.truncating).
const truncating = new Int32Array(workerData.truncating)
setInterval(() => {
  try {
    if (passive.get().log <= workerData.truncateFrames) return
    // A try that misses the write lock copies what is new (as PASSIVE); once it has the lock, the few
    // frames written since are copied and the WAL emptied, so the next commit starts it over.
    // Bounded in tries too: a reader that pins the WAL (a long backup) fails every try, each with an fsync.
    const until = Date.now() + workerData.truncateTryMs
    Atomics.store(truncating, 0, 1)
    try {
      for (let tries = 1; truncate.get().busy !== 0 && tries < 64 && Date.now() < until; tries++) Atomics.wait(pause, 0, 0, 0.2)
    } finally {
      Atomics.store(truncating, 1, Date.now() & 0x7fffffff)
      Atomics.store(truncating, 0, 0)
    }
  } catch {}
}, workerData.intervalMs)
`

export interface Checkpointer {
  /** A transaction committed: starts the worker unless it is running (cheap: called on every commit). */
  wake(): void
  /**
   * Whether the worker is trying for (or holds) the write lock to empty the WAL, or let it go within the last
   * TRUNCATE_AFTERMATH_MS: a commit that found the lock taken then waits on.
   */
  truncating(): boolean
  stop(): Promise<void>
}

interface CheckpointerOptions {
  intervalMs?: number
  /** The worker stops after between one and two of these without a commit. */
  idleStopMs?: number
  /** The WAL is emptied once a checkpoint finds it holding more frames than this. */
  truncateFrames?: number
}

/** Checkpoints the database at `path` (it must exist) while commits happen; `onExit` runs if the worker ends on its own. */
/** A worker's shared flag: not truncating, and no try ended lately. */
function newFlag(): Int32Array {
  const flag = new Int32Array(new SharedArrayBuffer(8))
  flag[1] = (clock31() - 2 * TRUNCATE_AFTERMATH_MS) & 0x7fffffff
  return flag
}

export function startCheckpointer(path: string, onExit: () => void, opts: CheckpointerOptions = {}): Checkpointer {
  const intervalMs = opts.intervalMs ?? CHECKPOINT_INTERVAL_MS
  const idleStopMs = opts.idleStopMs ?? CHECKPOINT_IDLE_STOP_MS
  const truncateFrames = opts.truncateFrames ?? CHECKPOINT_TRUNCATE_FRAMES
  let worker: Worker | null = null
  let idleTimer: NodeJS.Timeout | null = null
  let commits = 0
  let seen = 0
  let stopped = false
  let failed = false
  // The running worker's flag (1 while it tries to TRUNCATE) and the time its last try ended, shared so the commits
  // read them without a message.
  let flag = newFlag()

  function start(): void {
    flag = newFlag()
    const started = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, intervalMs, truncateFrames, truncateTryMs: TRUNCATE_TRY_MS, truncating: flag.buffer },
    })
    worker = started
    started.unref()
    started.on('error', () => undefined)
    const startedFlag = flag
    started.on('exit', () => {
      // Ended inside its TRUNCATE, it holds no lock now (its connection is gone with it).
      if (Atomics.load(startedFlag, 0) === 1) Atomics.store(startedFlag, 1, clock31())
      Atomics.store(startedFlag, 0, 0)
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
    truncating: () => Atomics.load(flag, 0) === 1 || ((clock31() - Atomics.load(flag, 1)) & 0x7fffffff) < TRUNCATE_AFTERMATH_MS,
    async stop() {
      stopped = true
      await retire()
    },
  }
}
