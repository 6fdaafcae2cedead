import { hash } from 'node:crypto'

/**
 * The long pieces of one digest as UTF-8, for one SHA-256 call at its end: written to a buffer kept for the next
 * digest, rather than joined into one string (which the hash would flatten, then encode). The bytes are always those
 * of the pieces joined, so a pair cut between two pieces is still a pair; they are wiped once hashed (no prompt text
 * outlives its digest).
 */

// Pieces shorter than this are copied in JavaScript while ASCII: a native write costs more than a short loop.
const NATIVE_WRITE_CHARS = 64
// A buffer up to this size is kept for the next digest; a larger one is let go of.
const KEPT_BYTES = 16 * 1024

/** Zeroes the first `bytes` of `buffer`: Uint8Array's fill, without Buffer's argument checks. */
function wipe(buffer: Buffer, bytes: number): void {
  Uint8Array.prototype.fill.call(buffer, 0, 0, bytes)
}

export class Bulk {
  private buffer: Buffer | null = null
  private bytes = 0
  /** A high surrogate that ended the last piece, not written yet: the next piece may begin with its low half. */
  private high = 0

  /** Empties it for a new digest. */
  clear(): void {
    this.bytes = 0
    this.high = 0
  }

  /** Appends the UTF-8 of `value` in [start, end): ASCII byte by byte, from the first other unit natively. */
  addText(value: string, start: number, end: number): void {
    if (start === end) return
    if (this.high !== 0) {
      const low = value.charCodeAt(start)
      if (low >= 0xdc00 && low <= 0xdfff) {
        this.bytes += this.room(4).write(String.fromCharCode(this.high, low), this.bytes, 'utf8')
        this.high = 0
        start++
      } else {
        this.endHigh()
      }
    }
    const last = value.charCodeAt(end - 1)
    if (end > start && last >= 0xd800 && last <= 0xdbff) {
      this.high = last
      end--
    }
    // A unit takes at most 3 bytes (a pair's 4 are two units' 6).
    const buffer = this.room(3 * (end - start))
    let at = this.bytes
    let i = start
    if (end - start < NATIVE_WRITE_CHARS) {
      for (; i < end; i++) {
        const unit = value.charCodeAt(i)
        if (unit >= 0x80) break
        buffer[at++] = unit
      }
    }
    if (i < end) at += buffer.write(i === 0 && end === value.length ? value : value.slice(i, end), at, 'utf8')
    this.bytes = at
  }

  /** Appends ASCII `bytes` in [start, end), the UTF-8 of the string they spell. */
  addAscii(bytes: Buffer, start: number, end: number): void {
    if (this.high !== 0) this.endHigh()
    this.bytes += bytes.copy(this.room(end - start), this.bytes, start, end)
  }

  /** SHA-256 of what was added, as 32 chars of one byte each ('binary', latin1); null when nothing was. Empties it. */
  sha256(): string | null {
    if (this.high !== 0) this.endHigh()
    if (this.buffer === null || this.bytes === 0) return null
    const sha = hash('sha256', this.buffer.subarray(0, this.bytes), 'binary')
    if (this.buffer.length > KEPT_BYTES) this.buffer = null
    else wipe(this.buffer, this.bytes)
    this.bytes = 0
    return sha
  }

  /** The buffer, with room for `bytes` more. */
  private room(bytes: number): Buffer {
    const need = this.bytes + bytes
    if (this.buffer !== null && need <= this.buffer.length) return this.buffer
    const grown = Buffer.alloc(Math.max(need, KEPT_BYTES, 2 * (this.buffer?.length ?? 0)))
    if (this.buffer !== null) {
      this.buffer.copy(grown, 0, 0, this.bytes)
      wipe(this.buffer, this.bytes)
    }
    this.buffer = grown
    return grown
  }

  /** Writes the high surrogate held back as the lone one it is (U+FFFD's bytes, as UTF-8 encodes a lone one). */
  private endHigh(): void {
    this.bytes += this.room(3).write(String.fromCharCode(this.high), this.bytes, 'utf8')
    this.high = 0
  }
}
