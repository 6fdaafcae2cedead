import { isMediaPart } from './bound.js'
import { RankBuilder, type RankTable } from './rank-builder.js'
import { loadRankSource, readRankSource, type RankSource } from './rank-file.js'

/**
 * Exact OpenAI token counts from js-tiktoken's rank files. Pieces are split with tiktoken's own regex and
 * merged with a heap (O(n log n) per piece): js-tiktoken's `encode` merges in O(n²) string joins, so one
 * 2,048-character run without a break costs it 0.3 s (2.4 s in CJK) and a crafted prompt could hold the
 * event loop for minutes.
 * The counts equal `new Tiktoken(ranks).encode(text, [], []).length` (special tokens count as plain text,
 * as the API treats them in user content).
 */

export type Encoding = 'o200k_base' | 'cl100k_base'

interface Encoder {
  /**
   * tiktoken's pre-tokenizer, sticky: `test` at a position reads the piece there without building a match (one
   * compiled pattern: a second, global one for searching held ~130 KB more of code). Shared: see `nextPiece`.
   */
  sticky: RegExp
  /** Token bytes (looked up as a range of a latin1 string, one char per byte) → rank. */
  ranks: RankTable
}

const encoders = new Map<Encoding, Encoder>()

/** o200k_base for gpt-4o, gpt-4.1, gpt-4.5, o-series, gpt-5 and any other OpenAI model; cl100k_base for gpt-4, gpt-3.5, embeddings. */
export function encodingForModel(model: string): Encoding {
  const base = model.startsWith('ft:') ? model.slice(3) : model
  return /^(?:gpt-3\.5|gpt-35|gpt-4(?![o.])|text-embedding-)/.test(base) ? 'cl100k_base' : 'o200k_base'
}

/** Builds in progress, each with the pattern it will use; a synchronous `getEncoder` finishes one at once. */
const building = new Map<Encoding, { sticky: RegExp; builder: RankBuilder }>()

function startBuild(encoding: Encoding, source: RankSource): { sticky: RegExp; builder: RankBuilder } {
  let build = building.get(encoding)
  if (build === undefined) {
    build = { sticky: new RegExp(source.patStr, 'uy'), builder: new RankBuilder(source.rankText) }
    building.set(encoding, build)
  }
  return build
}

function finishBuild(encoding: Encoding, build: { sticky: RegExp; builder: RankBuilder }): Encoder {
  const encoder = { sticky: build.sticky, ranks: build.builder.ranks }
  encoders.set(encoding, encoder)
  building.delete(encoding)
  return encoder
}

/** The encoder, built on first use (~0.2 s CPU, ~2.1 MB for o200k) and kept for the life of the process. */
function getEncoder(encoding: Encoding): Encoder {
  const encoder = encoders.get(encoding)
  if (encoder !== undefined) return encoder
  // Synchronous because the adapters' input counters are; it finishes a sliced build already under way.
  const build = building.get(encoding) ?? startBuild(encoding, readRankSource(encoding))
  build.builder.step()
  return finishBuild(encoding, build)
}

/** The encodings built so far in this process (each is built once, on first use). */
export function loadedEncodings(): Encoding[] {
  return [...encoders.keys()]
}

/** True once `encoding` is built, so counting with it costs only the text's own work. */
export function encoderReady(encoding: Encoding): boolean {
  return encoders.has(encoding)
}

// A build yields to the event loop every few milliseconds, so other requests wait at most one slice.
const BUILD_SLICE_MS = 4
const warming = new Map<Encoding, Promise<void>>()

/**
 * Reads the rank file asynchronously and builds the encoder in slices of a few milliseconds, so
 * no request waits for the whole build (~0.3 s CPU). Idempotent: every caller gets the same promise.
 */
export function preloadEncoding(encoding: Encoding): Promise<void> {
  if (encoders.has(encoding)) return Promise.resolve()
  let promise = warming.get(encoding)
  if (promise === undefined) {
    promise = buildInSlices(encoding).finally(() => warming.delete(encoding))
    warming.set(encoding, promise)
  }
  return promise
}

