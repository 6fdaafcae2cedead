/**
 * Request ids, one per proxied request (the key of its reservation record): UUIDv7 (RFC 9562), a 48-bit
 * millisecond timestamp then 74 random bits. Time-ordered ids put each new reservation record of the
 * embedded store at the end of its key's index range, where the page is already in memory and fills
 * before it splits, instead of on a random page of an index that keeps 35 days of records.
 */
import { randomFillSync } from 'node:crypto'

const POOL_IDS = 128
const pool = Buffer.alloc(16 * POOL_IDS)
let next = POOL_IDS
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

const hex = (byte: number): string => HEX[byte & 0xff] as string

/** A new UUIDv7 string (lower-case hex, 36 characters); ids made in later milliseconds sort after earlier ones. */
export function newRequestId(nowMs: number = Date.now()): string {
  if (next === POOL_IDS) {
    randomFillSync(pool)
    next = 0
  }
  const at = 16 * next++
  const r = (i: number): string => hex(pool[at + i] as number)
  // The timestamp, big-endian in 6 bytes (2^48 ms lasts until the year 10889); then version 7 and variant 10.
  const high = Math.floor(nowMs / 2 ** 32)
  const low = nowMs >>> 0
  return (
    `${hex(high >>> 8)}${hex(high)}${hex(low >>> 24)}${hex(low >>> 16)}-${hex(low >>> 8)}${hex(low)}-` +
    `${hex(0x70 | ((pool[at + 6] as number) & 0x0f))}${r(7)}-${hex(0x80 | ((pool[at + 8] as number) & 0x3f))}${r(9)}-` +
    `${r(10)}${r(11)}${r(12)}${r(13)}${r(14)}${r(15)}`
  )
}
