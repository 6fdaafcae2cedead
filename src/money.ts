/** Money inside Loopers is integer micro-USD (1 USD = 1_000_000). */
export type Micros = number

/** USD amounts at the edges (CLI, headers, JSON): plain decimals in, integer micro-USD inside. */

const MICROS_PER_USD = 1_000_000
const MICRO_DIGITS = 6
const PLAIN_DECIMAL = /^(\d*)(?:\.(\d*))?$/

/** Thrown for an amount the user typed that is not a valid USD value; the message fits after "loopers: ". */
export class AmountError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AmountError'
  }
}

/**
 * Parses a non-negative plain decimal ("5", "0.25", ".5", "12.000001") into exact integer micro-USD.
 * Rejects signs, exponents, separators, currency symbols and more than 6 decimals; throws AmountError.
 */
export function parseUsd(text: string): Micros {
  const value = text.trim()
  if (value.startsWith('-')) throw new AmountError(`amount cannot be negative: ${text}`)
  const match = PLAIN_DECIMAL.exec(value)
  const whole = match?.[1] ?? ''
  const fraction = match?.[2] ?? ''
  if (match === null || (whole === '' && fraction === '') || (match[2] !== undefined && fraction === '')) {
    throw new AmountError(`not a USD amount: '${text}' (expected a plain decimal such as 5 or 0.25)`)
  }
  if (fraction.length > MICRO_DIGITS) {
    throw new AmountError(`too many decimals in ${text} (at most ${MICRO_DIGITS}: amounts are kept in micro-dollars)`)
  }
  // Digits are joined as a string so no float rounding can creep in (0.1 + 0.2 style).
  const micros = BigInt((whole === '' ? '0' : whole) + fraction.padEnd(MICRO_DIGITS, '0'))
  if (micros > BigInt(Number.MAX_SAFE_INTEGER)) throw new AmountError(`amount too large: ${text}`)
  return Number(micros)
}

/** Integer micro-USD to the JSON number of dollars (micros / 1e6), as CONTRACT §3 prints them. */
export function microsToUsd(micros: Micros): number {
  return micros / MICROS_PER_USD
}

/** Formats micro-USD for people: "$1.234567", "$1.50", "$0.000001", "$12.00"; at least 2 decimals, trailing zeros trimmed. */
export function formatUsd(micros: Micros): string {
  const sign = micros < 0 ? '-' : ''
  const abs = Math.abs(Math.trunc(micros))
  const dollars = Math.floor(abs / MICROS_PER_USD)
  const fraction = String(abs % MICROS_PER_USD).padStart(MICRO_DIGITS, '0').replace(/0+$/, '').padEnd(2, '0')
  return `${sign}$${dollars}.${fraction}`
}

/** Parses a non-negative integer count (e.g. --session-max-steps); throws AmountError naming `what` otherwise. */
export function parseCount(text: string, what: string): number {
  const value = text.trim()
  if (!/^\d+$/.test(value)) throw new AmountError(`${what} must be a non-negative whole number, got '${text}'`)
  const count = Number(value)
  if (!Number.isSafeInteger(count)) throw new AmountError(`${what} is too large: ${text}`)
  return count
}
