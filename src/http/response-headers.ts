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

// Providers send the same few dozen header names on every answer: each is judged once, as received, and
// found again by its bytes (a copy of them), so a name seen before is never decoded into a string. The
// verdict is the lower-case name to relay it under, or null.
interface Judged {
  readonly name: Uint8Array
  readonly relayed: string | null
  readonly next: Judged | null
}
const JUDGED_SLOTS = 256
const judged: Array<Judged | null> = new Array<Judged | null>(JUDGED_SLOTS).fill(null)
let judgedCount = 0
const JUDGED_KEPT = 1_024
// Names longer than this are judged each time (no provider sends one).
const MAX_JUDGED_NAME_BYTES = 128

/** The lower-case name under which an upstream response header reaches the client; null when it may not. */
function relayedName(name: Buffer): string | null {
  const n = name.length
  if (n === 0 || n > MAX_JUDGED_NAME_BYTES) return judge(name.toString('latin1'))
  // Length and three bytes pick the slot; the name's bytes are compared in full.
  const slot = (n * 31 + (name[0] as number) * 7 + (name[n >> 1] as number) * 3 + (name[n - 1] as number)) & (JUDGED_SLOTS - 1)
  for (let entry = judged[slot] ?? null; entry !== null; entry = entry.next) {
    const known = entry.name
    if (known.length !== n) continue
    let i = 0
    while (i < n && known[i] === name[i]) i++
    if (i === n) return entry.relayed
  }
  const relayed = judge(name.toString('latin1'))
  // A copy: undici's header buffers are views of the socket's read, which the cache must not keep.
  if (judgedCount < JUDGED_KEPT) {
    judged[slot] = { name: Uint8Array.from(name), relayed, next: judged[slot] ?? null }
    judgedCount++
  }
  return relayed
}

function judge(name: string): string | null {
  const lower = name.toLowerCase()
  return RELAYED.has(lower) || RELAYED_PREFIXES.some((prefix) => lower.startsWith(prefix)) ? lower : null
}

/**
 * The upstream response headers to relay to the client, from its raw header lines (name, value, …) in one
 * pass: lower-case names, a repeated header's values in an array; only kept values (and names not seen before) are decoded.
 * content-length is recomputed by the server.
 */
export function relayableResponseHeaders(raw: readonly Buffer[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = relayedName(raw[i]!)
    if (name === null) continue
    const value = raw[i + 1]!.toString('latin1')
    const seen = out[name] as string | string[] | undefined
    if (seen === undefined) out[name] = value
    else if (typeof seen === 'string') out[name] = [seen, value]
    else seen.push(value)
  }
  return out
}