async function buildInSlices(encoding: Encoding): Promise<void> {
  const source = await loadRankSource(encoding)
  if (encoders.has(encoding)) return
  const build = building.get(encoding) ?? startBuild(encoding, source)
  while (!encoders.has(encoding)) {
    if (build.builder.step(performance.now() + BUILD_SLICE_MS)) finishBuild(encoding, build)
    else await new Promise((resolve) => setImmediate(resolve))
  }
}

const SHIFT = 2 ** 32 // heap key = rank × 2^32 + position: rank < 2^18, so keys stay below 2^53

// Reused lists for merging pieces of up to this many bytes (every piece a stream recounts per delta);
// a longer piece gets its own, so no one long input piece stays allocated.
const SCRATCH_BYTES = 1024
const scratchNext = new Int32Array(SCRATCH_BYTES + 1)
const scratchPrev = new Int32Array(SCRATCH_BYTES)
const scratchPair = new Int32Array(SCRATCH_BYTES)
const scratchHeap: number[] = []

/** Tokens of one piece (its UTF-8 bytes as a latin1 string) after byte-pair merging: lowest rank first, leftmost on ties. */
function mergedTokens(bytes: string, ranks: RankTable): number {
  const n = bytes.length
  if (n < 2) return n
  const reuse = n <= SCRATCH_BYTES
  const next = reuse ? scratchNext : new Int32Array(n + 1)
  const prev = reuse ? scratchPrev : new Int32Array(n)
  // The rank of part i joined to the next, -1 if none (or i is merged away): a heap entry whose rank is not its
  // part's any more is stale, and a rank names one string, so this needs no second lookup of the pair.
  const pair = reuse ? scratchPair : new Int32Array(n)
  const heap = reuse ? scratchHeap : []
  heap.length = 0
  for (let i = 0; i < n; i++) {
    next[i] = i + 1
    prev[i] = i - 1
  }
  next[n] = n
  pair[n - 1] = -1
  for (let i = 0; i + 1 < n; i++) {
    const rank = ranks.rank(bytes, i, i + 2)
    pair[i] = rank
    if (rank !== -1) heapPush(heap, rank * SHIFT + i)
  }
  let parts = n
  while (heap.length > 0) {
    const key = heapPop(heap)
    const rank = Math.floor(key / SHIFT)
    const i = key - rank * SHIFT
    // A stale entry: part i has grown or been merged away since, so its pair is another string or none.
    if (pair[i] !== rank) continue
    const j = next[i] as number
    const end = next[j] as number
    pair[j] = -1
    next[i] = end
    if (end < n) prev[end] = i
    parts -= 1
    const right = end < n ? ranks.rank(bytes, i, next[end] as number) : -1
    pair[i] = right
    if (right !== -1) heapPush(heap, right * SHIFT + i)
    const p = prev[i] as number
    if (p >= 0) {
      const left = ranks.rank(bytes, p, end)
      pair[p] = left
      if (left !== -1) heapPush(heap, left * SHIFT + p)
    }
  }
  return parts
}

function heapPush(heap: number[], key: number): void {
  let i = heap.length
  heap.push(key)
  while (i > 0) {
    const parent = (i - 1) >> 1
    const up = heap[parent] as number
    if (up <= key) break
    heap[i] = up
    i = parent
  }
  heap[i] = key
}

function heapPop(heap: number[]): number {
  const top = heap[0] as number
  const last = heap.pop() as number
  const size = heap.length
  if (size === 0) return top
  let i = 0
  for (;;) {
    const left = 2 * i + 1
    if (left >= size) break
    const right = left + 1
    const child = right < size && (heap[right] as number) < (heap[left] as number) ? right : left
    if ((heap[child] as number) >= last) break
    heap[i] = heap[child] as number
    i = child
  }
  heap[i] = last
  return top
}

