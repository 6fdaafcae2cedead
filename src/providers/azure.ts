import type { IncomingHttpHeaders } from 'node:http'
import { invalidRequest } from '../errors.js'
import { bearerToken, forwardableRequestHeaders, headerValue } from '../http/headers.js'
import { unsafePathReason, upstreamUrl } from '../http/upstream-url.js'
import { isObject, type Json } from './body.js'
import { compatRoute, describeCompat, type CompatOperation } from './openai-compat.js'
import { compatMembers, isModelRead } from './openai.js'
import type { ProviderAdapter, RouteMatch, UpstreamCredential } from './types.js'
import { serverApiKey } from './types.js'

/**
 * Azure OpenAI speaks OpenAI's wire format; this adapter embeds the OpenAI pieces and overrides what
 * differs: routes (a deployment in the path is the model), the `api-key` header, the one configured
 * resource endpoint, request fields old api-versions refuse, exact counts only for deployments whose price
 * names the OpenAI model they run (a deployment name does not say which tokenizer it runs), and
 * prompt-filter refusals that Azure still bills.
 */

/** The only reads forwarded: the model list and one model, on the dated and the v1 API. */
const MODEL_READS = /^\/openai\/(?:v1\/)?models(?:\/[^/]+)?$/

// Azure deployment names: letters, digits, `.`, `_` and `-`, at most 64. The leading letter or digit rules out `.` and `..`.
const DEPLOYMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const DEPLOYMENT_ROUTE = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings|responses)$/
const DEPLOYMENT_OPERATIONS: Record<string, CompatOperation> = { 'chat/completions': 'chat', embeddings: 'embeddings', responses: 'responses' }

/** Routes whose body names the model (the deployment): the v1 API, and Responses as the SDK sends it. */
const BODY_MODEL_ROUTES = new Map<string, CompatOperation>([
  ['/openai/v1/chat/completions', 'chat'],
  ['/openai/v1/responses', 'responses'],
  ['/openai/v1/embeddings', 'embeddings'],
  ['/openai/responses', 'responses'],
])

// Before 2024-09-01(-preview) Azure refuses `stream_options` and `max_completion_tokens` as unrecognized arguments.
const FIRST_MODERN_API_VERSION = '2024-09-01'

// Query parameters that carry a credential (`api-key`, `subscription-key`, `access_token`, SAS `sig`, function `code`).
const CREDENTIAL_PARAM = /key|token|secret|password|auth|credential|signature|^sig$|^code$/i
const PROXY_KEY = /lp-[A-Za-z0-9]{43}/

// A Microsoft Entra ID access token is a JWT and travels as a Bearer token; an Azure key goes in `api-key`.
const JWT = /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/

/** The metered operation of a POST path; null for anything else. */
function findAzureRoute(path: string): RouteMatch | null {
  const bodyModel = BODY_MODEL_ROUTES.get(path)
  if (bodyModel !== undefined) return compatRoute(bodyModel)
  const match = DEPLOYMENT_ROUTE.exec(path)
  const deployment = match?.[1]
  const operation = match?.[2] === undefined ? undefined : DEPLOYMENT_OPERATIONS[match[2]]
  if (deployment === undefined || operation === undefined || !DEPLOYMENT.test(deployment)) return null
  return compatRoute(operation, deployment)
}

/** True when `path` stays under `/openai/` of the endpoint (the shared path rules of every adapter). */
export function isSafeAzurePath(path: string): boolean {
  return path.startsWith('/openai/') && unsafePathReason(path) === null
}

/** The query to forward (with its `?`), without credential parameters or anything holding a proxy key. */
export function forwardableAzureQuery(query: string): string {
  const kept = query.split('&').filter((pair) => {
    if (pair.length === 0) return false
    const eq = pair.indexOf('=')
    try {
      const name = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' '))
      const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, ' '))
      return !CREDENTIAL_PARAM.test(name) && !PROXY_KEY.test(name) && !PROXY_KEY.test(value)
    } catch {
      return false
    }
  })
  return kept.length === 0 ? '' : `?${kept.join('&')}`
}

/** True for a dated api-version older than the first that knows `stream_options` and `max_completion_tokens`. */
export function isLegacyApiVersion(query: string): boolean {
  const version = new URLSearchParams(query).get('api-version')
  const date = version === null ? undefined : /^\d{4}-\d{2}-\d{2}/.exec(version)?.[0]
  return date !== undefined && date < FIRST_MODERN_API_VERSION
}

/**
 * Edits a chat body into one a legacy api-version accepts: no `stream_options` (its streams carry no usage,
 * so the proxy's own count settles them) and `max_tokens` instead of `max_completion_tokens`. It edits
 * top-level fields only (a big body is forwarded with them spliced in); true when it changed the body.
 */
