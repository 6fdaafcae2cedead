/**
 * A tiktoken rank table in typed arrays: every token's bytes in one buffer and an open-addressing hash
 * index over them, ~4.3 MB for o200k instead of ~40 MB of RSS for a `Map<string, number>` of 200k strings.
 * Looked up by a range of a latin1 string (one char per byte), so merging allocates no substrings.
 */
export class RankTable {
  private readonly mask: number
  /** Low bits of a slot that hold its token; the bits above them hold the top bits of the token's hash. */
  private readonly tokenBits: number
  private readonly tokenMask: number

  constructor(
    private readonly bytes: Uint8Array,
    /** Token i's bytes are `bytes[starts[i] .. starts[i + 1])`. */
    private readonly starts: Uint32Array,
    /** Token i's rank; null when every token's rank is its index (as in tiktoken's own files). */
    private readonly tokenRanks: Int32Array | null,
    /** Per slot: token index + 1 and its hash's tag (see `tokenBits`), 0 for empty; the length is a power of two. */
    private readonly slots: Int32Array,
  ) {
    this.mask = slots.length - 1
    this.tokenBits = tokenBitsFor(starts.length - 1)
    this.tokenMask = 2 ** this.tokenBits - 1
  }

  get size(): number {
    return this.starts.length - 1
  }

  /** The rank of `text.slice(start, end)` (latin1: every char code < 256), or -1 when it is not a token. */
  rank(text: string, start: number, end: number): number {
    const { mask, tokenBits } = this
    const length = end - start
    const hash = hashRange(text, start, end)
    const tag = hash >>> tokenBits
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot] as number
      if (entry === 0) return -1
      // Another hash's token (nearly all of them: o200k's tags are 13 bits) is passed over without reading where it starts.
      if (entry >>> tokenBits !== tag) continue
      const token = (entry & this.tokenMask) - 1
      const from = this.starts[token] as number
      if ((this.starts[token + 1] as number) - from !== length) continue
      let i = 0
      while (i < length && this.bytes[from + i] === text.charCodeAt(start + i)) i++
      if (i === length) return this.tokenRanks === null ? token : (this.tokenRanks[token] as number)
    }
  }

  /** Builds the index; a token whose bytes repeat keeps the later rank, as `Map.set` would. */
  static index(bytes: Uint8Array, starts: Uint32Array, tokenRanks: Int32Array | null): RankTable {
    const count = starts.length - 1
    let capacity = 1
    while (capacity < count * 2) capacity *= 2
    const slots = new Int32Array(capacity)
    const table = new RankTable(bytes, starts, tokenRanks, slots)
    const tokenBits = table.tokenBits
    for (let token = 0; token < count; token++) {
      const from = starts[token] as number
      const to = starts[token + 1] as number
      const hash = hashBytes(bytes, from, to)
      const entry = ((hash >>> tokenBits) * 2 ** tokenBits + token + 1) | 0
      for (let slot = hash & (capacity - 1); ; slot = (slot + 1) & (capacity - 1)) {
        const held = slots[slot] as number
        if (held === 0 || (held >>> tokenBits === hash >>> tokenBits && sameBytes(bytes, starts, (held & table.tokenMask) - 1, from, to))) {
          slots[slot] = entry
          break
        }
      }
    }
    return table
  }
}

/** Bits that hold `count` tokens' indexes + 1. */
function tokenBitsFor(count: number): number {
  return 32 - Math.clz32(count)
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

function sameBytes(bytes: Uint8Array, starts: Uint32Array, token: number, from: number, to: number): boolean {
  const other = starts[token] as number
  if ((starts[token + 1] as number) - other !== to - from) return false
  for (let i = 0; i < to - from; i++) if (bytes[other + i] !== bytes[from + i]) return false
  return true
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
 * so the build allocates nothing it later drops but the text itself.
 */
export class RankBuilder {
  private table: RankTable | null = null
  /** 0 while sizing, 1 while filling. */
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

  constructor(private text: Uint8Array) {}

  get done(): boolean {
    return this.table !== null
  }

  /** The finished table; only after `step` has returned true. */
  get ranks(): RankTable {
    if (this.table === null) throw new Error('rank table not built yet')
    return this.table
  }

  /** Parses until the text is done (true) or `deadline` (a `performance.now()` time) has passed (false). */
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
        else if (this.field > 1 && !Number.isNaN(this.rank)) this.add(this.pos, end, this.rank++)
        this.field += 1
        this.pos = end
        if (++parsed % 2048 === 0 && performance.now() > deadline) return false
      }
      if (this.pass === 1) break
      this.startFilling()
    }
    this.finish()
    return true
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

  private finish(): void {
    this.starts[this.count] = this.used
    this.table = RankTable.index(this.bytes, this.starts, this.tokenRanks)
    this.text = new Uint8Array(0) // the rank text is large; nothing here needs it any more
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
