/**
 * How every fake upstream bills output: one implementation (bench/fake-billing.mjs) shared with the bench's
 * fake. OpenAI-family text is billed with tiktoken; Claude, Mistral and Gemini with a deterministic stand-in
 * for their unpublished tokenizers that is not the proxy's estimator (see that file).
 */
import { answerChunks, billedTokens, familyOf, type Delta, type Family } from '../../bench/fake-billing.mjs'
import { isMediaPart } from '../../src/tokens/bound.js'

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

/** Body fields a provider renders one message (or block list) at a time: each adds its wrapper's tokens. */
const MESSAGE_LISTS = ['messages', 'contents']
/** Body fields rendered as one system message. */
const SYSTEM_FIELDS = ['system', 'systemInstruction', 'system_instruction', 'instructions']
/** Plain prompt text (FIM, Llama and Titan invoke bodies). */
const TEXT_FIELDS = ['prompt', 'suffix', 'inputText']
/** Definitions the provider renders into its prompt, billed as their JSON text. */
const DEFINITION_FIELDS = ['tools', 'functions', 'toolConfig', 'tool_config', 'tool_choice']
/** A message's wrapper (`<|start|>role … <|end|>` in OpenAI's cookbook: 3) and the reply priming (3). */
const WRAPPER_TOKENS = 3

/**
 * The prompt tokens a provider bills for a request body, as a fake upstream bills them (and answers its
 * count endpoint): `family`'s billing over every string of the prompt fields (roles and text, not part
 * types, not media parts), 3 a message and 3 priming; embeddings bill their input's text only.
 */
export function billedPrompt(body: Record<string, unknown>, family: Family, model?: string, embeddings = false): number {
  const text = (value: string): number => billedTokens(value, family, model)
  if (embeddings) {
    const input = body.input ?? body.inputs ?? body.inputText ?? body.texts
    const items = Array.isArray(input) && input.every((v) => typeof v === 'number') ? [input] : Array.isArray(input) ? input : [input]
    return items.reduce<number>((sum, item) => sum + (typeof item === 'string' ? text(item) : Array.isArray(item) ? item.length : 0), 0)
  }
  let tokens = WRAPPER_TOKENS
  const strings = (value: unknown): number => promptStrings(value).reduce((sum, s) => sum + text(s), 0)
  for (const field of MESSAGE_LISTS) {
    const list = body[field]
    if (Array.isArray(list)) for (const message of list) tokens += WRAPPER_TOKENS + strings(message)
  }
  for (const field of SYSTEM_FIELDS) if (body[field] !== undefined) tokens += WRAPPER_TOKENS + strings(body[field])
  // The Responses API: `input` is one user message or a list of items.
  if (typeof body.input === 'string') tokens += WRAPPER_TOKENS + text(body.input)
  else if (Array.isArray(body.input)) for (const item of body.input) tokens += WRAPPER_TOKENS + strings(item)
  for (const field of TEXT_FIELDS) if (typeof body[field] === 'string') tokens += text(body[field] as string)
  for (const field of DEFINITION_FIELDS) {
    const value = body[field]
    if (value !== undefined && value !== null && typeof value === 'object') tokens += text(JSON.stringify(value))
  }
  return tokens
}

/** Every string of a prompt value, skipping part types, cache markers and media parts (billed apart). */
function promptStrings(value: unknown): string[] {
  const out: string[] = []
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const node = stack.pop()
    if (typeof node === 'string') out.push(node)
    else if (Array.isArray(node)) for (let i = node.length - 1; i >= 0; i--) stack.push(node[i])
    else if (typeof node === 'object' && node !== null) {
      const record = node as Record<string, unknown>
      if (isMediaPart(record)) continue
      for (const [key, field] of Object.entries(record).reverse()) if (key !== 'type' && key !== 'cache_control') stack.push(field)
    }
  }
  return out
}
