import { invalidRequest } from '../errors.js'
import type { Micros } from '../money.js'
import { outputTokensFor, tokensCost } from '../pricing/cost.js'
import type { Price } from '../pricing/types.js'
import type { RequestFacts } from '../providers/types.js'

/** A request's reservation bounds, derived from its facts, its model's price and its input tokens. */
export interface ReservationPlan {
  inputTokens: number
  /** Input at the dearest input rate (a cache write can cost more than plain input). */
  inputMicros: Micros
  /** Per-call fees of the hosted tools the request allows, at their most calls; charged whole once sent. */
  feeMicros: Micros
  /** The most output the request can produce (all choices). */
  outputCap: number
  /** Metered streams start with a slice of output and extend as they run. */
  metered: boolean
  minMicros: Micros
  maxMicros: Micros
}

// The least output worth forwarding a request for: a non-streamed request's cap, a stream's first slice.
const MIN_USEFUL_OUTPUT_TOKENS = 16

/**
 * Reserve bounds: metered streams hold input plus one slice (as much of it as fits, at least a useful
 * part); everything else the worst case, at least a useful part. `feeMicros`: hosted-tool fees, held whole.
 */
export function planReservation(facts: RequestFacts, price: Price, inputTokens: number, sliceTokens: number, feeMicros: Micros = 0): ReservationPlan {
  const outputCap = facts.maxOutputTokens ?? price.maxOutputTokens * facts.choices
  const inputMicros = tokensCost(inputTokens, Math.max(price.inputPer1M, price.cacheWritePer1M))
  const fixed = inputMicros + feeMicros
  // Reasoning a model bills but does not stream cannot be counted from deltas: hold the worst case up front.
  const metered = facts.stream && !price.hiddenReasoning && outputCap > 0
  if (metered) {
    const first = fixed + tokensCost(Math.min(outputCap, sliceTokens), price.outputPer1M)
    const useful = fixed + tokensCost(Math.min(outputCap, sliceTokens, MIN_USEFUL_OUTPUT_TOKENS), price.outputPer1M)
    return { inputTokens, inputMicros, feeMicros, outputCap, metered, minMicros: useful, maxMicros: first }
  }
  return {
    inputTokens,
    inputMicros,
    feeMicros,
    outputCap,
    metered,
    minMicros: fixed + tokensCost(Math.min(outputCap, MIN_USEFUL_OUTPUT_TOKENS), price.outputPer1M),
    maxMicros: fixed + tokensCost(outputCap, price.outputPer1M),
  }
}

/** The output cap a grant below the worst case can pay for, or null when the grant covers the request's own cap. */
export function loweredOutputCap(plan: ReservationPlan, price: Price, grantedMicros: Micros): number | null {
  if (plan.metered || grantedMicros >= plan.maxMicros) return null
  return Math.min(plan.outputCap, outputTokensFor(price, grantedMicros, plan.inputMicros + plan.feeMicros))
}

// No model generates more than this in one answer, nor more choices in one request (OpenAI's `n` ≤ 128);
// within them every bound stays an exact integer (2^20 × 128 tokens × $1,000/1M < 2^53 micro-USD).
const MAX_OUTPUT_TOKENS_PER_CHOICE = 1_048_576
const MAX_CHOICES = 128

/** Refuses output caps and choice counts no provider accepts, so reservation arithmetic stays exact. */
export function checkFacts(facts: RequestFacts): RequestFacts {
  if (!Number.isSafeInteger(facts.choices) || facts.choices < 1 || facts.choices > MAX_CHOICES) {
    throw invalidRequest(`a request may ask for 1 to ${MAX_CHOICES} choices`)
  }
  if (facts.maxOutputTokens !== null && facts.maxOutputTokens > MAX_OUTPUT_TOKENS_PER_CHOICE * facts.choices) {
    throw invalidRequest(`the output cap may be at most ${MAX_OUTPUT_TOKENS_PER_CHOICE} tokens per choice`)
  }
  return facts
}

