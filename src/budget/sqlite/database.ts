/**
 * The embedded store's database: the file (schema.ts) opened through `node:sqlite` (no native add-on)
 * on first use. Every operation runs inside a BEGIN IMMEDIATE transaction, so several processes on one
 * machine sharing the file stay exact; operations queued in one turn of the event loop share one
 * commit (group commit: at peak a commit, and each page it writes, serves ~20 operations).
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { StoreUnavailableError } from '../../errors.js'
import { openFile } from './schema.js'

/**
 * How long one operation waits for another process's write lock before it fails closed (503). The
 * wait is asynchronous (retries on timers), so a lock held elsewhere never blocks the event loop.
 */
const DEFAULT_BUSY_TIMEOUT_MS = 250
/**
 * How much longer than the busy timeout a commit waits while the store's own checkpoint worker holds the write
 * lock (DbOptions.checkpointing): its TRUNCATE tries for 500 ms, and the try that gets the lock copies and
 * fsyncs with it held (hundreds of ms on a loaded disk). A disk slower than this still fails closed.
 */
const OWN_CHECKPOINT_WAIT_MS = 2_000
/** Retry delays while the write lock is taken: 1, 2, 4, 8, then 16 ms. */
const MAX_RETRY_DELAY_MS = 16
/** At most this many queued works commit together (a few ms of the loop at most). */
const MAX_BATCH = 64

/** Told as a work's promise settles: its `what`, when its call began (performance.now()), whether it failed. */
type WorkObserver<W extends string = string> = (what: W, startedMs: number, failed: boolean) => void

interface Queued {
  what: string
  work: () => unknown
  resolve: (value: unknown) => void
  reject: (reason: unknown) => void
  observer: WorkObserver | null
  startedMs: number
}

/** Hands `q` its outcome, its observer told first (no reaction on the promise per call). */
function finish(q: Queued, failed: boolean, value: unknown): void {
  q.observer?.(q.what, q.startedMs, failed)
  if (failed) q.reject(value)
  else q.resolve(value)
}

export interface Db {
  /** Prepared once per SQL text and reused. */
  statement(sql: string): StatementSync
  /**
   * The same, its rows read as arrays of the selected columns in order: for hot reads, as node:sqlite
   * makes a row object in dictionary mode (slow to make and to read).
   */
  arrayStatement(sql: string): StatementSync
  /** Prepared anew and not kept here: for SQL made now and then (once a minute), which the caller keeps. */
  prepare(sql: string): StatementSync
  /**
   * Runs `work` (synchronous, a few statements) in one BEGIN IMMEDIATE transaction. While another
   * process holds the write lock it retries on timers for up to the busy timeout (longer while the store's own
   * checkpoint holds it: DbOptions.checkpointing); then, and for any
   * other SQLite fault, it rejects with StoreUnavailableError. Works queued in one turn of the event
   * loop commit together (one commit, each page written once), in the order they were queued, and wait
   * together while the lock is taken; if any of them throws, none of that commit stays and each runs
   * again in a transaction of its own. `observer` (with `startedMs`) hears once of its end, as its promise settles.
   */
  transaction<T, W extends string = string>(what: W, work: () => T, observer?: WorkObserver<W> | null, startedMs?: number): Promise<T>
  /** The same, once, without waiting for a lock held elsewhere (for background work that retries anyway). */
  transactionNow<T>(what: string, work: () => T): T
  /**
   * Writes deferred to the end of each transaction: `flush` runs after its works and before its COMMIT (a throw
   * rolls the transaction back, as a work's would), `discard` when it rolls back instead.
   */
  deferUntilCommit(hooks: TransactionHooks): void
  /** Turns SQLite's automatic WAL checkpoints (run inside a commit, on this thread) on or off. */
  setAutoCheckpoint(on: boolean): void
  /**
   * Inside a transaction, a number that stays the same while the keys table cannot have changed since it was
   * last asked: it moves when this connection writes to keys (a temporary trigger counts every write, whoever
   * makes it), when another connection has committed anything (PRAGMA data_version, read once a transaction),
   * after a rollback and on reopening. Key rows read under one value are exact while it stays; outside a
   * transaction it moves on every call.
   */
  keysVersion(): number
  /**
   * Outside a transaction, without a read: keysVersion as the last transaction left it, moved by this connection's
   * writes to keys since (another connection's commit shows only in the next transaction's keysVersion).
   */
  keysVersionSeen(): number
  /** The open transaction's serial (each BEGIN takes a new one), or -1 outside a transaction. */
  transactionSerial(): number
  /** Runs a read (no transaction); faults become StoreUnavailableError. */
  read<T>(what: string, work: () => T): T
  close(): void
}

