/** Live sessions as the admin side reads them (the dashboard's "current sessions"). */
import type { Micros } from '../money.js'

/** The most sessions one read returns (per key, or over every key), so a page stays small. */
export const SESSIONS_SHOWN = 200

export interface SessionStatus {
  /** The key the session belongs to. */
  hash: string
  id: string
  spentMicros: Micros
  heldMicros: Micros
  steps: number
  /** The session's budget and step limit as they stand (lowered by requests, never raised); null = none. */
  budgetMicros: Micros | null
  maxSteps: number | null
}

/** Sorted by key, then id; at most SESSIONS_SHOWN. */
export function orderSessions(sessions: SessionStatus[]): SessionStatus[] {
  return sessions.sort((a, b) => a.hash.localeCompare(b.hash) || a.id.localeCompare(b.id)).slice(0, SESSIONS_SHOWN)
}
