import { invalidRequest } from '../errors.js'
import { canonicalQuery } from '../http/upstream-url.js'
import { providerIdOf, type ProviderId } from '../providers/types.js'

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

// Where the next segment of the pathname parseTarget reads starts, -1 past the last: segments are read in
// place (no split, no closure per call); parseTarget never runs inside itself.
let at = -1

function nextSegment(pathname: string): string | undefined {
  if (at < 0) return undefined
  const end = pathname.indexOf('/', at)
  const segment = end < 0 ? pathname.slice(at) : pathname.slice(at, end)
  at = end < 0 ? -1 : end + 1
  return segment
}

/** Splits a request URL into its target; null when the URL names no provider. */
export function parseTarget(url: string): Target | null {
  const queryStart = url.indexOf('?')
  const pathname = queryStart < 0 ? url : url.slice(0, queryStart)
  const query = queryStart < 0 ? '' : url.slice(queryStart + 1)
  const first = pathname.indexOf('/')
  at = first < 0 ? -1 : first + 1
  let segment = nextSegment(pathname)
  let pathKey: string | null = null
  if (segment?.startsWith('lp-') === true) {
    pathKey = segment
    segment = nextSegment(pathname)
  }
  let pathSession: PathSession | null = null
  if (segment === 'session') {
    pathSession = { id: nextSegment(pathname) ?? '', budget: null, maxSteps: null }
    segment = nextSegment(pathname)
    if (segment === 'budget') {
      pathSession.budget = nextSegment(pathname) ?? ''
      segment = nextSegment(pathname)
    }
    if (segment === 'max-steps') {
      pathSession.maxSteps = nextSegment(pathname) ?? ''
      segment = nextSegment(pathname)
    }
  }
  const provider = segment === undefined ? null : providerIdOf(segment)
  if (provider === null) return null
  // The path keeps the slash before it.
  return { pathKey, pathSession, provider, path: at < 0 ? '/' : pathname.slice(at - 1), query }
}

/** The parsed query of every target without one, shared (the key gate's too): its readers never edit it. */
export const NO_QUERY_PARAMS = new URLSearchParams()
const NO_QUERY: { params: URLSearchParams; query: string } = { params: NO_QUERY_PARAMS, query: '' }

/**
 * The query of a target the proxy will act on, refusing what could be read two ways: a `#` fragment
 * (Fastify keeps it in the URL, an upstream URL drops it) and a repeated query parameter. Returns the
 * parsed parameters and the re-encoded query that goes upstream, so both read the same values.
 */
export function readQuery(url: string, target: Target): { params: URLSearchParams; query: string } {
  if (url.includes('#')) throw invalidRequest('the request target may not hold a # fragment')
  // Most requests carry no query: nothing to parse or re-encode.
  if (target.query === '') return NO_QUERY
  return canonicalQuery(target.query)
}
