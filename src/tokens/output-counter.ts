import { countCompletePieces, EMPTY_SPLIT, encoderReady, preloadEncoding, type Encoding, type SplitText } from './tiktoken.js'

/**
 * How a model's output is counted: tiktoken `encoding` times `factor`. Factor 1 is exact (OpenAI models);
 * above 1 it is an estimate for a family whose tokenizer is not public (Claude, Mistral), from the pricing table.
 */
export interface TokenizerSpec {
  encoding: Encoding
  factor: number
}

/** Counts one stream's generated output, delta by delta. Hidden reasoning it never sees is never in it. */
export interface OutputCounter {
  /**
   * Adds one delta's generated text (non-strings and empty strings add nothing). `context` names the
   * text it continues (a choice's index when a request asks for several): each is tokenized on its own.
   */
  add(text: unknown, context?: number): void
  /** Adds tokens known without text: a block's or tool call's framing, a generated image. */
  addTokens(tokens: number): void
  /** Tokens so far: the text's count × factor, rounded up, plus the added tokens. */
  tokens(): number
  /** Tokens so far or more, known without tokenizing the text that waits: never below `tokens()`. */
  bound(): number
}

/** Builds the encoder in slices; a failed build keeps the byte bound, which is never below the truth. */
function warm(encoding: Encoding): void {
  preloadEncoding(encoding).catch(() => undefined)
}

// A piece longer than this (a run without breaks, e.g. base64) is counted and dropped rather than carried,
// so carrying never makes a stream quadratic; the split costs at most a token or two at that point.
const MAX_CARRY_CHARS = 256
// Contexts one stream may open (OpenAI's `n` is at most 128); text of any other continues the last one.
const MAX_CONTEXTS = 128
// Text waits for the encoder until `tokens()` needs it or this much of it has come: a stream whose usage the provider
// reports (and whose bound stays within its hold) is never tokenized, and one absorb stays short.
const MAX_PENDING_BYTES = 2048
// Waiting deltas are joined into one string every this many: a delta of a few bytes kept as its own string (and its
// slot) costs several times its text, so a stream waits with about its text's bytes, not ~25 a delta.
const MAX_PENDING_PIECES = 16

/** One text being generated: its settled tokens, the pieces the next delta may still change, text waiting for the encoder. */
interface TextState {
  complete: number
  carry: SplitText
  pending: string[]
  pendingBytes: number
}

/**
 * A text's settled tokens with its carried pieces at a token per UTF-8 byte (at most 3 a UTF-16 unit): the
 * waiting text may merge with them, and no tokenization of a text has more tokens than bytes.
 */
function boundOf(state: TextState): number {
  return state.complete + 3 * (state.carry.older.length + state.carry.newer.length)
}

function emptyText(): TextState {
  return { complete: 0, carry: EMPTY_SPLIT, pending: [], pendingBytes: 0 }
}

/**
 * A counter that tokenizes the deltas together with the last pre-tokenizer pieces before them, so the
 * total equals counting the whole text at once (± a token where a piece outgrew the carry); each context
 * (choice) is its own text. Deltas wait (MAX_PENDING_BYTES at most) and are tokenized together when
 * `tokens()` is asked. Until the encoder is built (in slices, started with the first stream) a delta
 * counts its UTF-8 bytes, an upper bound for any byte-level tokenizer; that text is recounted exactly
 * once the encoder is ready.
 */
export function createOutputCounter(spec: TokenizerSpec): OutputCounter {
  // Started with the stream, so the build has the provider's time to first token as a head start.
  if (!encoderReady(spec.encoding)) warm(spec.encoding)
  return new StreamOutputCounter(spec.encoding, spec.factor)
}

/** One stream's counter: an object with methods rather than closures over its texts (every open stream holds one). */
class StreamOutputCounter implements OutputCounter {
  // The first context's text, and the others' once another comes (a request asking for several choices): most
  // streams have one text and hold no Map for it.
  private readonly first: TextState = emptyText()
  private firstContext: number | null = null
  private others: Map<number, TextState> | null = null
  private extra = 0

  constructor(
    private readonly encoding: Encoding,
    private readonly factor: number,
  ) {}

  add(text: unknown, context = 0): void {
    if (typeof text !== 'string' || text.length === 0) return
    const state = this.textOf(Number.isSafeInteger(context) ? context : 0)
    state.pending.push(text)
    state.pendingBytes += Buffer.byteLength(text)
    if (state.pendingBytes >= MAX_PENDING_BYTES && encoderReady(this.encoding)) this.absorb(state)
    else if (state.pending.length >= MAX_PENDING_PIECES) state.pending = [state.pending.join('')]
  }

  addTokens(tokens: number): void {
    if (Number.isFinite(tokens) && tokens > 0) this.extra += tokens
  }

  tokens(): number {
    let counted = this.settle(this.first)
    let bytes = this.first.pendingBytes
    if (this.others !== null) {
      for (const state of this.others.values()) {
        counted += this.settle(state)
        bytes += state.pendingBytes
      }
    }
    return Math.ceil(counted * this.factor) + bytes + this.extra
  }

  bound(): number {
    let counted = boundOf(this.first)
    let bytes = this.first.pendingBytes
    if (this.others !== null) {
      for (const state of this.others.values()) {
        counted += boundOf(state)
        bytes += state.pendingBytes
      }
    }
    // Waiting text is at most a token a byte, before the factor (tokens() counts it so until the encoder is ready).
    return Math.ceil(counted * this.factor) + Math.ceil(bytes * Math.max(1, this.factor)) + this.extra
  }

  /** A text's tokens so far, its waiting text counted once the encoder is ready. */
  private settle(state: TextState): number {
    if (state.pending.length > 0 && encoderReady(this.encoding)) this.absorb(state)
    return state.complete + state.carry.olderTokens + state.carry.newerTokens
  }

  private textOf(context: number): TextState {
    this.firstContext ??= context
    if (context === this.firstContext) return this.first
    const others = (this.others ??= new Map())
    let state = others.get(context)
    if (state === undefined) {
      if (others.size + 1 >= MAX_CONTEXTS) return [...others.values()].at(-1) as TextState
      state = emptyText()
      others.set(context, state)
    }
    return state
  }

  /** Counts the text waiting in `state` (some) into its tokens. */
  private absorb(state: TextState): void {
    const { carry } = state
    const joined = carry.older + carry.newer + state.pending.join('')
    state.pending = []
    state.pendingBytes = 0
    // The carried pieces' tokens come along, so a piece the delta leaves as it was is not merged again.
    const counted = countCompletePieces(joined, this.encoding, carry)
    state.complete += counted.tokens
    state.carry = counted
    if (counted.older.length + counted.newer.length > MAX_CARRY_CHARS) {
      state.complete += counted.olderTokens + counted.newerTokens
      state.carry = EMPTY_SPLIT
    }
  }
}
