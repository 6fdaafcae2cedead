/**
 * Recent refusals and stream cut-offs (issue 11), kept in the budget store so every instance shows the
 * same list: the newest EVENTS_KEPT per store. Never a key, prompt or credential: a hash prefix only.
 */

/** How many events each store keeps (older ones are dropped as new ones arrive). */
export const EVENTS_KEPT = 1000
/** What `GET /api/events` returns when no limit is given. */
const DEFAULT_EVENTS = 50

/** Refusal codes worth showing (the key was known; the budget or a rule of it said no). */
const RECORDED_REFUSALS: ReadonlySet<string> = new Set([
  'budget_exceeded',
  'session_budget_exceeded',
  'session_steps_exceeded',
  'budget_not_set',
  'rate_limited',
  'loop_detected',
  'key_revoked',
  'provider_not_allowed',
])

export interface BudgetEvent {
  time: Date
  kind: 'refusal' | 'cutoff'
  /** The first 8 hex digits of the key hash, as logs and metrics show it. */
  keyHashPrefix: string
  provider: string
  /** The public error code (for a cut-off: why the stream could not go on). */
  reason: string
  /** The budget window that refused, `session` for a session limit, else null. */
  window: string | null
}

/** The event one finished request makes at `atMs`, or null (admitted and not cut, or not worth showing). */
export function eventOf(summary: { key?: string; provider?: string; outcome?: string; code?: string; window?: string }, atMs: number): BudgetEvent | null {
  const { key, provider, outcome, code } = summary
  if (key === undefined || provider === undefined || code === undefined) return null
  const kind = outcome === 'cutoff' ? 'cutoff' : outcome === 'refused' && RECORDED_REFUSALS.has(code) ? 'refusal' : null
  if (kind === null) return null
  const window = summary.window ?? (code.startsWith('session_') ? 'session' : null)
  return { time: new Date(atMs), kind, keyHashPrefix: key.slice(0, 8), provider, reason: code, window }
}

/** A limit 1..EVENTS_KEPT from a query string (undefined: the default); null when the text is not one. */
export function parseLimit(text: string | undefined): number | null {
  if (text === undefined) return DEFAULT_EVENTS
  if (!/^\d{1,4}$/.test(text.trim())) return null
  const limit = Number(text.trim())
  return limit >= 1 && limit <= EVENTS_KEPT ? limit : null
}

/** The stored form (one line of JSON in Redis, columns in SQLite, the API's JSON): snake_case fields. */
export interface EventJson {
  time: string
  kind: 'refusal' | 'cutoff'
  key_hash_prefix: string
  provider: string
  reason: string
  window: string | null
}

export function eventJson(e: BudgetEvent): EventJson {
  return { time: e.time.toISOString(), kind: e.kind, key_hash_prefix: e.keyHashPrefix, provider: e.provider, reason: e.reason, window: e.window }
}

export function eventFromJson(j: EventJson): BudgetEvent {
  return { time: new Date(j.time), kind: j.kind, keyHashPrefix: j.key_hash_prefix, provider: j.provider, reason: j.reason, window: j.window }
}