const NON_ASCII = /[^\x00-\x7f]/

// Where a short piece is encoded: a JS loop into a reused buffer costs less than `Buffer.from` allocating one.
const encoded = Buffer.alloc(3 * SCRATCH_BYTES)
const REPLACEMENT = 0xfffd // what UTF-8 encoding writes for an unpaired surrogate

/** `piece`'s UTF-8 bytes as a latin1 string (one char per byte). */
function latin1Bytes(piece: string): string {
  const length = piece.length
  if (length > SCRATCH_BYTES) return Buffer.from(piece, 'utf8').toString('latin1')
  const out = encoded
  let n = 0
  for (let i = 0; i < length; i++) {
    let c = piece.charCodeAt(i)
    if (c < 0x80) {
      out[n++] = c
      continue
    }
    if (c < 0x800) {
      out[n++] = 0xc0 | (c >> 6)
      out[n++] = 0x80 | (c & 0x3f)
      continue
    }
    if (c >= 0xd800 && c < 0xe000) {
      const low = i + 1 < length ? piece.charCodeAt(i + 1) : 0
      if (c < 0xdc00 && low >= 0xdc00 && low < 0xe000) {
        const point = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00)
        out[n++] = 0xf0 | (point >> 18)
        out[n++] = 0x80 | ((point >> 12) & 0x3f)
        out[n++] = 0x80 | ((point >> 6) & 0x3f)
        out[n++] = 0x80 | (point & 0x3f)
        i++
        continue
      }
      c = REPLACEMENT
    }
    out[n++] = 0xe0 | (c >> 12)
    out[n++] = 0x80 | ((c >> 6) & 0x3f)
    out[n++] = 0x80 | (c & 0x3f)
  }
  return out.toString('latin1', 0, n)
}

// Counts of short pieces, per rank map: words recur, and a stream recounts its last pieces with each delta.
const MAX_CACHED_PIECE = 24
const MAX_CACHED_PIECES = 50_000
const pieceCache = new WeakMap<RankTable, Map<string, number>>()

/** Tokens of one pre-tokenizer piece: one if it is a token, else its byte-pair merge (cached for short pieces). */
function pieceTokens(piece: string, ranks: RankTable): number {
  let cache = pieceCache.get(ranks)
  if (cache === undefined) {
    cache = new Map()
    pieceCache.set(ranks, cache)
  }
  const cached = cache.get(piece)
  if (cached !== undefined) return cached
  const bytes = NON_ASCII.test(piece) ? latin1Bytes(piece) : piece
  const tokens = ranks.rank(bytes, 0, bytes.length) !== -1 ? 1 : mergedTokens(bytes, ranks)
  if (piece.length <= MAX_CACHED_PIECE) {
    if (cache.size >= MAX_CACHED_PIECES) cache.clear()
    cache.set(piece, tokens)
  }
  return tokens
}

/**
 * Exact token count of `text`. Stops as soon as the running count exceeds `limit` and returns the count so
 * far, so a caller that only needs "does it fit" never tokenizes past its budget.
 */
export function countTextTokens(text: string, encoding: Encoding, limit: number = Number.POSITIVE_INFINITY): number {
  if (text.length === 0) return 0
  const { sticky, ranks } = getEncoder(encoding)
  let count = 0
  let at = 0
  while (at < text.length) {
    const start = nextPiece(sticky, text, at)
    if (start === -1) break
    at = sticky.lastIndex
    count += pieceTokens(text.slice(start, at), ranks)
    if (count > limit) break
  }
  sticky.lastIndex = 0
  return count
}

/**
 * Where the first piece at or after `at` starts, with `sticky.lastIndex` at its end; -1 if none: what a global search
 * from `at` finds. A piece nearly always starts where the last ended (no tiktoken pattern leaves a character out);
 * else each later position is tried (a unicode pattern tried inside a surrogate pair tries the whole pair, as a
 * search does). An empty match is no piece.
 */
