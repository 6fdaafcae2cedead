// How the fake upstreams bill output, shared by the test fakes (test/support/billing.ts) and the bench fake.
// OpenAI-family text is billed with tiktoken (js-tiktoken's own encoder, not the proxy's counter). Claude,
// Mistral and Gemini publish no tokenizer, so their fakes bill with a deterministic stand-in that is NOT the
// proxy's estimator: cl100k tokens, some of them split in two by a hash of the token id, at rates chosen
// after published comparisons with GPT-4o's o200k (Claude: +16% English, +30% code; cl100k itself adds
// 20-75% on non-Latin scripts). So the proxy's estimate error is measured, not assumed away.
import { readFileSync } from 'node:fs'
import { getEncoding } from 'js-tiktoken'

/** A realistic answer: English, code, German, French, Russian, Chinese, Japanese, Korean, a table, an emoji. */
export const ANSWER_TEXT = readFileSync(new URL('../test/fixtures/text/answer.md', import.meta.url), 'utf8')

/** Extra split rates per family: [ASCII word tokens, other ASCII tokens (code, punctuation), non-ASCII tokens]. */
const SPLIT_RATES = {
  claude: [0.16, 0.3, 0],
  mistral: [0.08, 0.12, 0],
  gemini: [0.05, 0.05, 0],
}

/** Delta sizes in tokens, cycled: providers send one to a few tokens per event. */
const DELTA_SIZES = [2, 1, 3, 4, 2, 3, 1, 4]

const encoders = new Map()
function encoder(encoding) {
  let enc = encoders.get(encoding)
  if (enc === undefined) {
    enc = getEncoding(encoding)
    encoders.set(encoding, enc)
  }
  return enc
}

function hashUnit(id, salt) {
  let h = Math.imul(id ^ salt, 2654435761) >>> 0
  h = Math.imul(h ^ (h >>> 15), 2246822519) >>> 0
  return ((h ^ (h >>> 13)) >>> 0) / 4294967296
}

/** The family a model's fake bills as: 'openai' (o200k, or cl100k for gpt-4/3.5), 'claude', 'mistral', 'gemini'. */
export function familyOf(model) {
  const id = String(model).toLowerCase()
  if (id.includes('claude') || id.includes('anthropic')) return 'claude'
  if (id.includes('mistral') || id.includes('mixtral') || id.includes('codestral') || id.includes('ministral')) return 'mistral'
  if (id.includes('gemini') || id.includes('gemma')) return 'gemini'
  return 'openai'
}

function openAiEncoding(model) {
  return /^(?:gpt-3\.5|gpt-35|gpt-4(?![o.])|text-embedding-)/.test(String(model ?? '')) ? 'cl100k_base' : 'o200k_base'
}

/** Token ids and each token's billed weight for `text` as `family` bills it. */
function tokenize(text, family, model) {
  if (family === 'openai') {
    const ids = encoder(openAiEncoding(model)).encode(text)
    return { ids, weights: ids.map(() => 1), encoding: openAiEncoding(model) }
  }
  const enc = encoder('cl100k_base')
  const ids = enc.encode(text)
  const [word, other, wide] = SPLIT_RATES[family]
  const salt = family.length * 7919
  const weights = ids.map((id) => {
    const piece = enc.decode([id])
    const rate = /[^\x00-\x7f]/.test(piece) ? wide : /^\s?[A-Za-z]+$/.test(piece) ? word : other
    return hashUnit(id, salt) < rate ? 2 : 1
  })
  return { ids, weights, encoding: 'cl100k_base' }
}

/** Output tokens the fake bills for `text` (a whole answer, counted in context). */
export function billedTokens(text, family = 'openai', model) {
  if (text.length === 0) return 0
  return tokenize(text, family, model).weights.reduce((a, b) => a + b, 0)
}

const deltaCache = new Map()

/**
 * The answer's deltas as the family's provider streams them: groups of 1-4 of its own tokens (never
 * splitting a character), each with the tokens it bills. A stream of n chunks sends deltas 0…n-1, cycling.
 */
export function answerDeltas(family = 'openai', model) {
  const key = family === 'openai' ? `openai:${openAiEncoding(model)}` : family
  let deltas = deltaCache.get(key)
  if (deltas !== undefined) return deltas
  const { ids, weights, encoding } = tokenize(ANSWER_TEXT, family, model)
  const enc = encoder(encoding)
  deltas = []
  let i = 0
  let size = 0
  while (i < ids.length) {
    let end = Math.min(ids.length, i + (DELTA_SIZES[size++ % DELTA_SIZES.length] ?? 1))
    let text = enc.decode(ids.slice(i, end))
    // A character split between tokens: take tokens until it is whole.
    while (text.endsWith('\uFFFD') && end < ids.length) text = enc.decode(ids.slice(i, ++end))
    let tokens = 0
    for (let j = i; j < end; j++) tokens += weights[j]
    deltas.push({ text, tokens })
    i = end
  }
  deltaCache.set(key, Object.freeze(deltas))
  return deltas
}

/** The first `n` deltas of an answer (cycling through it) and what they bill in all. */
export function answerChunks(n, family = 'openai', model) {
  const deltas = answerDeltas(family, model)
  const out = []
  let tokens = 0
  for (let i = 0; i < n; i++) {
    const delta = deltas[i % deltas.length]
    out.push(delta)
    tokens += delta.tokens
  }
  return { deltas: out, tokens, text: out.map((d) => d.text).join('') }
}

/** Builds the encoders the fakes use, so the first request does not pay for it. */
export function warmBilling() {
  answerDeltas('openai')
  answerDeltas('claude')
  answerDeltas('mistral')
  answerDeltas('gemini')
}
