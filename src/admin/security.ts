import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

/** The admin listener's guard: security headers on every answer, and the bearer token when one is configured. */

/** Nothing but this origin's own script, style and JSON; no framing, no forms, no base rewriting. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ')

/** Routes a load balancer or orchestrator probes without credentials. */
const OPEN_ROUTES: ReadonlySet<string> = new Set(['/health', '/ready'])
/**
 * The dashboard's own script and style: static code with no data in it, which a browser fetches without the
 * token (it can send no header when it loads a <script>); everything with data needs the token.
 */
const PUBLIC_ASSETS: ReadonlySet<string> = new Set(['/dashboard.js', '/dashboard.css'])

interface AdminGuardOptions {
  /** The bearer token; null lets every request through (the listener is then loopback-only, see checkAdminExposure). */
  token: string | null
  /** Answers `GET /` without a valid token: the page that asks for it (status 401). */
  sendLoginPage(reply: FastifyReply): FastifyReply
}

/** Adds the headers to every answer of `app` and, with a token, refuses every route but /health, /ready and the assets without it. */
export function guardAdmin(app: FastifyInstance, options: AdminGuardOptions): void {
  const expected = options.token === null ? null : digest(options.token)
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    reply.header('x-frame-options', 'DENY')
    reply.header('cache-control', 'no-store')
    if (expected === null) return
    const path = request.url.split('?')[0] ?? ''
    if (OPEN_ROUTES.has(path) || PUBLIC_ASSETS.has(path)) return
    const presented = presentedToken(request)
    if (presented !== null && timingSafeEqual(digest(presented), expected)) return
    reply.header('www-authenticate', 'Bearer realm="loopers-admin"')
    if (path === '/' && request.method === 'GET') return options.sendLoginPage(reply.code(401))
    reply.header('x-loopers-error-code', 'invalid_key')
    return reply.code(401).send({ error: { code: 'invalid_key', message: 'this admin route needs Authorization: Bearer <LOOPERS_ADMIN_TOKEN>' } })
  })
}

/** The token of an `Authorization: Bearer …` header; null when there is none. */
function presentedToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization
  if (typeof header !== 'string') return null
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  return match?.[1] ?? null
}

/** Fixed-length digests, so the comparison takes the same time whatever the length or content of the guess. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}
