import type { OutgoingHttpHeaders } from 'node:http'

/**
 * Upstream response headers the official SDKs read: content type, request ids, retry advice, rate limits,
 * Bedrock's typed-error and usage headers. Everything else stays behind the proxy — account identifiers
 * (`openai-organization`, `openai-project`, `anthropic-organization-id`), cookies, CDN and hop-by-hop headers.
 */
const RELAYED = new Set([
  'content-type',
  // Sent identity-encoded unless the provider ignored that; then the client needs to know.
  'content-encoding',
  'retry-after',
  'retry-after-ms',
  'x-should-retry',
  'x-request-id',
  'request-id',
  'x-amzn-requestid',
  'x-amzn-request-id',
  'x-amz-request-id',
  'x-amz-id-2',
  'x-amz-cf-id',
  'x-amz-retry-after',
  // The AWS SDK picks its typed error from these.
  'x-amzn-errortype',
  'x-amzn-query-error',
  'apim-request-id',
  'x-ms-request-id',
  'x-ms-client-request-id',
  'x-kong-request-id',
  'openai-processing-ms',
  'openai-version',
])
const RELAYED_PREFIXES = ['x-ratelimit-', 'anthropic-ratelimit-', 'ratelimitbysize-', 'x-amzn-bedrock-']

// Providers send the same few dozen header names on every answer: each is judged once.
const judged = new Map<string, boolean>()
const JUDGED_KEPT = 1_024

/** True when an upstream response header may reach the client. */
function isRelayedResponseHeader(name: string): boolean {
  let relayed = judged.get(name)
  if (relayed === undefined) {
    const lower = name.toLowerCase()
    relayed = RELAYED.has(lower) || RELAYED_PREFIXES.some((prefix) => lower.startsWith(prefix))
    if (judged.size < JUDGED_KEPT) judged.set(name, relayed)
  }
  return relayed
}

/** The upstream response headers to relay to the client; content-length is recomputed by the server. */
export function relayableResponseHeaders(upstream: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  // for…in, not Object.entries: no pair array per header on every response.
  for (const name in upstream) {
    const value = upstream[name]
    if (value !== undefined && isRelayedResponseHeader(name)) out[name] = value
  }
  return out
}
