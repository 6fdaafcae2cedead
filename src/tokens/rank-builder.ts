/**
 * A tiktoken rank table in typed arrays: every token's bytes in one buffer and a hash index over them (each
 * hash bucket's tokens listed together), ~3.6 MB for o200k instead of ~40 MB of RSS for a `Map<string, number>`
 * of 200k strings. Looked up by a range of a latin1 string (one char per byte), so merging allocates no substrings.
 */
export class RankTable {
  private readonly mask: number
  /** Low bits of a listed token that hold its index; the bits above them hold the top bits of its hash. */
  private readonly tokenBits: number
  private readonly tokenMask: number

  constructor(
    private readonly bytes: Uint8Array,
    /** Token i's bytes are `bytes[starts[i] .. starts[i + 1])`. */
    private readonly starts: Uint32Array,
    /** Token i's rank; null when every token's rank is its index (as in tiktoken's own files). */
    private readonly tokenRanks: Int32Array | null,
    /** Bucket b's tokens are `listed[buckets[b] .. buckets[b + 1])`; the bucket count is a power of two. */
    private readonly buckets: Uint32Array,
    /** Tokens by bucket, each with its hash's tag (see `tokenBits`), in index order within a bucket. */
    private readonly listed: Int32Array,
  ) {
    this.mask = buckets.length - 2
    this.tokenBits = tokenBitsFor(starts.length - 1)
    this.tokenMask = 2 ** this.tokenBits - 1
  }

  get size(): number {
    return this.starts.length - 1
  }

  /** The rank of `text.slice(start, end)` (latin1: every char code < 256), or -1 when it is not a token. */
  rank(text: string, start: number, end: number): number {
    const { tokenBits, listed } = this
    const length = end - start
    const hash = hashRange(text, start, end)
    const tag = hash >>> tokenBits
    const bucket = hash & this.mask
    const first = this.buckets[bucket] as number
    // The last match wins: a token whose bytes repeat keeps the later rank, as `Map.set` would.
    for (let at = (this.buckets[bucket + 1] as number) - 1; at >= first; at--) {
      const entry = listed[at] as number
      // Another hash's token (nearly all of them: o200k's tags are 14 bits) is passed over without reading where it starts.
      if (entry >>> tokenBits !== tag) continue
      const token = entry & this.tokenMask
      const from = this.starts[token] as number
      if ((this.starts[token + 1] as number) - from !== length) continue
      let i = 0
      while (i < length && this.bytes[from + i] === text.charCodeAt(start + i)) i++
      if (i === length) return this.tokenRanks === null ? token : (this.tokenRanks[token] as number)
    }
    return -1
  }
}

/** Bits that hold the index of any of `count` tokens. */
function tokenBitsFor(count: number): number {
  return 32 - Math.clz32(Math.max(count - 1, 0))
}

// FNV-1a over char codes (strings) or bytes (the table): the same value for the same bytes.
function hashRange(text: string, start: number, end: number): number {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h >>> 0
}

function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193)
  return h >>> 0
}

const SPACE = 0x20
const NEWLINE = 0x0a
const BACKSLASH = 0x5c
const PAD = 0x3d // '='
/** Base64 digit values by char code; -1 for anything else. */
const BASE64 = new Int8Array(256).fill(-1)
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'].entries()) BASE64[c.charCodeAt(0)] = i

/**
 * Builds a rank table from js-tiktoken's compressed rank text (`! <first rank> <base64> <base64> …`
 * lines; a line ends at a newline or at the two characters `\n` it is escaped to in the rank file) in
 * resumable steps, so an encoder can be built in slices between other work on the event loop. It reads
 * the text's bytes in place, in two passes: the first sizes the arrays exactly, the second fills them,
 * so the build allocates nothing it later drops but the text itself; two passes over the tokens index them.
 */
export class RankBuilder {
  private table: RankTable | null = null
  /** 0 while sizing, 1 while filling, 2 while counting each hash bucket's tokens, 3 while listing them. */
  private pass = 0
  private pos = 0
  private field = 0
  private rank = Number.NaN
  private count = 0
  private used = 0
  private bytes = new Uint8Array(0)
  private starts = new Uint32Array(0)
  // Kept only when some token's rank is not its index (found while sizing).
  private ranksAreIndexes = true
  private tokenRanks: Int32Array | null = null
  private buckets = new Uint32Array(0)
  private listed = new Int32Array(0)

  constructor(private text: Uint8Array) {}

  get done(): boolean {
    return this.table !== null
  }

  /** The finished table; only after `step` has returned true. */
  get ranks(): RankTable {
    if (this.table === null) throw new Error('rank table not built yet')
    return this.table
  }

  /** Builds until the table is done (true) or `deadline` (a `performance.now()` time) has passed (false). */
  step(deadline: number = Number.POSITIVE_INFINITY): boolean {
    if (this.table !== null) return true
    if (this.pass < 2 && !this.parse(deadline)) return false
    if (!this.index(deadline)) return false
    this.table = new RankTable(this.bytes, this.starts, this.tokenRanks, this.buckets, this.listed)
    return true
  }

