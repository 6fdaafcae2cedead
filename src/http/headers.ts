import type { IncomingHttpHeaders } from 'node:http'

// Hop-by-hop and framing headers are per connection; undici and Node set their own.
const NOT_FORWARDED = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'host',
  'content-length',
  // Identity encoding so the proxy can read usage from bodies and streams without inflating them.
  'accept-encoding',
  // Every credential header any SDK sends: the adapter sets the one upstream credential itself.
  'authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'x-amz-security-token',
  'x-amz-date',
  'x-amz-content-sha256',
])

/**
 * Client request headers that may travel upstream: no hop-by-hop headers, no credentials,
 * no `X-Loopers-*` control headers, no HTTP/2 pseudo-headers.
 */
export function forwardableRequestHeaders(incoming: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  // for…in, not Object.entries: no pair array per header on every request.
  for (const name in incoming) {
    const value = incoming[name]
    if (value === undefined || name.startsWith(':') || NOT_FORWARDED.has(name) || name.startsWith('x-loopers-')) continue
    out[name] = Array.isArray(value) ? value.join(', ') : value
  }
  out['accept-encoding'] = 'identity'
  return out
}

/** First value of a header, trimmed; null when absent or empty. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | null {
  const raw = headers[name]
  const value = Array.isArray(raw) ? raw[0] : raw
  if (value === undefined) return null
  const trimmed = value.trim()
  return trimmed.length > 0 ? trimmed : null
}

const BEARER = /^Bearer\s+(\S+)$/i
const NO_SPACE = /^\S+$/

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(headers: IncomingHttpHeaders): string | null {
  const value = headerValue(headers, 'authorization')
  if (value === null) return null
  if (value === lastAuthorization) return lastToken
  lastToken = tokenOf(value)
  lastAuthorization = value
  return lastToken
}

// The last Authorization value read and its token. A run of one client's requests sends one value, and its token
// is then the same string each time: the key gate and the key hash cache compare it with the last one by identity,
// where a token sliced out anew is compared character by character in a V8 runtime call (3 a request).
let lastAuthorization = ''
let lastToken: string | null = null

function tokenOf(value: string): string | null {
  // What every SDK sends, read without a match array: `Bearer`, one space, a token with no space in it.
  if (value.startsWith('Bearer ')) {
    const token = value.slice(7)
    if (NO_SPACE.test(token)) return token
  }
  const match = BEARER.exec(value)
  return match?.[1] ?? null
}
