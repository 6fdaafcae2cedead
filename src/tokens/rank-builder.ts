/**
 * A tiktoken rank table in three typed arrays: every token as one entry of a byte buffer (a three-byte head holding
 * its length and its rank, then its bytes), the entries grouped by hash bucket, and where each bucket starts, as a
 * 16-bit offset from its group of buckets' 32-bit start: ~2.13 MB for o200k (2.92 with a 32-bit start per bucket of
 * ~1.5 tokens and a five-byte head with a hash tag; ~40 MB of RSS as a `Map<string, number>` of 200k strings).
 * Looked up by a range of a latin1 string (one char per byte), so merging allocates no substrings.
 */
export class RankTable {
  private readonly mask: number

  constructor(
    /** Where each group of `GROUP` buckets starts in `entries`, and after the last, where they end. */
    private readonly groups: Uint32Array,
    /**
     * Bucket b's entries are `entries[groups[b >> GROUP_BITS] + starts[b] .. groups[(b + 1) >> GROUP_BITS] + starts[b + 1])`,
     * later tokens first; a power of two buckets, and one more start (0).
     */
    private readonly starts: Uint16Array,
    /** Each entry: its head (`LONG` or the length, and the rank), a length byte if `LONG`, then the token's bytes. */
    private readonly entries: Uint8Array,
    /** Tokens in the table. */
    readonly size: number,
  ) {
    this.mask = starts.length - 2
  }

  /** The rank of `text.slice(start, end)` (latin1: every char code < 256), or -1 when it is not a token. */
  rank(text: string, start: number, end: number): number {
    const { entries, groups, starts } = this
    const length = end - start
    const bucket = hashRange(text, start, end) & this.mask
    const stop = (groups[(bucket + 1) >>> GROUP_BITS] as number) + (starts[bucket + 1] as number)
    // The first match is the last token listed with these bytes: a repeated token keeps the later rank, as `Map.set` would.
    let at = (groups[bucket >>> GROUP_BITS] as number) + (starts[bucket] as number)
    while (at < stop) {
      const head = entries[at] as number
      let size = head & LONG
      let from = at + ENTRY_HEAD
      if (size === LONG) size = entries[from++] as number
      if (size === length) {
        let i = 0
        while (i < length && entries[from + i] === text.charCodeAt(start + i)) i++
        if (i === length) return ((head >>> 6) << 16) | (entries[at + 1] as number) | ((entries[at + 2] as number) << 8)
      }
      at = from + size
    }
    return -1
  }
}

/**
 * An entry's head: its length in the low six bits of the first byte (`LONG`: the length is the byte after the head)
 * and its rank in the eighteen others, the high two first, the low sixteen little-endian.
 */
const ENTRY_HEAD = 3
const LONG = 0x3f
/** What an entry can hold: a length in one byte, a rank in eighteen bits. */
const MAX_TOKEN_BYTES = 0xff
const MAX_RANK = 2 ** 18 - 1
/** Buckets share a 32-bit start per 2^GROUP_BITS, each with a 16-bit offset from it, so a group holds at most 64 KiB. */
const GROUP_BITS = 6
const GROUP = 1 << GROUP_BITS
const MAX_GROUP_BYTES = 0xffff
/** Tokens per bucket at most, on average: each lookup reads a bucket's entries up to the match. */
const BUCKET_TOKENS = 4

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
 * the text's bytes in place, in three passes: the first counts the tokens (which sizes the buckets), the
 * second sizes each bucket, the third writes each token into its bucket, so the build allocates nothing it
 * later drops but the text itself.
 */