export function nextPiece(sticky: RegExp, text: string, at: number): number {
  for (let start = at; start < text.length; start++) {
    sticky.lastIndex = start
    if (sticky.test(text) && sticky.lastIndex > start) return start
  }
  return -1
}

/** A text split for streaming: the tokens of its settled pieces, and its last two pieces with their tokens. */
export interface SplitText {
  /** Tokens of every pre-tokenizer piece but the last two. */
  tokens: number
  /** The second-to-last piece ('' if none) and its tokens. */
  older: string
  olderTokens: number
  /** The last piece ('' if none) and its tokens. */
  newer: string
  newerTokens: number
}

/** The split of no text: where a stream's text starts. */
export const EMPTY_SPLIT: SplitText = { tokens: 0, older: '', olderTokens: 0, newer: '', newerTokens: 0 }

/** A piece's tokens, taken from the previous split's last two pieces when it is one of them. */
function tokensOf(piece: string, ranks: RankTable, last: SplitText): number {
  if (piece === last.newer) return last.newerTokens
  if (piece === last.older) return last.olderTokens
  return pieceTokens(piece, ranks)
}

/**
 * For counting a stream delta by delta: splits `text` (the last split's `older + newer` and the new delta)
 * into the tokens of every pre-tokenizer piece but the last two, which the next delta may still extend or
 * re-split (`'s`, digit runs), and those two with their tokens. The pattern has no look-behind and no
 * anchor, so `older + newer` alone splits into exactly those two pieces. A piece equal to one of `last`'s
 * (the previous split of this text, in this encoding) takes its tokens from there instead of being merged again.
 */
export function countCompletePieces(text: string, encoding: Encoding, last: SplitText = EMPTY_SPLIT): SplitText {
  const { sticky, ranks } = getEncoder(encoding)
  // The last two pieces so far; a piece is counted once two others follow it.
  let older = ''
  let newer = ''
  let tokens = 0
  let at = 0
  while (at < text.length) {
    const start = nextPiece(sticky, text, at)
    if (start === -1) break
    if (older.length > 0) tokens += tokensOf(older, ranks, last)
    older = newer
    newer = text.slice(start, sticky.lastIndex)
    at = sticky.lastIndex
  }
  sticky.lastIndex = 0
  const olderTokens = older.length > 0 ? tokensOf(older, ranks, last) : 0
  const newerTokens = newer.length > 0 ? tokensOf(newer, ranks, last) : 0
  return { tokens, older, olderTokens, newer, newerTokens }
}

/** Every message's wrapper (`<|start|>role … <|end|>`): 3 in OpenAI's cookbook, +1 for a name. */
const MESSAGE_TOKENS = 4
/** The reply priming `<|start|>assistant<|message|>`. */
const REPLY_PRIMING_TOKENS = 3
/** Rendering of each assistant tool call beyond its strings (recipient, wrapper). */
const TOOL_CALL_TOKENS = 8
/** The namespace/system wrapper around tool definitions or a response schema. */
const DEFINITIONS_TOKENS = 16

/** Accumulates counts of one request and stops tokenizing once past `limit`. */
class Tally {
  count = 0
  constructor(
    private readonly encoding: Encoding,
    private readonly limit: number,
  ) {}

  get done(): boolean {
    return this.count > this.limit
  }

  add(tokens: number): void {
    this.count += tokens
  }

  text(text: string): void {
    if (!this.done) this.count += countTextTokens(text, this.encoding, this.limit - this.count)
  }

  /** Definitions (tools, schemas) are counted as their JSON text, which is longer than OpenAI's rendering. */
  json(value: unknown): void {
    if (value !== undefined && value !== null) this.text(JSON.stringify(value))
  }

