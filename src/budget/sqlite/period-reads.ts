/**
 * The period rows reserves and extends read, each read once a transaction: the transaction holds the write lock,
 * so no other connection changes them meanwhile, and its own writes to periods either wait for the commit
 * (period-writes.ts: the readers add what waits there) or are told here (`written`), which drops what was read.
 * With many requests of one key in one group commit, the key's limited periods are read once, not once each.
 */
import type { Micros } from '../../money.js'
import type { WindowName } from '../types.js'
import type { Db } from './database.js'
import { readPeriodRow } from './rows.js'

interface PeriodReads {
  /** A period's stored spend and holds at `nowMs` (zero when the row is absent or expired). */
  usage(hash: string, window: WindowName, id: string, nowMs: number): { spent: Micros; held: Micros }
  /** The requests stored in a period at `nowMs` (zero when the row is absent or expired). */
  requests(hash: string, window: WindowName, id: string, nowMs: number): number
  /** This transaction wrote to periods outside the deferred writes: what was read is read again. */
  written(): void
}

interface Read {
  window: WindowName
  id: string
  spent: Micros
  held: Micros
  requests: number
  expiresAt: number
}

const NONE = Object.freeze({ spent: 0, held: 0 })

export function createPeriodReads(db: Db): PeriodReads {
  // The rows read in transaction `serial`, by key.
  const reads = new Map<string, Read[]>()
  let serial = -1
  const find = (hash: string, window: WindowName, id: string): Read => {
    const now = db.transactionSerial()
    if (now !== serial || now === -1) {
      reads.clear()
      serial = now
    }
    let found = reads.get(hash)
    if (found === undefined) {
      found = []
      reads.set(hash, found)
    }
    for (const r of found) if (r.window === window && r.id === id) return r
    const v = readPeriodRow(db, hash, window, id)
    const r = v === undefined ? { window, id, spent: 0, held: 0, requests: 0, expiresAt: 0 } : { window, id, spent: v[0], held: v[1], requests: v[2], expiresAt: v[3] }
    found.push(r)
    return r
  }
  return {
    usage(hash, window, id, nowMs) {
      const r = find(hash, window, id)
      return r.expiresAt > nowMs ? r : NONE
    },
    requests(hash, window, id, nowMs) {
      const r = find(hash, window, id)
      return r.expiresAt > nowMs ? r.requests : 0
    },
    written() {
      reads.clear()
    },
  }
}
