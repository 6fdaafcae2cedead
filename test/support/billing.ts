/**
 * How every fake upstream bills output: one implementation (bench/fake-billing.mjs) shared with the bench's
 * fake. OpenAI-family text is billed with tiktoken; Claude, Mistral and Gemini with a deterministic stand-in
 * for their unpublished tokenizers that is not the proxy's estimator (see that file).
 */
import { answerChunks, billedTokens, familyOf, type Delta, type Family } from '../../bench/fake-billing.mjs'

export { ANSWER_TEXT, answerChunks, answerDeltas, billedTokens, familyOf, warmBilling, type Delta, type Family } from '../../bench/fake-billing.mjs'

/**
 * The deltas a fake streams: `chunks` deltas of the realistic answer, or `chunks` repeats of `word` when a
 * test names one. Each delta carries the tokens it bills; `tokens` is the whole answer's bill.
 */
export function streamPlan(family: Family, chunks: number, word?: string, model?: string): { deltas: Delta[]; tokens: number } {
  if (word === undefined) return answerChunks(chunks, family, model)
  const text = word.repeat(chunks)
  const tokens = billedTokens(text, family, model)
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
