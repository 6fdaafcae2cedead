/**
 * The embedded store's SQLite file: opened through `node:sqlite` (no native add-on), created on first
 * use (folder 0700, file 0600), WAL with synchronous=NORMAL. Every operation is one BEGIN IMMEDIATE
 * transaction, so several processes on one machine sharing the file stay exact.
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { StoreUnavailableError } from '../../errors.js'

/**
 * How long one operation waits for another process's write lock before it fails closed (503). The
 * wait is asynchronous (retries on timers), so a lock held elsewhere never blocks the event loop.
 */
export const DEFAULT_BUSY_TIMEOUT_MS = 250
/** Retry delays while the write lock is taken: 1, 2, 4, 8, then 16 ms. */
const MAX_RETRY_DELAY_MS = 16

export interface Db {
  readonly path: string
  /** Prepared once per SQL text and reused. */
  statement(sql: string): StatementSync
  /**
   * Runs `work` (synchronous, a few statements) in one BEGIN IMMEDIATE transaction. While another
   * process holds the write lock it retries on timers for up to the busy timeout; then, and for any
   * other SQLite fault, it rejects with StoreUnavailableError.
   */
  transaction<T>(what: string, work: () => T): Promise<T>
  /** The same, once, without waiting for a lock held elsewhere (for background work that retries anyway). */
  transactionNow<T>(what: string, work: () => T): T
  /** Turns SQLite's automatic WAL checkpoints (run inside a commit, on this thread) on or off. */
  setAutoCheckpoint(on: boolean): void
  /** Runs a read (no transaction); faults become StoreUnavailableError. */
  read<T>(what: string, work: () => T): T
  close(): void
}

// No index on expires_at: keeping one costs every request a third of its time; the housekeeping sweep
// walks each table by primary key in small batches instead.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  hash TEXT PRIMARY KEY, name TEXT NOT NULL, providers TEXT NOT NULL, active INTEGER NOT NULL, created_at TEXT NOT NULL,
  lim_minute INTEGER, lim_hourly INTEGER, lim_daily INTEGER, lim_weekly INTEGER, lim_monthly INTEGER,
  session_budget INTEGER, session_max_steps INTEGER, unlimited INTEGER NOT NULL DEFAULT 0, rpm INTEGER,
  loop_limit INTEGER, loop_window INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS keys_name ON keys (name);
