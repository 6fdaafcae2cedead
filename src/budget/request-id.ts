/**
 * Request ids, one per proxied request (the key of its reservation record): UUIDv7 (RFC 9562), a 48-bit
 * millisecond timestamp then 74 random bits. Time-ordered ids put each new reservation record of the
 * embedded store at the end of its key's index range, where the page is already in memory and fills
 * before it splits, instead of on a random page of an index that keeps 35 days of records. Within one
 * process ids strictly increase (RFC 9562 method 1: a 12-bit counter after the timestamp).
 */
import { randomFillSync } from 'node:crypto'

const POOL_IDS = 128
const pool = Buffer.alloc(16 * POOL_IDS)
let next = POOL_IDS
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

const hex = (byte: number): string => HEX[byte & 0xff] as string

// The last id's millisecond and counter: the next id in the same (or an earlier) millisecond counts on.
let lastMs = -1
let counter = 0

/**
 * A new UUIDv7 string (lower-case hex, 36 characters), greater than every earlier one of this process; ids
 * made in later milliseconds sort after earlier ones. A clock going back reuses the last millisecond.
 */
export function newRequestId(nowMs: number = Date.now()): string {
  if (next === POOL_IDS) {
    randomFillSync(pool)
    next = 0
  }
  const at = 16 * next++
  let ms = Math.floor(nowMs)
  if (ms > lastMs) {
    counter = (((pool[at + 6] as number) & 0x07) << 8) | (pool[at + 7] as number) // a random start in the lower half
  } else {
    ms = lastMs
    counter += 1
    if (counter > 0xfff) {
      ms += 1 // 4,096 ids in one millisecond: borrow the next one
      counter = 0
    }
  }
  lastMs = ms
  const r = (i: number): string => hex(pool[at + i] as number)
  // The timestamp, big-endian in 6 bytes (2^48 ms lasts until the year 10889); version 7, counter, variant 10, random.
  const high = Math.floor(ms / 2 ** 32)
  const low = ms >>> 0
  return (
    `${hex(high >>> 8)}${hex(high)}${hex(low >>> 24)}${hex(low >>> 16)}-${hex(low >>> 8)}${hex(low)}-` +
    `${hex(0x70 | (counter >>> 8))}${hex(counter)}-${hex(0x80 | ((pool[at + 8] as number) & 0x3f))}${r(9)}-` +
    `${r(10)}${r(11)}${r(12)}${r(13)}${r(14)}${r(15)}`
  )
}
