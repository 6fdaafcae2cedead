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

// Providers send the same few dozen header names on every answer: each is judged once, as received. The
// verdict is the lower-case name to relay it under, or null.
const judged = new Map<string, string | null>()
const JUDGED_KEPT = 1_024

/** The lower-case name under which an upstream response header reaches the client; null when it may not. */
function relayedName(name: string): string | null {
  let relayed = judged.get(name)
  if (relayed === undefined) {
    const lower = name.toLowerCase()
    relayed = RELAYED.has(lower) || RELAYED_PREFIXES.some((prefix) => lower.startsWith(prefix)) ? lower : null
    if (judged.size < JUDGED_KEPT) judged.set(name, relayed)
  }
  return relayed
}

/**
 * The upstream response headers to relay to the client, from its raw header lines (name, value, …) in one
 * pass: lower-case names, a repeated header's values in an array; only kept values are decoded.
 * content-length is recomputed by the server.
 */
export function relayableResponseHeaders(raw: readonly Buffer[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = relayedName(raw[i]!.toString('latin1'))
    if (name === null) continue
    const value = raw[i + 1]!.toString('latin1')
    const seen = out[name] as string | string[] | undefined
    if (seen === undefined) out[name] = value
    else if (typeof seen === 'string') out[name] = [seen, value]
    else seen.push(value)
  }
  return out
}
