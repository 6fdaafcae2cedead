/**
 * The embedded store's file: created on first use (folder 0700, file 0600), opened in WAL mode with
 * synchronous=NORMAL, its tables made or brought up to date.
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync } from 'node:sqlite'

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
-- The loop guard's steps (rows.loopPlace): integer keys, so a seek compares integers and a page holds about three times the rows;
-- first: the window's first request, in flight while its reservation is held (rows.readLoopStep).
CREATE TABLE IF NOT EXISTS loop_steps (
  scope INTEGER NOT NULL, step INTEGER NOT NULL, step_low INTEGER NOT NULL, tag INTEGER NOT NULL, count INTEGER NOT NULL,
  since_ms INTEGER NOT NULL, inflight INTEGER NOT NULL, expires_at INTEGER NOT NULL, first TEXT,
  PRIMARY KEY (scope, step, step_low)
) STRICT, WITHOUT ROWID;
-- Loop steps of files written before loop_steps (text keys): swept, no longer written by this release (a process of
-- the previous release on the same file still writes here; the two count apart until it stops).
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

/**
 * Opens (and on first use creates) the file at `path`: WAL, synchronous=NORMAL, the schema and any
 * column added since the file was made, waiting up to `busyTimeoutMs` for another process's lock; after
 * that a taken write lock fails at once (Db.transaction waits for it on timers).
 */
export function openFile(path: string, busyTimeoutMs: number): DatabaseSync {
  createFile(path)
  const db = new DatabaseSync(path, { timeout: busyTimeoutMs })
  try {
    db.exec('PRAGMA journal_mode = WAL')
    // NORMAL in WAL: a commit is in the OS before it returns (kill -9 loses nothing settled); the WAL is
    // fsynced at checkpoints, so a power cut can lose the last commits (README: durability).
    db.exec('PRAGMA synchronous = NORMAL')
    // After a checkpoint lets the WAL start over, a WAL that grew under load is cut back to this.
    db.exec('PRAGMA journal_size_limit = 16777216')
    db.exec('BEGIN IMMEDIATE')
    try {
      db.exec(SCHEMA)
      addColumns(db)
      db.exec('COMMIT')
    } catch (err) {
      try {
        db.exec('ROLLBACK')
      } catch {
        // No transaction left to roll back (SQLite already ended it).
      }
      throw err
    }
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
  ['loop_steps', 'first', 'TEXT'],
]

function addColumns(db: DatabaseSync): void {
  for (const [table, column, type] of ADDED_COLUMNS) {
    const have = (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).some((c) => c.name === column)
    if (!have) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`)
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
