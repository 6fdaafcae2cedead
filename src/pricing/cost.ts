import type { Micros } from '../money.js'
import type { Usage } from '../providers/types.js'
import type { Price } from './types.js'

const MILLION = 1_000_000

// Exact `tokens × per1M / 1e6` as a whole part and a remainder in millionths, without any intermediate
// above 2^53: tokens split into millions and a rest (< 1e6), the price into millions and a rest (< 1e6).
// Two functions, not one returning a pair: no object per cost on the request path.

/** The whole part of `tokens × per1M / 1e6`. */
function scaledWhole(tokens: number, per1M: number): number {
  const tokensRest = tokens % MILLION
  const priceRest = per1M % MILLION
  const small = tokensRest * priceRest // < 1e12
  return ((tokens - tokensRest) / MILLION) * per1M + tokensRest * ((per1M - priceRest) / MILLION) + (small - (small % MILLION)) / MILLION
}

/** The remainder of `tokens × per1M / 1e6`, in millionths (< 1e6). */
function scaledMillionths(tokens: number, per1M: number): number {
  return ((tokens % MILLION) * (per1M % MILLION)) % MILLION
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
  const count = tokenCount(tokens)
  return scaledWhole(count, per1M) + (scaledMillionths(count, per1M) > 0 ? 1 : 0)
}

/**
 * What `usage` costs at `price`: ceil(Σ tokens × price / 1e6) over input, cached input, cache writes and
 * output, rounded once for the whole request. Fields the provider did not report count as 0.
 * Throws RangeError only for a malformed price (not a non-negative integer).
 */
export function costMicros(price: Price, usage: Usage): Micros {
  // Four terms without a list of them or an accumulator object: this runs for every settled request.
  const whole =
    termWhole(usage.inputTokens, price.inputPer1M) +
    termWhole(usage.cachedInputTokens, price.cachedInputPer1M) +
    termWhole(usage.cacheWriteTokens, price.cacheWritePer1M) +
    termWhole(usage.outputTokens, price.outputPer1M)
  // Four terms, each < 1e6.
  const millionths =
    termMillionths(usage.inputTokens, price.inputPer1M) +
    termMillionths(usage.cachedInputTokens, price.cachedInputPer1M) +
    termMillionths(usage.cacheWriteTokens, price.cacheWritePer1M) +
    termMillionths(usage.outputTokens, price.outputPer1M)
  const rest = millionths % MILLION
  return whole + (millionths - rest) / MILLION + (rest > 0 ? 1 : 0)
}

/** The whole part of `tokens × per1M / 1e6`; 0 when not reported. */
function termWhole(tokens: number | undefined, per1M: number): number {
  if (tokens === undefined) return 0
  checkPrice(per1M)
  return scaledWhole(tokenCount(tokens), per1M)
}

/** The millionths of `tokens × per1M / 1e6`; 0 when not reported (its price was checked by termWhole). */
function termMillionths(tokens: number | undefined, per1M: number): number {
  return tokens === undefined ? 0 : scaledMillionths(tokenCount(tokens), per1M)
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

/**
 * `{ inputTokens: planned, ...usage }` without the spread's property copying (a runtime call on every settled
 * answer): usage's counts, its input where it has that field at all (even undefined), else `planned`.
 */
export function withPlannedInput(usage: Usage, planned: number): Usage {
  return {
    inputTokens: usage.inputTokens !== undefined || 'inputTokens' in usage ? usage.inputTokens : planned,
    cachedInputTokens: usage.cachedInputTokens,
    cacheWriteTokens: usage.cacheWriteTokens,
    outputTokens: usage.outputTokens,
  }
}
