import { invalidRequest } from '../errors.js'

/**
 * Upstream URLs every adapter builds the same way: the configured base URL (which may have a path, e.g. a
 * gateway's `/openai`) followed by the client's path, which must stay below that base however the URL is
 * later normalised, and by a query string that reads one way only.
 */

/** Options for a path: Bedrock model ids are ARNs whose `/` the SDK sends percent-encoded inside one segment. */
interface PathRules {
  allowEncodedSlash?: boolean
}

/** `/`-separated segments of unreserved and sub-delim characters, `:` and `@`: no '%', '\\', '#', '?' or control character. */
const PLAIN_PATH = /^(?:\/[A-Za-z0-9\-._~!$&'()*+,;=:@]*)+$/
const DOT_SEGMENT = /(?:^|\/)\.\.?(?:\/|$)/

/**
 * Why `path` could leave the base URL's path or be read two ways, or null when it is safe: a `.` or `..`
 * segment raw or percent-encoded (any case, also inside a segment with an encoded slash), a backslash, an
 * encoded slash (unless allowed), a `%` left after decoding (double encoding), or a control character.
 */
export function unsafePathReason(path: string, rules: PathRules = {}): string | null {
  if (isPlainPath(path)) return null
  if (!path.startsWith('/')) return 'the path must start with /'
  if (path.includes('\\')) return 'backslashes are not allowed in the path'
  if (path.includes('#') || path.includes('?')) return 'the path may not hold # or ?'
  for (const segment of path.split('/')) {
    let decoded: string
    try {
      decoded = decodeURIComponent(segment)
    } catch {
      return 'the path is not valid percent-encoding'
    }
    if (/[\u0000-\u001f\u007f\\%]/.test(decoded)) return 'encoded backslashes, percent signs and control characters are not allowed in the path'
    if (decoded.includes('/') && rules.allowEncodedSlash !== true) return 'encoded slashes are not allowed in the path'
    if (decoded.split('/').some((part) => part === '.' || part === '..')) return 'dot segments are not allowed in the path'
  }
  return null
}

// Plain paths remembered per set or base (those seen last, of a route's few models and operations); a full one starts over.
const MAX_KNOWN_PATHS = 256
// Only paths up to this long are remembered: a set holds at most 256 × 256 characters (a base, their URLs too), whatever clients send.
const MAX_KNOWN_PATH_CHARS = 256
/** Paths found plain: unsafe under no rule, so found again without the regular expressions. */
const plainPaths = new Map<string, true>()
// The last path found plain ('/' is): a run of requests on one path compares its text, no hash of a new string for the Map.
let lastPlainPath = '/'

/**
 * The common case, decided without decoding: plain characters only (no '%', so nothing decodes, whatever
 * the rules) and no dot segment.
 */
function isPlainPath(path: string): boolean {
  if (path === lastPlainPath) return true
  if (!plainPaths.has(path)) {
    if (!PLAIN_PATH.test(path) || DOT_SEGMENT.test(path)) return false
    remember(plainPaths, path, true)
  }
  lastPlainPath = path
  return true
}

/** Keeps `value` for `path` in `known`, within the bounds above. */
function remember<T>(known: Map<string, T>, path: string, value: T): void {
  if (path.length > MAX_KNOWN_PATH_CHARS) return
  if (known.size >= MAX_KNOWN_PATHS) known.clear()
  known.set(path, value)
}

/** `base + path + query` after checking `path`; throws invalid_request for a path that could leave the base. */
export function upstreamUrl(base: string, path: string, query: string, rules: PathRules = {}): string {
  const checked = checkedBase(base)
  // A plain path found below the base before: its URL is the string made then (no concatenation, and the
  // upstream client's lookup of a URL it has seen reads that string's hash, not a new one's).
  let url = path === checked.lastPath ? checked.lastUrl : checked.below.get(path)
  if (url === undefined) {
    url = `${base}${path}`
    const reason = unsafePathReason(path, rules)
    if (reason !== null) throw invalidRequest(`${reason}: Loopers forwards only the provider's own API paths`)
    // Belt and braces: whatever the URL parser normalises, the path must still start with the base's path.
    if (!new URL(query.length > 0 ? `${url}?${query}` : url).pathname.startsWith(`${checked.path}/`)) throw invalidRequest('the path leaves the provider API')
    // A plain path is safe under every rule and ends where the query starts: later requests on it skip both checks.
    if (!isPlainPath(path)) return query.length > 0 ? `${url}?${query}` : url
    remember(checked.below, path, url)
  }
  checked.lastPath = path
  checked.lastUrl = url
  return query.length > 0 ? `${url}?${query}` : url
}

/**
 * A configured base URL: its path without the trailing slash, the URLs of the plain client paths found to stay below
 * it, and the last of those paths with its URL (null: none yet), found again by comparing text, not by a hash.
 */
interface CheckedBase {
  path: string
  below: Map<string, string>
  lastPath: string | null
  lastUrl: string
}

const bases = new Map<string, CheckedBase>()

/** The checked base of a configured base URL (a handful of bases: parsed once each). */
function checkedBase(base: string): CheckedBase {
  let checked = bases.get(base)
  if (checked === undefined) {
    checked = { path: new URL(base).pathname.replace(/\/$/, ''), below: new Map(), lastPath: null, lastUrl: '' }
    if (bases.size < 64) bases.set(base, checked)
  }
  return checked
}

/**
 * The query string as the proxy parsed it, re-encoded, so the upstream reads exactly the parameters the
 * meter read. Throws invalid_request for a parameter given twice (`alt=sse&alt=json`): a provider could read
 * either. Names compare after decoding (`al%74` is `alt`).
 */
export function canonicalQuery(raw: string): { params: URLSearchParams; query: string } {
  const params = new URLSearchParams(raw)
  const seen = new Set<string>()
  for (const name of params.keys()) {
    if (seen.has(name)) throw invalidRequest(`the query parameter '${name.slice(0, 64)}' is given more than once`)
    seen.add(name)
  }
  return { params, query: params.toString() }
}
