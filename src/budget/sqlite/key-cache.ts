/**
 * Key rows as reserve and extend read them, kept while Db.keysVersion stays the same: a key created, revoked or
 * re-limited by this process (any write to keys through its connection) or by another (the CLI, another proxy on
 * the file) is read anew by the very next transaction, and until then a reserve skips the key's read.
 */
import type { Db } from './database.js'
import { readKey, type KeyRow } from './rows.js'

/** At most this many keys are kept; past it the cache starts over. */
const MAX_KEYS = 1024

export interface KeyCache {
  /** Reads a key's row (undefined: no such key) inside a transaction on `db`, from the cache while it is exact. */
  read(hash: string): KeyRow | undefined
  /**
   * Outside a transaction, without a read: the key's row as the last transaction read it, unless this process has
   * written to keys since; undefined when none is kept. A hint only (another process may have changed it since).
   */
  lastRead(hash: string): KeyRow | undefined
}

export function createKeyCache(db: Db): KeyCache {
  const rows = new Map<string, KeyRow | null>()
  let version = Number.NaN
  return {
    read(hash) {
      const now = db.keysVersion()
      if (now !== version) {
        rows.clear()
        version = now
      }
      const kept = rows.get(hash)
      if (kept !== undefined) return kept ?? undefined
      const row = readKey(db, hash)
      if (rows.size >= MAX_KEYS) rows.clear()
      rows.set(hash, row ?? null)
      return row
    },
    lastRead(hash) {
      if (db.keysVersionSeen() !== version) return undefined
      return rows.get(hash) ?? undefined
    },
  }
}
