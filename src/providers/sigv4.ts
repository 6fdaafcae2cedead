import { createHash, createHmac } from 'node:crypto'

/**
 * AWS Signature Version 4 (header signing), written from the AWS specification: canonical request,
 * string to sign, derived signing key, `Authorization` header. Non-S3 rules: every path segment is
 * URI-encoded once more than it travels on the wire, and empty and dot segments are normalised away.
 */

interface SigV4Credentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

interface SigV4Request {
  method: string
  /** The path exactly as it goes on the wire (already percent-encoded where the client encoded it). */
  path: string
  /** The raw query string without `?` (may be empty). */
  query: string
  /** Headers to send, lower- or mixed-case names; `host` must be among them. */
  headers: Record<string, string>
  body: Buffer
  /** Hex SHA-256 of `body` when the caller already has it (a big body hashed in slices); else it is hashed here. */
  bodySha256?: string
}

interface SigV4Options {
  credentials: SigV4Credentials
  region: string
  service: string
  date: Date
  /** Also send and sign `x-amz-content-sha256` (the AWS SDKs do; the test suite does not). */
  contentSha256?: boolean
}

/** Headers a hop may add or change, so they are never signed (the AWS SDKs skip the same ones). */
const UNSIGNED_HEADERS = new Set([
  'authorization',
  'cache-control',
  'connection',
  'expect',
  'from',
  'keep-alive',
  'max-forwards',
  'pragma',
  'referer',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'x-amzn-trace-id',
])

const ALGORITHM = 'AWS4-HMAC-SHA256'

/**
 * Signs a request: returns its headers (names lowercased) plus `x-amz-date`, `x-amz-security-token`
 * when the credentials carry one, optionally `x-amz-content-sha256`, and `authorization`. Every
 * header except the unsignable ones is signed, over the exact body bytes.
 */
export function signRequest(request: SigV4Request, options: SigV4Options): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value
  delete headers.authorization
  const amzDate = options.date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '')
  const shortDate = amzDate.slice(0, 8)
  headers['x-amz-date'] = amzDate
  if (options.credentials.sessionToken !== undefined) headers['x-amz-security-token'] = options.credentials.sessionToken
  const payloadHash = request.bodySha256 ?? sha256Hex(request.body)
  if (options.contentSha256 === true) headers['x-amz-content-sha256'] = payloadHash

  const signed = Object.keys(headers)
    .filter((name) => !UNSIGNED_HEADERS.has(name) && !name.startsWith('proxy-') && !name.startsWith('sec-'))
    .sort()
  const canonical = [
    request.method.toUpperCase(),
    canonicalPath(request.path),
    canonicalQuery(request.query),
    ...signed.map((name) => `${name}:${canonicalHeaderValue(headers[name] ?? '')}`),
    '',
    signed.join(';'),
    payloadHash,
  ].join('\n')
  const scope = `${shortDate}/${options.region}/${options.service}/aws4_request`
  const stringToSign = [ALGORITHM, amzDate, scope, sha256Hex(canonical)].join('\n')
  const key = signingKey(options.credentials.secretAccessKey, shortDate, options.region, options.service)
  const signature = createHmac('sha256', key).update(stringToSign, 'utf8').digest('hex')
  headers.authorization = `${ALGORITHM} Credential=${options.credentials.accessKeyId}/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`
  return headers
}

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

function signingKey(secret: string, shortDate: string, region: string, service: string): Buffer {
  let key = createHmac('sha256', `AWS4${secret}`).update(shortDate, 'utf8').digest()
  for (const part of [region, service, 'aws4_request']) key = createHmac('sha256', key).update(part, 'utf8').digest()
  return key
}

/** RFC 3986 encoding: everything but unreserved characters (A-Z a-z 0-9 - . _ ~), as AWS requires. */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** Normalised path (no empty or dot segments), each segment encoded again, slashes kept. */
export function canonicalPath(path: string): string {
  const segments: string[] = []
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue
    if (segment === '..') segments.pop()
    else segments.push(segment)
  }
  const trailing = segments.length > 0 && path.endsWith('/') ? '/' : ''
  return `/${segments.map(uriEncode).join('/')}${trailing}`
}

/** Query parameters decoded, re-encoded strictly and sorted by name, then value. */
export function canonicalQuery(query: string): string {
  if (query === '') return ''
  const pairs: Array<[string, string]> = []
  for (const part of query.split('&')) {
    if (part === '') continue
    const equals = part.indexOf('=')
    const name = equals < 0 ? part : part.slice(0, equals)
    const value = equals < 0 ? '' : part.slice(equals + 1)
    pairs.push([uriEncode(safeDecode(name)), uriEncode(safeDecode(value))])
  }
  pairs.sort(([an, av], [bn, bv]) => (an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
  return pairs.map(([name, value]) => `${name}=${value}`).join('&')
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/** Trimmed, with runs of whitespace (and line breaks) collapsed to one space. */
function canonicalHeaderValue(value: string): string {
  return value.replace(/[\r\n]/g, ' ').replace(/[ \t]+/g, ' ').trim()
}