/** What a caller defers to the end of a transaction (Db.deferUntilCommit). */
interface TransactionHooks {
  flush(): void
  discard(): void
}

interface DbOptions {
  busyTimeoutMs?: number
  /** Called on each transition between usable and unusable (err: why it failed). */
  onStatus?: (status: 'ready' | 'down', err?: Error) => void
  /** Called after each committed transaction, with its `what` (the WAL checkpointer wakes on it). */
  onCommit?: (what: string) => void
  /**
   * Whether the store's own checkpoint worker is trying for (or holds) the write lock: a commit that finds the
   * lock taken meanwhile keeps waiting past its busy timeout (up to OWN_CHECKPOINT_WAIT_MS more).
   */
  checkpointing?: () => boolean
}

/** Retry a failed open at most this often, so a missing disk costs a request no more than one try. */
const REOPEN_INTERVAL_MS = 500

/**
 * The database at `path`, opened (and created) on first use. While it cannot be opened every call
 * throws StoreUnavailableError (the proxy answers 503) and the next call after REOPEN_INTERVAL_MS retries.
 */
export function createDb(path: string, opts: DbOptions = {}): Db {
  const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS
  let db: DatabaseSync | null = null
  let lastFailure: { at: number; error: StoreUnavailableError } | null = null
  let status: 'ready' | 'down' | null = null
  let closed = false
  let autoCheckpoint = true
  const statements = new Map<string, StatementSync>()
  const arrayStatements = new Map<string, StatementSync>()
  const hooks: TransactionHooks[] = []
  // keysVersion: the transactions begun (`serial`), whether one is open, the serial data_version was last read
  // in and its value, and this connection's writes to keys counted by its trigger (`keyWrites`) as last seen.
  let keysVersion = 0
  let serial = 0
  let inTx = false
  let versionChecked = -1
  let dataVersion: number | null = null
  let dataVersionStatement: StatementSync | null = null
  let keyWrites = 0
  let keyWritesSeen = 0
  /** keysVersion, moved on by this connection's writes to keys since it last looked (no read of the database). */
  const keysVersionSeen = (): number => {
    if (keyWrites !== keyWritesSeen) {
      keyWritesSeen = keyWrites
      keysVersion++
    }
    return keysVersion
  }
  const report = (next: 'ready' | 'down', err?: Error): void => {
    if (next === status) return
    status = next
    opts.onStatus?.(next, err)
  }

  const connection = (): DatabaseSync => {
    if (closed) throw new StoreUnavailableError('budget store failed: the database is closed')
    if (db !== null) return db
    if (lastFailure !== null && Date.now() - lastFailure.at < REOPEN_INTERVAL_MS) throw lastFailure.error
    try {
      const opened = openFile(path, busyTimeoutMs)
      try {
        if (!autoCheckpoint) opened.exec('PRAGMA wal_autocheckpoint = 0')
        watchKeys(opened, () => {
          keyWrites++
        })
        dataVersionStatement = opened.prepare('PRAGMA data_version')
        dataVersionStatement.setReturnArrays(true)
      } catch (err) {
        opened.close()
        throw err
      }
      // A new connection: its data_version starts over, and what the old one saw is no longer known.
      dataVersion = null
      keysVersion++
      db = opened
      lastFailure = null
      report('ready')
      return db
    } catch (err) {
      const error = unavailable('open', path, err)
      lastFailure = { at: Date.now(), error }
      report('down', error)
      throw error
    }
  }
  const guard = <T>(what: string, work: (conn: DatabaseSync) => T): T => {
    const conn = connection()
    try {
      return work(conn)
    } catch (err) {
      if (err instanceof StoreUnavailableError || err instanceof RangeError) throw err
      const error = unavailable(what, path, err)
      if (!isBusy(err)) report('down', error)
      throw error
    }
  }
  /** inTransaction, counted for keysVersion; a rollback may undo key writes already seen, so it moves the version. */
  const counted = <T>(conn: DatabaseSync, work: () => T): T => {
    serial++
    inTx = true
    try {
      return inTransaction(conn, work, hooks)
    } catch (err) {
      keysVersion++
      throw err
    } finally {
      inTx = false
    }
  }
  function transactionNow<T>(what: string, work: () => T): T {
    return guard(what, (conn) => {
      const result = counted(conn, work)
      opts.onCommit?.(what)
      report('ready')
      return result
    })
  }
  /**
   * Whether a commit that found the write lock taken, first tried now, may wait `delay` more ms: within the busy
   * timeout, pushed back while the store's own checkpoint worker holds the lock (a checkpoint never fails a commit).
   */
  const waiting = (): ((delay: number) => boolean) => {
    let deadline = Date.now() + busyTimeoutMs
    const latest = deadline + OWN_CHECKPOINT_WAIT_MS
    return (delay) => {
      const nowMs = Date.now()
      if (opts.checkpointing?.() === true) deadline = Math.min(latest, Math.max(deadline, nowMs + delay + busyTimeoutMs))
      return nowMs + delay <= deadline
    }
  }
  async function transactionAlone<T>(what: string, work: () => T): Promise<T> {
    const mayWait = waiting()
    for (let delay = 1; ; delay = Math.min(2 * delay, MAX_RETRY_DELAY_MS)) {
      try {
        return transactionNow(what, work)
      } catch (err) {
        if (!(err instanceof StoreUnavailableError && isBusy(err.cause)) || !mayWait(delay)) throw err
      }
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }

  // Group commit: what is queued during one turn of the loop runs at its end, in one transaction.
  let queue: Queued[] = []
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    const batch = queue.length > MAX_BATCH ? queue.splice(0, MAX_BATCH) : queue
    if (batch === queue) queue = []
    else schedule()
    if (batch.length > 1) {
      const failure = commitTogether(batch)
      if (failure === null) return
      // The write lock is taken (by another process, or the checkpoint worker emptying the WAL): nothing ran,
      // so the batch waits for it together rather than as that many commits of one work each.
      if (isBusy(failure)) return void retryTogether(batch)
      return aloneEach(batch)
    }
    const [q] = batch
    if (q !== undefined) commitAlone(q)
  }
  /**
   * A work alone in its turn (one request at a time): committed at once and handed its outcome, without the promise
   * and reaction of transactionAlone; a taken write lock sends it there to wait on timers.
   */
  const commitAlone = (q: Queued): void => {
    let value: unknown
    try {
      value = transactionNow(q.what, q.work)
    } catch (err) {
      if (err instanceof StoreUnavailableError && isBusy(err.cause)) aloneEach([q])
      else finish(q, true, err)
      return
    }
    finish(q, false, value)
  }
  const aloneEach = (batch: readonly Queued[]): void => {
    for (const q of batch) {
      transactionAlone(q.what, q.work).then(
        (value) => finish(q, false, value),
        (err: unknown) => finish(q, true, err),
      )
    }
  }
  /** Retries `batch` as one commit on timers while the write lock is taken, for up to the busy timeout. */
  async function retryTogether(batch: readonly Queued[]): Promise<void> {
    const mayWait = waiting()
    for (let delay = 1; mayWait(delay); delay = Math.min(2 * delay, MAX_RETRY_DELAY_MS)) {
      await new Promise((resolve) => setTimeout(resolve, delay))
      const failure = commitTogether(batch)
      if (failure === null) return
      if (!isBusy(failure)) return aloneEach(batch)
    }
    // Past the busy timeout: each alone once, failing closed if the lock is still taken.
    for (const q of batch) {
      let value: unknown
      try {
        value = transactionNow(q.what, q.work)
      } catch (err) {
        finish(q, true, err)
        continue
      }
      finish(q, false, value)
    }
  }
  const schedule = (): void => {
    if (scheduled) return
    scheduled = true
    setImmediate(flush)
  }
  /** Every work of `batch` in one transaction, results handed out after the commit; null, or (nothing kept) what was thrown. */
  const commitTogether = (batch: readonly Queued[]): unknown => {
    let results: unknown[]
    try {
      const conn = connection()
      results = counted(conn, () => batch.map((q) => q.work()))
    } catch (err) {
      return err ?? new Error('a work threw null')
    }
    for (const q of batch) opts.onCommit?.(q.what)
    report('ready')
    batch.forEach((q, i) => finish(q, false, results[i]))
    return null
  }

  return {
    statement(sql) {
      let s = statements.get(sql)
      if (s === undefined) {
        s = connection().prepare(sql)
        statements.set(sql, s)
      }
      return s
    },
    arrayStatement(sql) {
      let s = arrayStatements.get(sql)
      if (s === undefined) {
        s = connection().prepare(sql)
        s.setReturnArrays(true)
        arrayStatements.set(sql, s)
      }
      return s
    },
    prepare: (sql) => connection().prepare(sql),
    transactionNow,
    transaction<T, W extends string = string>(what: W, work: () => T, observer: WorkObserver<W> | null = null, startedMs = 0): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ what, work, resolve: resolve as (value: unknown) => void, reject, observer: observer as WorkObserver | null, startedMs })
        schedule()
      })
    },
    keysVersion() {
      if (!inTx || dataVersionStatement === null) return ++keysVersion
      if (versionChecked !== serial) {
        versionChecked = serial
        const [now] = dataVersionStatement.get() as unknown as [number]
        if (now !== dataVersion) {
          dataVersion = now
          keysVersion++
        }
      }
      return keysVersionSeen()
    },
    keysVersionSeen,
    transactionSerial: () => (inTx ? serial : -1),
    read: (what, work) => guard(what, () => work()),
    deferUntilCommit(next) {
      hooks.push(next)
    },
    setAutoCheckpoint(on) {
      autoCheckpoint = on
      db?.exec(`PRAGMA wal_autocheckpoint = ${on ? 1000 : 0}`)
    },
    close() {
      if (closed) return
      closed = true
      statements.clear()
      arrayStatements.clear()
      dataVersionStatement = null
      db?.close()
      db = null
    },
  }
}

