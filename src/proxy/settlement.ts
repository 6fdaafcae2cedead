/** Settling a metered request with the store: retried while it fails, and each attempt's end told to the admission. */
import type { Logger } from 'pino'
import type { BudgetStore, Reservation, SettleResult } from '../budget/types.js'
import type { Micros } from '../money.js'
import type { Summary } from './summary.js'

// A settlement that fails (Redis slow or briefly away) is retried after these pauses, then logged.
const SETTLE_RETRY_DELAYS_MS = [100, 500, 2_000]

export interface SettlementDeps {
  store: Pick<BudgetStore, 'settle'>
  logger: Logger
  /** Once it fired, a failed settlement is not retried. */
  shutdown: AbortSignal
  /** Told as each attempt ends, answered or failed, before its caller resumes: the key's queue of requests blocked by holds retries. */
  released: (keyHash: string) => void
}

/**
 * Settles `reservation` at `actual`; resolves once it is settled, or once it failed for good (logged with
 * `summary.key`: the hold stays booked); never rejects. Settlement is idempotent per request id, so an attempt
 * that failed (timed out, and may yet run) is retried after each pause of SETTLE_RETRY_DELAYS_MS, and a retry that
 * finds the request settled is that attempt's work. A first attempt that finds it settled is a fault (a request id
 * settled twice: this settlement's amount was not booked) and is logged. Not async: the store's promise and one
 * reaction on it, no frame or await per settlement (an async attempt allocated ~200 B more a settlement).
 */
export function createSettlement(deps: SettlementDeps): (reservation: Reservation, actual: Micros, summary: Summary) => Promise<void> {
  function attempt(reservation: Reservation, actual: Micros, summary: Summary, tries: number): Promise<void> {
    let settling: Promise<SettleResult>
    try {
      settling = deps.store.settle(reservation, actual)
    } catch (error) {
      settling = Promise.reject(error)
    }
    // The reactions are functions made once, bound to the attempt's arguments: V8 keeps a function's optimized code
    // only while one function made by its expression lives, so a callback made here was compiled again after each
    // quiet period's full collection. Bound arguments, not an object of this module's: its hidden class would die
    // at that collection too, and the code that embeds it with it.
    return settling.then(answered.bind(null, reservation, actual, summary, tries), failed.bind(null, reservation, actual, summary, tries))
  }

  function answered(reservation: Reservation, actual: Micros, summary: Summary, tries: number, result: SettleResult): void {
    deps.released(reservation.keyHash)
    if (result.alreadySettled && tries === 0) {
      deps.logger.error(
        { key: summary.key, requestId: reservation.requestId, chargedMicros: result.chargedMicros, notBookedMicros: actual },
        'request settled twice: the first settlement stands, this one was not booked',
      )
    }
  }

  function failed(reservation: Reservation, actual: Micros, summary: Summary, tries: number, error: unknown): Promise<void> {
    deps.released(reservation.keyHash)
    return again(error, reservation, actual, summary, tries)
  }

  async function again(error: unknown, reservation: Reservation, actual: Micros, summary: Summary, tries: number): Promise<void> {
    const delay = SETTLE_RETRY_DELAYS_MS[tries]
    if (delay === undefined || deps.shutdown.aborted) {
      // The hold stays booked (conservative) and expires with its windows; the log says so.
      deps.logger.error({ err: error, key: summary.key }, 'settlement failed; the hold stays booked until its windows end')
      return
    }
    await new Promise((resolve) => setTimeout(resolve, delay))
    return attempt(reservation, actual, summary, tries + 1)
  }

  return (reservation, actual, summary) => attempt(reservation, actual, summary, 0)
}
