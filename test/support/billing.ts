/**
 * How every fake upstream bills output: one implementation (bench/fake-billing.mjs) shared with the bench's
 * fake. OpenAI-family text is billed with tiktoken; Claude, Mistral and Gemini with a deterministic stand-in
 * for their unpublished tokenizers that is not the proxy's estimator (see that file).
 */
import { answerChunks, billedTokens, familyOf, type Delta, type Family } from '../../bench/fake-billing.mjs'

export { ANSWER_TEXT, answerChunks, answerDeltas, billedTokens, familyOf, warmBilling, type Delta, type Family } from '../../bench/fake-billing.mjs'

/** What a fake streams unless told otherwise: one token (in every family's billing) per delta. */
export const DEFAULT_WORD = ' tok'

/** The text of every fake's non-streamed answer: 7 tokens in every family's billing. */
export const NON_STREAM_TEXT = 'hello again from the fake server now'

/** What a fake streams: the options every fake shares. */
export interface StreamTextOptions {
  /** Deltas per streamed answer (default 5). */
  chunks?: number
  /** Stream the realistic answer (1-4 tokens per delta, code and non-English text) instead of `word`. */
  answer?: boolean
  /** Text of every delta (default " tok", one token); ignored with `answer`. */
  word?: string
}

/**
 * The deltas a fake streams, each with the tokens it bills: `chunks` deltas of the realistic answer, or
 * `chunks` repeats of `word`. `tokens` is the whole answer's bill, counted in context as the provider does.
 */
export function streamPlan(family: Family, o: StreamTextOptions, model?: string): { deltas: Delta[]; tokens: number } {
  const chunks = o.chunks ?? 5
  if (o.answer === true) return answerChunks(chunks, family, model)
  const word = o.word ?? DEFAULT_WORD
  const tokens = billedTokens(word.repeat(chunks), family, model)
  // Repeats of one word: the bill of the whole text, spread over the chunks (the remainder on the first ones).
  const deltas = Array.from({ length: chunks }, (_, i) => ({ text: word, tokens: Math.floor(tokens / chunks) + (i < tokens % chunks ? 1 : 0) }))
  return { deltas, tokens }
}

/** The deltas of `plan` a provider generates under an output cap (null: none): it stops before passing it. */
export function capDeltas(deltas: Delta[], cap: number | null): Delta[] {
  if (cap === null) return deltas
  const out: Delta[] = []
  let total = 0
  for (const delta of deltas) {
    if (total + delta.tokens > cap) break
    total += delta.tokens
    out.push(delta)
  }
  return out
}

/** An output cap named by a body field (`max_tokens`, `max_completion_tokens`, `max_output_tokens`); null when none. */
export function capOf(body: Record<string, unknown>, ...fields: string[]): number | null {
  for (const field of fields) if (typeof body[field] === 'number') return body[field] as number
  return null
}

/** The bill of a non-streamed answer's text for `model`. */
export function billedFor(model: string, text: string): number {
  return billedTokens(text, familyOf(model), model)
}