  /** Every string, number and boolean inside `value`, skipping media parts (the caller prices those). */
  strings(value: unknown): void {
    const stack: unknown[] = [value]
    while (stack.length > 0 && !this.done) {
      const node = stack.pop()
      if (typeof node === 'string') this.text(node)
      else if (typeof node === 'number' || typeof node === 'boolean') this.text(String(node))
      else if (Array.isArray(node)) for (let i = node.length - 1; i >= 0; i--) stack.push(node[i])
      else if (typeof node === 'object' && node !== null) {
        const record = node as Record<string, unknown>
        if (isMediaPart(record)) continue
        for (const key of Object.keys(record).reverse()) {
          const field = record[key]
          // Encrypted reasoning replayed as input: its byte length bounds the reasoning tokens it carries.
          if (key === 'encrypted_content' && typeof field === 'string') this.add(Buffer.byteLength(field))
          else stack.push(field)
        }
      }
    }
  }

  definitions(...values: unknown[]): void {
    const present = values.filter((v) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0))
    if (present.length === 0) return
    this.add(DEFINITIONS_TOKENS)
    for (const value of present) this.json(value)
  }
}

/**
 * Upper bound of the input tokens OpenAI bills for a Chat Completions body: per message 4 + its strings
 * (content text, name, tool call ids, names and arguments), tool/function definitions and a json_schema
 * response format as JSON text, +3 priming. Media parts are not counted. Stops early past `limit`.
 */
export function countChatTokens(body: Record<string, unknown>, model: string, limit: number = Number.POSITIVE_INFINITY): number {
  const tally = new Tally(encodingForModel(model), limit)
  tally.add(REPLY_PRIMING_TOKENS)
  const messages = Array.isArray(body.messages) ? body.messages : []
  for (const message of messages) {
    if (tally.done) break
    tally.add(MESSAGE_TOKENS)
    const calls = (message as { tool_calls?: unknown } | null)?.tool_calls
    if (Array.isArray(calls)) tally.add(calls.length * TOOL_CALL_TOKENS)
    tally.strings(message)
  }
  const format = body.response_format as { type?: unknown } | undefined
  tally.definitions(body.tools, body.functions, format?.type === 'text' ? undefined : format)
  if (typeof body.tool_choice === 'object') tally.json(body.tool_choice)
  return tally.count
}

/**
 * Upper bound of the input tokens of a Responses API body as sent: instructions, input (a string or items,
 * each with a message wrapper), tools, text.format and prompt variables. What the body only references
 * (previous_response_id, conversation, a stored prompt, hosted tool results) is not counted.
 */
export function countResponsesTokens(body: Record<string, unknown>, model: string, limit: number = Number.POSITIVE_INFINITY): number {
  const tally = new Tally(encodingForModel(model), limit)
  tally.add(REPLY_PRIMING_TOKENS)
  if (typeof body.instructions === 'string') {
    tally.add(MESSAGE_TOKENS)
    tally.text(body.instructions)
  }
  if (typeof body.input === 'string') {
    tally.add(MESSAGE_TOKENS)
    tally.text(body.input)
  } else if (Array.isArray(body.input)) {
    for (const item of body.input) {
      if (tally.done) break
      tally.add(MESSAGE_TOKENS)
      tally.strings(item)
    }
  }
  const text = body.text as { format?: { type?: unknown } } | undefined
  const format = text?.format?.type === 'text' ? undefined : text?.format
  tally.definitions(body.tools, format)
  if (typeof body.tool_choice === 'object') tally.json(body.tool_choice)
  if (typeof body.prompt === 'object') tally.strings(body.prompt)
  return tally.count
}

/** Exact input tokens of an embeddings body: a string, strings, or token arrays (each counts its length). */
export function countEmbeddingTokens(body: Record<string, unknown>, model: string, limit: number = Number.POSITIVE_INFINITY): number {
  const tally = new Tally(encodingForModel(model), limit)
  const input = body.input
  const items: unknown[] = Array.isArray(input) && input.every((v) => typeof v === 'number') ? [input] : Array.isArray(input) ? input : [input]
  for (const item of items) {
    if (tally.done) break
    if (typeof item === 'string') tally.text(item)
    else if (Array.isArray(item)) tally.add(item.length)
  }
  return tally.count
}
