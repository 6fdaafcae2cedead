import { eventOf } from '../budget/events.js'
import type { KeyAdmin } from '../budget/types.js'
import type { Metrics } from '../metrics.js'

/**
 * Adds a finished request's refusal or cut-off (if it is one) to the store's recent events at `atMs`, off the
 * request path: on the next turn, never awaited; a failure only counts in loopers_store_errors_total{op="record_event"}.
 */
export function recordEventLater(
  keys: KeyAdmin,
  metrics: Metrics,
  summary: { key?: string | undefined; provider?: string | undefined; outcome?: string | undefined; code?: string | undefined; window?: string | undefined },
  atMs: number,
): void {
  const event = eventOf(summary, atMs)
  if (event === null) return
  setImmediate(() => {
    keys.recordEvent(event).catch(() => metrics.eventLost())
  })
}