export class RankBuilder {
  private table: RankTable | null = null
  /** 0 while counting, 1 while sizing each bucket, 2 while writing the entries. */
  private pass = 0
  private pos = 0
  private field = 0
  /**
   * The next token's rank; -1 before a line's first rank. An integer, never NaN: a field holding a double boxes each
   * new value in a heap number until the build's loop is optimized (a young collection in most builds on a loaded
   * machine, where the test of none failed 3 times in 4).
   */
  private rank = -1
  private count = 0
  private mask = 0
  private groups = new Uint32Array(0)
  /** A bucket's entries' size (pass 1), then its end (pass 2 moves it to its start), from its group's start. */
  private starts = new Uint16Array(0)
  private entries = new Uint8Array(0)
  /** One token's bytes, decoded to be hashed (and, while writing, copied into its bucket). */
  private readonly token = new Uint8Array(MAX_TOKEN_BYTES + 1)

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
        else if (this.field > 1 && this.rank >= 0) this.add(this.pos, end, this.rank++)
        this.field += 1
        this.pos = end
        if (++parsed % 2048 === 0 && performance.now() > deadline) return false
      }
      if (this.pass === 2) break
      if (this.pass === 0) this.startSizing()
      else this.startWriting()
    }
    this.text = new Uint8Array(0) // the rank text is large; nothing here needs it any more
    this.table = new RankTable(this.groups, this.starts, this.entries, this.count)
    return true
  }

  /**
   * One token: counted (pass 0), its entry's size added to its bucket's (pass 1, leaving each bucket's end once
   * summed), or written just before the entries written into its bucket so far (pass 2, which leaves each
   * bucket's start in its place and later tokens first).
   */
  private add(from: number, to: number, rank: number): void {
    if (this.pass === 0) {
      this.count += 1
      return
    }
    const token = this.token
    const length = decodeBase64(this.text, from, to, token, 0, MAX_TOKEN_BYTES + 1)
    if (length > MAX_TOKEN_BYTES || rank > MAX_RANK) throw new Error(`rank table: a token of ${length} bytes or rank ${rank} does not fit`)
    const bucket = hashBytes(token, 0, length) & this.mask
    const size = ENTRY_HEAD + (length >= LONG ? 1 : 0) + length
    const starts = this.starts
    if (this.pass === 1) {
      const sum = (starts[bucket] as number) + size
      if (sum > MAX_GROUP_BYTES) throw new Error(`rank table: a bucket of more than ${MAX_GROUP_BYTES} bytes does not fit`)
      starts[bucket] = sum
      return
    }
    const end = (starts[bucket] as number) - size
    starts[bucket] = end
    let at = (this.groups[bucket >>> GROUP_BITS] as number) + end
    const entries = this.entries
    entries[at] = (length >= LONG ? LONG : length) | ((rank >>> 16) << 6)
    entries[at + 1] = rank & 0xff
    entries[at + 2] = (rank >>> 8) & 0xff
    at += ENTRY_HEAD
    if (length >= LONG) entries[at++] = length
    // Copied byte by byte: a subarray to copy from would be one more object per token, 200k for o200k.
    for (let i = 0; i < length; i++) entries[at + i] = token[i] as number
  }

  /** A bucket for every four tokens or fewer, at least one group of them. */
  private startSizing(): void {
    let size = GROUP
    while (size * BUCKET_TOKENS < this.count) size *= 2
    this.mask = size - 1
    this.starts = new Uint16Array(size + 1)
    this.groups = new Uint32Array(size / GROUP + 1)
    this.restart(1)
  }

  /** Each group's start, and each bucket's end from its group's start. */
  private startWriting(): void {
    const { groups, starts } = this
    let total = 0
    for (let g = 0; g < groups.length - 1; g++) {
      groups[g] = total
      let end = 0
      for (let b = g * GROUP; b < (g + 1) * GROUP; b++) {
        end += starts[b] as number
        if (end > MAX_GROUP_BYTES) throw new Error(`rank table: a group of buckets of more than ${MAX_GROUP_BYTES} bytes does not fit`)
        starts[b] = end
      }
      total += end
    }
    groups[groups.length - 1] = total
    this.entries = new Uint8Array(total)
    this.restart(2)
  }

  private restart(pass: number): void {
    this.pass = pass
    this.pos = 0
    this.field = 0
    this.rank = -1
  }
}

/** A non-negative decimal in `text[from, to)`; -1 if it is not one. */
function parseDecimal(text: Uint8Array, from: number, to: number): number {
  if (to <= from) return -1
  let n = 0
  for (let i = from; i < to; i++) {
    const digit = (text[i] as number) - 0x30
    if (digit < 0 || digit > 9) return -1
    n = n * 10 + digit
  }
  return n
}

/**
 * Decodes base64 `text[from, to)` into `out` at `at` (stopping at padding, a non-digit or `limit`, the end it may
 * write to); returns the new end.
 */
function decodeBase64(text: Uint8Array, from: number, to: number, out: Uint8Array, at: number, limit: number): number {
  let bits = 0
  let held = 0
  for (let i = from; i < to && at < limit; i++) {
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
