import type { Micros } from '../money.js'
import type { Usage } from '../providers/types.js'
import type { Price } from './types.js'

const MILLION = 1_000_000

/**
 * Exact `tokens × per1M / 1e6` as a whole part and a remainder in millionths, without any intermediate
 * above 2^53: tokens split into millions and a rest (< 1e6), the price into millions and a rest (< 1e6).
 */
function scaledParts(tokens: number, per1M: number): { whole: number; millionths: number } {
  const tokensRest = tokens % MILLION
  const tokenMillions = (tokens - tokensRest) / MILLION
  const priceRest = per1M % MILLION
  const priceMillions = (per1M - priceRest) / MILLION
  const small = tokensRest * priceRest // < 1e12
  const smallRest = small % MILLION
  return {
    whole: tokenMillions * per1M + tokensRest * priceMillions + (small - smallRest) / MILLION,
    millionths: smallRest,
  }
}

/** Token counts from providers: whole, non-negative; anything else (NaN, negative) counts as 0. */
function tokenCount(value: number): number {
  if (!(value > 0)) return 0
  return Math.min(Math.ceil(value), Number.MAX_SAFE_INTEGER)
}

function checkPrice(per1M: number): void {
  if (!Number.isSafeInteger(per1M) || per1M < 0) throw new RangeError(`price must be a non-negative integer, got ${per1M}`)
}

/** Cost of `tokens` at `per1M` micro-USD per 1M tokens, rounded up to a whole micro-USD; a count that is not positive costs 0. */
export function tokensCost(tokens: number, per1M: Micros): Micros {
  checkPrice(per1M)
  const { whole, millionths } = scaledParts(tokenCount(tokens), per1M)
  return whole + (millionths > 0 ? 1 : 0)
}

/**
 * What `usage` costs at `price`: ceil(Σ tokens × price / 1e6) over input, cached input, cache writes and
 * output, rounded once for the whole request. Fields the provider did not report count as 0.
 * Throws RangeError only for a malformed price (not a non-negative integer).
 */
export function costMicros(price: Price, usage: Usage): Micros {
  // Four terms without a list of them: this runs for every settled request.
  const sum = { whole: 0, millionths: 0 }
  addTerm(sum, usage.inputTokens, price.inputPer1M)
  addTerm(sum, usage.cachedInputTokens, price.cachedInputPer1M)
  addTerm(sum, usage.cacheWriteTokens, price.cacheWritePer1M)
  addTerm(sum, usage.outputTokens, price.outputPer1M)
  const rest = sum.millionths % MILLION
  return sum.whole + (sum.millionths - rest) / MILLION + (rest > 0 ? 1 : 0)
}

/** Adds `tokens × per1M / 1e6` to `sum` (whole part, millionths: four terms, each < 1e6); nothing when not reported. */
function addTerm(sum: { whole: number; millionths: number }, tokens: number | undefined, per1M: number): void {
  if (tokens === undefined) return
  checkPrice(per1M)
  const part = scaledParts(tokenCount(tokens), per1M)
  sum.whole += part.whole
  sum.millionths += part.millionths
}

/** floor(a / b) for non-negative safe integers, corrected for floating-point rounding of the quotient. */
function floorDiv(a: number, b: number): number {
  let q = Math.floor(a / b)
  if (q * b > a) q -= 1
  else if ((q + 1) * b <= a) q += 1
  return q
}

/**
 * The largest output token count whose cost fits in `budgetMicros − alreadyMicros` at the output price
 * (0 when nothing is left). An output price of 0 makes any count fit: returns Number.MAX_SAFE_INTEGER.
 */
export function outputTokensFor(price: Price, budgetMicros: Micros, alreadyMicros: Micros): number {
  const available = budgetMicros - alreadyMicros
  const per1M = price.outputPer1M
  if (!(available > 0)) return 0
  if (per1M <= 0) return Number.MAX_SAFE_INTEGER
  const left = Math.floor(available)
  // floor(left × 1e6 / per1M) by long division in base 1000, so no intermediate exceeds per1M × 1000.
  const q0 = floorDiv(left, per1M)
  const r0 = left - q0 * per1M
  const q1 = floorDiv(r0 * 1000, per1M)
  const r1 = r0 * 1000 - q1 * per1M
  const q2 = floorDiv(r1 * 1000, per1M)
  const tokens = q0 * MILLION + q1 * 1000 + q2
  return Math.min(tokens, Number.MAX_SAFE_INTEGER)
}
