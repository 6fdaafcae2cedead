/**
 * What the budget scripts' replies say, read as ioredis parses them: outcome words compared byte for byte, integers
 * read from their bytes, refusals made typed results. Anything else is a fault: StoreUnavailableError.
 */
import { StoreUnavailableError } from '../../errors.js'
import type { Refusal } from '../types.js'
import type { Period } from '../windows.js'

/** A script's reply as ioredis parses it, unconverted: its outcome word, then Lua integers as numbers and Lua strings as Buffers. */
type Reply = [Buffer, ...(Buffer | number)[]]

/** The outcome words the hot paths compare replies with, byte for byte. */
export const OK = Buffer.from('ok')
export const DUPLICATE = Buffer.from('duplicate')
export const NOT_HELD = Buffer.from('not_held')
export const ALREADY = Buffer.from('already')
export const HELD = Buffer.from('held')
/** reserve.lua: a loop check asked without its scope and step found a limit in force. */
export const LOOP_NEEDED = Buffer.from('loop_needed')

/** A script's reply: a list that starts with its outcome; `what` names the script in the error. */
export function replyOf(raw: unknown, what: string): Reply {
  if (!(Array.isArray(raw) && Buffer.isBuffer(raw[0]))) throw unexpected(what, raw)
  return raw as Reply
}

/** The refusal a reply names, with the `periods` it was checked in. */
export function refusal(reply: Reply, periods: Period[]): Refusal {
  const [word, a, b, c, d] = reply
  const reason = word.toString()
  switch (reason) {
    case 'invalid_key':
    case 'key_revoked':
    case 'provider_not_allowed':
    case 'budget_not_set':
    case 'session_steps_exceeded':
      return { ok: false, reason }
    case 'session_budget_exceeded':
      return { ok: false, reason, limitMicros: int(a), spentMicros: int(b), heldMicros: int(c) }
    case 'loop_detected':
      return { ok: false, reason, step: String(a), count: int(b), limitCount: int(c) }
    case 'rate_limited':
      return { ok: false, reason, limitCount: int(a), count: int(b), resetsAt: (periods[0] as Period).resetsAt }
    case 'budget_exceeded': {
      const period = periods[int(a) - 1]
      if (period === undefined) break
      return { ok: false, reason, window: period.window, limitMicros: int(b), spentMicros: int(c), heldMicros: int(d), resetsAt: period.resetsAt }
    }
  }
  throw unexpected('refusal', reply)
}

/** The fault of a reply `what` did not expect; Buffers in it shown as text. */
export function unexpected(what: string, reply: unknown): StoreUnavailableError {
  const shown = Array.isArray(reply) ? reply.map(asText) : asText(reply)
  return new StoreUnavailableError(`budget store ${what}: unexpected reply ${JSON.stringify(shown)}`)
}

function asText(v: unknown): unknown {
  return Buffer.isBuffer(v) ? v.toString() : v
}

const ZERO = 48

/** A reply's integer: a Lua integer as is, or a Lua string read as Number() reads its text (plain digits from the bytes). */
export function int(v: Buffer | number | undefined): number {
  if (typeof v === 'number') return v
  if (v === undefined) return Number.NaN
  let n = 0
  for (let i = 0; i < v.length; i++) {
    const digit = (v[i] as number) - ZERO
    if (digit < 0 || digit > 9 || i === MAX_PLAIN_DIGITS) return Number(v.toString())
    n = n * 10 + digit
  }
  return n
}

/** The integer in `v` from `start` to `end` (plain digits; anything else read as Number() reads its text). */
export function intIn(v: Buffer, start: number, end: number): number {
  let n = 0
  for (let i = start; i < end; i++) {
    const digit = (v[i] as number) - ZERO
    if (digit < 0 || digit > 9 || i - start === MAX_PLAIN_DIGITS) return Number(v.toString('latin1', start, end))
    n = n * 10 + digit
  }
  return end > start ? n : Number.NaN
}

/** Up to this many digits a number read digit by digit is exact. */
const MAX_PLAIN_DIGITS = 15