/** SQLITE_BUSY / SQLITE_LOCKED: another process held the write lock past the busy timeout. */
function isBusy(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const errcode = (err as { errcode?: number }).errcode
  return errcode !== undefined && ((errcode & 0xff) === 5 || (errcode & 0xff) === 6)
}

/**
 * Calls `written` on every insert, update and delete of the keys table made through `db`, by any code: temporary
 * triggers (this connection's own, never stored in the file) calling a function of this process.
 */
function watchKeys(db: DatabaseSync, written: () => void): void {
  db.function('loopers_keys_written', { deterministic: false }, () => {
    written()
    return null
  })
  for (const event of ['INSERT', 'UPDATE', 'DELETE']) {
    db.exec(`CREATE TEMP TRIGGER IF NOT EXISTS loopers_keys_${event.toLowerCase()} AFTER ${event} ON main.keys BEGIN SELECT loopers_keys_written(); END`)
  }
}

const control = new WeakMap<DatabaseSync, { begin: StatementSync; commit: StatementSync }>()

function inTransaction<T>(db: DatabaseSync, work: () => T, hooks: readonly TransactionHooks[]): T {
  let c = control.get(db)
  if (c === undefined) {
    c = { begin: db.prepare('BEGIN IMMEDIATE'), commit: db.prepare('COMMIT') }
    control.set(db, c)
  }
  c.begin.run()
  try {
    const result = work()
    for (const h of hooks) h.flush()
    c.commit.run()
    return result
  } catch (err) {
    for (const h of hooks) h.discard()
    try {
      db.exec('ROLLBACK')
    } catch {
      // No transaction left to roll back (SQLite already ended it).
    }
    throw err
  }
}

function unavailable(what: string, path: string, err: unknown): StoreUnavailableError {
  const reason = err instanceof Error ? err.message : String(err)
  return new StoreUnavailableError(`budget store ${what} failed (${path}): ${reason}`, { cause: err })
}
