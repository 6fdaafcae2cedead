import { eventOf } from '../budget/events.js'
import type { KeyAdmin } from '../budget/types.js'
import type { Metrics } from '../metrics.js'

/**
 * Adds a finished request's refusal or cut-off (if it is one) to the store's recent events at `now()`, off the
 * request path: on the next turn, never awaited; a failure only counts in loopers_store_errors_total{op="record_event"}.
 * A summary without a code (an admitted request's) makes no event and reads no clock.
 */
export function recordEventLater(
  keys: KeyAdmin,
  metrics: Metrics,
  summary: { key?: string | undefined; provider?: string | undefined; outcome?: string | undefined; code?: string | undefined; window?: string | undefined },
  now: () => number,
): void {
  if (summary.code === undefined) return
  const event = eventOf(summary, now())
  if (event === null) return
  setImmediate(() => {
    keys.recordEvent(event).catch(() => metrics.eventLost())
  })
}