CREATE TABLE IF NOT EXISTS periods (
  hash TEXT NOT NULL, win TEXT NOT NULL, period TEXT NOT NULL,
  spent INTEGER NOT NULL, held INTEGER NOT NULL, expires_at INTEGER NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (hash, win, period)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
  hash TEXT NOT NULL, id TEXT NOT NULL, budget INTEGER, max_steps INTEGER,
  steps INTEGER NOT NULL, spent INTEGER NOT NULL, held INTEGER NOT NULL, expires_at INTEGER NOT NULL, loop_limit INTEGER,
  PRIMARY KEY (hash, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS loops (
  hash TEXT NOT NULL, scope TEXT NOT NULL, step TEXT NOT NULL, count INTEGER NOT NULL, since_ms INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, inflight INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (hash, scope, step)
) STRICT, WITHOUT ROWID;
-- Spend history of files written before it moved into periods (rows.DAY_ROW): read and swept, no longer written.
CREATE TABLE IF NOT EXISTS daily_spend (
  hash TEXT NOT NULL, day TEXT NOT NULL, spent INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (hash, day)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, key_hash_prefix TEXT NOT NULL, provider TEXT NOT NULL,
  reason TEXT NOT NULL, win TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS reservations (
  hash TEXT NOT NULL, request_id TEXT NOT NULL, state TEXT NOT NULL, amount INTEGER NOT NULL, provider TEXT NOT NULL,
  booked TEXT NOT NULL, charged INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (hash, request_id)
) STRICT, WITHOUT ROWID;
`

export interface DbOptions {
  busyTimeoutMs?: number
  /** Called on each transition between usable and unusable (err: why it failed). */
  onStatus?: (status: 'ready' | 'down', err?: Error) => void
  /** Called after each committed transaction, with its `what` (the WAL checkpointer wakes on it). */
  onCommit?: (what: string) => void
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
      db = open(path, busyTimeoutMs)
      if (!autoCheckpoint) db.exec('PRAGMA wal_autocheckpoint = 0')
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
  function transactionNow<T>(what: string, work: () => T): T {
    return guard(what, (conn) => {
      const result = inTransaction(conn, work)
      opts.onCommit?.(what)
      report('ready')
      return result
    })
  }
  return {
    path,
    statement(sql) {
      let s = statements.get(sql)
      if (s === undefined) {
        s = connection().prepare(sql)
        statements.set(sql, s)
      }
      return s
    },
    transactionNow,
    async transaction(what, work) {
      const deadline = Date.now() + busyTimeoutMs
      for (let delay = 1; ; delay = Math.min(2 * delay, MAX_RETRY_DELAY_MS)) {
        try {
          return transactionNow(what, work)
        } catch (err) {
          if (!(err instanceof StoreUnavailableError && isBusy(err.cause)) || Date.now() + delay > deadline) throw err
        }
        await new Promise((resolve) => setTimeout(resolve, delay))
      }
    },
    read: (what, work) => guard(what, () => work()),
    setAutoCheckpoint(on) {
      autoCheckpoint = on
      db?.exec(`PRAGMA wal_autocheckpoint = ${on ? 1000 : 0}`)
    },
    close() {
      if (closed) return
      closed = true
      statements.clear()
      db?.close()
      db = null
    },
  }
}

function open(path: string, busyTimeoutMs: number): DatabaseSync {
  createFile(path)
  const db = new DatabaseSync(path, { timeout: busyTimeoutMs })
  try {
    db.exec('PRAGMA journal_mode = WAL')
    // NORMAL in WAL: a commit is in the OS before it returns (kill -9 loses nothing settled); the WAL is
    // fsynced at checkpoints, so a power cut can lose the last commits (README: durability).
    db.exec('PRAGMA synchronous = NORMAL')
    // After a checkpoint lets the WAL start over, a WAL that grew under load is cut back to this.
    db.exec('PRAGMA journal_size_limit = 16777216')
    inTransaction(db, () => {
      db.exec(SCHEMA)
      addColumns(db)
    })
    // From here on a taken write lock fails at once; Db.transaction waits for it on timers instead.
    db.exec('PRAGMA busy_timeout = 0')
    return db
  } catch (err) {
    db.close()
    throw err
  }
}

/** Columns added after a table's first release: a file created before them gains them on open. */
const ADDED_COLUMNS: ReadonlyArray<readonly [table: string, column: string, type: string]> = [
  ['keys', 'unlimited', 'INTEGER NOT NULL DEFAULT 0'],
  ['keys', 'rpm', 'INTEGER'],
  ['keys', 'loop_limit', 'INTEGER'],
  ['keys', 'loop_window', 'INTEGER'],
  ['sessions', 'loop_limit', 'INTEGER'],
  ['periods', 'requests', 'INTEGER NOT NULL DEFAULT 0'],
  ['loops', 'inflight', 'INTEGER NOT NULL DEFAULT 0'],
]

function addColumns(db: DatabaseSync): void {
  for (const [table, column, type] of ADDED_COLUMNS) {
    const have = (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).some((c) => c.name === column)
    if (!have) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`)
  }
}

/** SQLITE_BUSY / SQLITE_LOCKED: another process held the write lock past the busy timeout. */
function isBusy(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const errcode = (err as { errcode?: number }).errcode
  return errcode !== undefined && ((errcode & 0xff) === 5 || (errcode & 0xff) === 6)
}

const control = new WeakMap<DatabaseSync, { begin: StatementSync; commit: StatementSync }>()

function inTransaction<T>(db: DatabaseSync, work: () => T): T {
  let c = control.get(db)
  if (c === undefined) {
    c = { begin: db.prepare('BEGIN IMMEDIATE'), commit: db.prepare('COMMIT') }
    control.set(db, c)
  }
  c.begin.run()
  try {
    const result = work()
    c.commit.run()
    return result
  } catch (err) {
    try {
      db.exec('ROLLBACK')
    } catch {
      // No transaction left to roll back (SQLite already ended it).
    }
    throw err
  }
}

/** Folder 0700 and file 0600 on first use; an existing folder or file keeps its mode. */
function createFile(path: string): void {
  if (path === ':memory:') return
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  let fd: number
  try {
    fd = openSync(path, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return
    throw err
  }
  closeSync(fd)
  chmodSync(path, 0o600)
}

function unavailable(what: string, path: string, err: unknown): StoreUnavailableError {
  const reason = err instanceof Error ? err.message : String(err)
  return new StoreUnavailableError(`budget store ${what} failed (${path}): ${reason}`, { cause: err })
}
