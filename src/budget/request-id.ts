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
const DASH = 0x2d
const VERSION_7 = 0x37

/** The character code of the hex digit of the low 4 bits of `n`. */
function digit(n: number): number {
  const d = n & 15
  return d < 10 ? 48 + d : 87 + d
}

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
  // The timestamp, big-endian in 6 bytes (2^48 ms lasts until the year 10889); version 7, counter, variant 10,
  // random: one string made from arithmetic alone (no table reads, no concatenation).
  const high = Math.floor(ms / 2 ** 32)
  const low = ms >>> 0
  const r8 = pool[at + 8] as number
  const r9 = pool[at + 9] as number
  const r10 = pool[at + 10] as number
  const r11 = pool[at + 11] as number
  const r12 = pool[at + 12] as number
  const r13 = pool[at + 13] as number
  const r14 = pool[at + 14] as number
  const r15 = pool[at + 15] as number
  return String.fromCharCode(
    digit(high >>> 12), digit(high >>> 8), digit(high >>> 4), digit(high), digit(low >>> 28), digit(low >>> 24), digit(low >>> 20), digit(low >>> 16), DASH,
    digit(low >>> 12), digit(low >>> 8), digit(low >>> 4), digit(low), DASH,
    VERSION_7, digit(counter >>> 8), digit(counter >>> 4), digit(counter), DASH,
    digit(0x8 | ((r8 >>> 4) & 0x3)), digit(r8), digit(r9 >>> 4), digit(r9), DASH,
    digit(r10 >>> 4), digit(r10), digit(r11 >>> 4), digit(r11), digit(r12 >>> 4), digit(r12),
    digit(r13 >>> 4), digit(r13), digit(r14 >>> 4), digit(r14), digit(r15 >>> 4), digit(r15),
  )
}