  /** The two passes over the text; true once the tokens are read. */
  private parse(deadline: number): boolean {
    const text = this.text
    const length = text.length
    let parsed = 0
    for (;;) {
      while (this.pos < length) {
        const c = text[this.pos] as number
        if (c === NEWLINE || (c === BACKSLASH && text[this.pos + 1] === 0x6e)) {
          this.field = 0
          this.pos += c === NEWLINE ? 1 : 2
          continue
        }
        if (c === SPACE) {
          this.pos += 1
          continue
        }
        let end = this.pos
        while (end < length && text[end] !== SPACE && text[end] !== NEWLINE && text[end] !== BACKSLASH) end++
        if (this.field === 1) this.rank = parseDecimal(text, this.pos, end)
        else if (this.field > 1 && !Number.isNaN(this.rank)) this.add(this.pos, end, this.rank++)
        this.field += 1
        this.pos = end
        if (++parsed % 2048 === 0 && performance.now() > deadline) return false
      }
      if (this.pass === 1) break
      this.startFilling()
    }
    this.startIndexing()
    return true
  }

  /**
   * Lists every token in its hash's bucket: counts each bucket's tokens (pass 2), sums the counts into where each
   * bucket ends, then places the tokens from the last down (pass 3), which leaves each bucket's start in its place
   * and its tokens in index order. True once done.
   */
  private index(deadline: number): boolean {
    const { bytes, starts, buckets, listed } = this
    const mask = buckets.length - 2
    const bits = tokenBitsFor(listed.length)
    for (;;) {
      if (this.pass === 2 && this.count === listed.length) {
        for (let b = 1; b <= mask; b++) buckets[b] = (buckets[b] as number) + (buckets[b - 1] as number)
        buckets[mask + 1] = listed.length
        this.pass = 3
      }
      if (this.pass === 3 && this.count === 0) return true
      const token = this.pass === 2 ? this.count++ : --this.count
      const hash = hashBytes(bytes, starts[token] as number, starts[token + 1] as number)
      const bucket = hash & mask
      if (this.pass === 2) buckets[bucket] = (buckets[bucket] as number) + 1
      else {
        const at = (buckets[bucket] as number) - 1
        buckets[bucket] = at
        listed[at] = ((hash >>> bits) * 2 ** bits + token) | 0
      }
      if (token % 2048 === 0 && performance.now() > deadline) return false
    }
  }

  private add(from: number, to: number, rank: number): void {
    if (this.pass === 0) {
      this.used += decodedLength(this.text, from, to)
      if (rank !== this.count) this.ranksAreIndexes = false
    } else {
      this.starts[this.count] = this.used
      if (this.tokenRanks !== null) this.tokenRanks[this.count] = rank
      this.used = decodeBase64(this.text, from, to, this.bytes, this.used)
    }
    this.count += 1
  }

  private startFilling(): void {
    this.bytes = new Uint8Array(this.used)
    this.starts = new Uint32Array(this.count + 1)
    this.tokenRanks = this.ranksAreIndexes ? null : new Int32Array(this.count)
    this.pass = 1
    this.pos = 0
    this.field = 0
    this.rank = Number.NaN
    this.count = 0
    this.used = 0
  }

  /** A bucket for every two tokens or fewer. */
  private startIndexing(): void {
    this.starts[this.count] = this.used
    this.text = new Uint8Array(0) // the rank text is large; nothing here needs it any more
    let size = 1
    while (size * 2 < this.count) size *= 2
    this.buckets = new Uint32Array(size + 1)
    this.listed = new Int32Array(this.count)
    this.pass = 2
    this.count = 0
  }
}

/** Bytes that base64 `text[from, to)` decodes to (up to padding or a non-digit). */
function decodedLength(text: Uint8Array, from: number, to: number): number {
  let digits = 0
  while (from + digits < to && (BASE64[text[from + digits] as number] as number) >= 0) digits++
  return (digits * 6) >> 3
}

/** A non-negative decimal in `text[from, to)`; NaN if it is not one. */
function parseDecimal(text: Uint8Array, from: number, to: number): number {
  if (to <= from) return Number.NaN
  let n = 0
  for (let i = from; i < to; i++) {
    const digit = (text[i] as number) - 0x30
    if (digit < 0 || digit > 9) return Number.NaN
    n = n * 10 + digit
  }
  return n
}

/** Decodes base64 `text[from, to)` into `out` at `at` (stopping at padding or a non-digit); returns the new end. */
function decodeBase64(text: Uint8Array, from: number, to: number, out: Uint8Array, at: number): number {
  let bits = 0
  let held = 0
  for (let i = from; i < to; i++) {
    const c = text[i] as number
    if (c === PAD) break
    const value = BASE64[c] as number
    if (value < 0) break
    bits = ((bits << 6) | value) & 0xffffff
    held += 6
    if (held >= 8) {
      held -= 8
      out[at++] = (bits >> held) & 0xff
    }
  }
  return at
}