export function toLegacyChatBody(body: Json): boolean {
  if (body.stream_options === undefined && body.max_completion_tokens === undefined) return false
  delete body.stream_options
  const completion = body.max_completion_tokens
  if (typeof completion === 'number') {
    // The cap the meter read is `max_completion_tokens`; a `max_tokens` beside it only lowers it when it is a valid cap.
    const other = body.max_tokens
    body.max_tokens = typeof other === 'number' && Number.isSafeInteger(other) && other >= 1 ? Math.min(other, completion) : completion
  }
  delete body.max_completion_tokens
  return true
}

/** Chat routes matched under a legacy api-version (one route object per request): `prepareBody` rewrites their bodies. */
const legacyChatRoutes = new WeakSet<RouteMatch>()

/** Keys where Azure SDKs send one: `api-key` (keys), then `Authorization: Bearer` (Entra ID tokens, the v1 API). */
function sentKeys(headers: IncomingHttpHeaders): string[] {
  return [headerValue(headers, 'api-key'), bearerToken(headers)].filter((key): key is string => key !== null)
}

/**
 * Azure OpenAI on the resource at `endpoint` (LOOPERS_AZURE_ENDPOINT), the only host it ever connects to.
 * Without an endpoint every request is refused with invalid_request before anything is reserved or sent.
 */
export function createAzureAdapter(options: { endpoint: string | null; apiKey: string | null }): ProviderAdapter {
  const serverCredential = serverApiKey(options.apiKey)
  function requireEndpoint(): string {
    if (options.endpoint === null) {
      throw invalidRequest('Azure OpenAI is not configured on this proxy: set LOOPERS_AZURE_ENDPOINT to the resource endpoint')
    }
    return options.endpoint
  }

  return {
    id: 'azure',
    ...compatMembers,
    readKey(headers) {
      const keys = sentKeys(headers)
      return keys.find((key) => key.startsWith('lp-')) ?? keys[0] ?? null
    },
    findRoute(method, path, query) {
      const route = method === 'POST' ? findAzureRoute(path) : null
      if (route?.operation === 'chat' && query !== undefined && isLegacyApiVersion(query.toString())) legacyChatRoutes.add(route)
      return route
    },
    prepareBody(route, body, facts, maxOutputTokens) {
      const changed = compatMembers.prepareBody(route, body, facts, maxOutputTokens)
      return legacyChatRoutes.has(route) ? toLegacyChatBody(body) || changed : changed
    },
    isFree: (method, path) => isModelRead(method, path, MODEL_READS),
    describe(route, body) {
      requireEndpoint()
      return describeCompat(route, body)
    },
    exactInput(route, path, body, deployment, price) {
      // A deployment counts as the OpenAI model its price entry names; without one its encoding is
      // unknown: count with both and keep the larger.
      const how = compatMembers.exactInput(route, path, body, price?.model ?? deployment)
      return how?.kind === 'local' && price?.model === undefined ? { ...how, anyEncoding: true } : how
    },
    unpricedHint: (deployment) =>
      `name the OpenAI model this deployment runs, either in the environment ` +
      `(LOOPERS_AZURE_DEPLOYMENTS=${deployment}=gpt-4o, comma-separated for several) or in the pricing file ` +
      `(LOOPERS_PRICING_PATH: {"azure": {"${deployment}": {"model": "gpt-4o"}}}), or give it input_per_1m and output_per_1m there`,
    readClientCredential(headers): UpstreamCredential | null {
      // A proxy key is never an upstream credential, wherever the client put it.
      const token = sentKeys(headers).find((key) => !key.startsWith('lp-'))
      return token === undefined ? null : { kind: 'apiKey', value: token }
    },
    defaultCredential: () => serverCredential,
    buildUpstream(ctx) {
      const endpoint = requireEndpoint()
      if (!isSafeAzurePath(ctx.path)) throw invalidRequest(`${ctx.path} is not an Azure OpenAI path`)
      const headers = forwardableRequestHeaders(ctx.headers)
      if (ctx.credential?.kind === 'apiKey') {
        const value = ctx.credential.value
        if (JWT.test(value)) headers.authorization = `Bearer ${value}`
        else headers['api-key'] = value
      }
      return { url: upstreamUrl(endpoint, ctx.path, forwardableAzureQuery(ctx.query).slice(1)), headers, body: ctx.body }
    },
    errorBillsInput(_route, status, json) {
      // Azure bills the prompt its content filter evaluated and refused (HTTP 400, code content_filter).
      return status === 400 && isObject(json) && isObject(json.error) && json.error.code === 'content_filter'
    },
  }
}
