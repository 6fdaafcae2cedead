import { countCompletePieces, countTextTokens, encoderReady, preloadEncoding, type Encoding } from './tiktoken.js'

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
  /** Adds one delta's generated text (non-strings and empty strings add nothing). */
  add(text: unknown): void
  /** Adds tokens known without text: a block's or tool call's framing, a generated image. */
  addTokens(tokens: number): void
  /** Tokens so far: the text's count × factor, rounded up, plus the added tokens. */
  tokens(): number
}

/** Builds the encoder in slices; a failed build keeps the byte bound, which is never below the truth. */
function warm(encoding: Encoding): void {
  preloadEncoding(encoding).catch(() => undefined)
}

// A piece longer than this (a run without breaks, e.g. base64) is counted and dropped rather than carried,
// so carrying never makes a stream quadratic; the split costs at most a token or two at that point.
const MAX_CARRY_CHARS = 256

/**
 * A counter that tokenizes each delta together with the last pre-tokenizer pieces before it, so the
 * total equals counting the whole text at once (± a token where a piece outgrew the carry). Until the
 * encoder is built (in slices, started with the first stream) a delta counts its UTF-8 bytes, an upper
 * bound for any byte-level tokenizer; that text is recounted exactly once the encoder is ready.
 */
export function createOutputCounter(spec: TokenizerSpec): OutputCounter {
  const { encoding, factor } = spec
  // Started with the stream, so the build has the provider's time to first token as a head start.
  if (!encoderReady(encoding)) warm(encoding)
  let complete = 0 // tokens of pieces the next delta can no longer change
  let carry = ''
  let carryTokens = 0
  let extra = 0
  let pending: string[] = []
  let pendingBytes = 0

  function absorb(text: string): void {
    let joined = carry + text
    if (pending.length > 0) {
      joined = carry + pending.join('') + text
      pending = []
      pendingBytes = 0
    }
    const counted = countCompletePieces(joined, encoding)
    complete += counted.tokens
    carry = counted.rest
    if (carry.length > MAX_CARRY_CHARS) {
      complete += countTextTokens(carry, encoding)
      carry = ''
    }
    carryTokens = carry.length === 0 ? 0 : countTextTokens(carry, encoding)
  }

  return {
    add(text) {
      if (typeof text !== 'string' || text.length === 0) return
      if (encoderReady(encoding)) return absorb(text)
      pending.push(text)
      pendingBytes += Buffer.byteLength(text)
    },
    addTokens(tokens) {
      if (Number.isFinite(tokens) && tokens > 0) extra += tokens
    },
    tokens() {
      if (pending.length > 0 && encoderReady(encoding)) absorb('')
      return Math.ceil((complete + carryTokens) * factor) + pendingBytes + extra
    },
  }
}
