import type { Metrics } from '../metrics.js'
import type { ProviderId } from '../providers/types.js'

/** One summary line per request; never a key, credential, URL query or prompt. */
export interface Summary {
  key?: string
  provider?: ProviderId
  op?: string
  model?: string
  stream?: boolean
  status?: number
  outcome?: string
  code?: string
  /** Input tokens the reservation assumed (bound or exact count). */
  inputBound?: number
  /** Tokens charged: reported by the provider, else counted by the proxy. */
  inputTokens?: number
  outputTokens?: number
  reservedUsd?: number
  chargedUsd?: number
  maxTokens?: number
  /** The refusing budget window. */
  window?: string
  /** What in-flight requests held in the refusing window or session (a reservation's or an extension's refusal). */
  heldUsd?: number
  /** Why a 5xx happened (store or transport fault), never a request detail. */
  cause?: string
  /** Milliseconds spent before the upstream was called. */
  addedMs?: number
  priced?: boolean
}

/**
 * A summary with every field present and undefined (a log line omits them): one object of a fixed shape,
 * whose fields live in it, not in a store that grows (and is copied) as the request fills them in.
 */
export function createSummary(): Summary {
  return {
    key: undefined,
    provider: undefined,
    op: undefined,
    model: undefined,
    stream: undefined,
    status: undefined,
    outcome: undefined,
    code: undefined,
    inputBound: undefined,
    inputTokens: undefined,
    outputTokens: undefined,
    reservedUsd: undefined,
    chargedUsd: undefined,
    maxTokens: undefined,
    window: undefined,
    heldUsd: undefined,
    cause: undefined,
    addedMs: undefined,
    priced: undefined,
  }
}

/** Adds one finished request to the metrics; labels carry only priced model ids and known outcomes. */
export function recordRequest(metrics: Metrics, summary: Summary, ms: number): void {
  const refused = summary.outcome === 'refused' || summary.outcome === 'error'
  // One literal of a fixed shape (absent fields undefined): no spread copies per request.
  metrics.recordRequest({
    provider: summary.provider ?? 'none',
    model: summary.model === undefined ? '_none' : summary.priced ? summary.model : '_unpriced',
    outcome: summary.outcome ?? 'error',
    refusal: refused && summary.code !== undefined ? { reason: summary.code, window: summary.window ?? '' } : undefined,
    cutoff: summary.outcome === 'cutoff',
    spendUsd: summary.chargedUsd ?? 0,
    inputTokens: summary.chargedUsd === undefined ? 0 : (summary.inputTokens ?? 0),
    outputTokens: summary.chargedUsd === undefined ? 0 : (summary.outputTokens ?? 0),
    durationSeconds: ms / 1000,
    addedSeconds: summary.addedMs === undefined ? undefined : summary.addedMs / 1000,
    key: summary.key,
  })
}
