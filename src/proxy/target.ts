import { invalidRequest } from '../errors.js'
import { canonicalQuery } from '../http/upstream-url.js'
import { isProviderId, type ProviderId } from '../providers/types.js'

/**
 * Where a proxied request goes: `/{provider}/{path}` or, with path auth, `/{lp-key}/{provider}/{path}`.
 * A session may sit before the provider, for clients that can set a base URL but no header (`loopers exec`):
 * `…/session/{id}[/budget/{usd}][/max-steps/{n}]/{provider}/{path}`.
 */
export interface Target {
  /** The proxy key carried in the path (path auth), else null. */
  pathKey: string | null
  /** Session values carried in the path, unvalidated (readSession checks them like the headers); null when absent. */
  pathSession: PathSession | null
  provider: ProviderId
  /** The provider's own API path, starting with `/`. */
  path: string
  /** Raw query string without `?`. */
  query: string
}

export interface PathSession {
  id: string
  budget: string | null
  maxSteps: string | null
}

/** Splits a request URL into its target; null when the URL names no provider. */
export function parseTarget(url: string): Target | null {
  const queryStart = url.indexOf('?')
  const pathname = queryStart < 0 ? url : url.slice(0, queryStart)
  const query = queryStart < 0 ? '' : url.slice(queryStart + 1)
  const segments = pathname.split('/')
  // segments[0] is the empty string before the leading slash.
  let index = 1
  let pathKey: string | null = null
  if (segments[index]?.startsWith('lp-')) {
    pathKey = segments[index] ?? null
    index++
  }
  let pathSession: PathSession | null = null
  if (segments[index] === 'session') {
    pathSession = { id: segments[index + 1] ?? '', budget: null, maxSteps: null }
    index += 2
    if (segments[index] === 'budget') {
      pathSession.budget = segments[index + 1] ?? ''
      index += 2
    }
    if (segments[index] === 'max-steps') {
      pathSession.maxSteps = segments[index + 1] ?? ''
      index += 2
    }
  }
  const provider = segments[index]
  if (provider === undefined || !isProviderId(provider)) return null
  const rest = segments.slice(index + 1).join('/')
  return { pathKey, pathSession, provider, path: `/${rest}`, query }
}

/**
 * The query of a target the proxy will act on, refusing what could be read two ways: a `#` fragment
 * (Fastify keeps it in the URL, an upstream URL drops it) and a repeated query parameter. Returns the
 * parsed parameters and the re-encoded query that goes upstream, so both read the same values.
 */
export function readQuery(url: string, target: Target): { params: URLSearchParams; query: string } {
  if (url.includes('#')) throw invalidRequest('the request target may not hold a # fragment')
  return canonicalQuery(target.query)
}

/** The URL with any path key and credential query parameters masked, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/\/lp-[A-Za-z0-9]+/g, '/lp-***').replace(/([?&](?:key|api-key|api_key)=)[^&]*/gi, '$1***')
}
