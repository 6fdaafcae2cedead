import type { IncomingHttpHeaders } from 'node:http'
import { invalidRequest } from '../errors.js'
import { isProxyKey } from '../keys.js'
import { messagesShape } from '../loop/shapes/messages.js'
import { bearerToken, forwardableRequestHeaders, headerValue } from '../http/headers.js'
import { elementsOf, type Elements } from '../http/json-elements.js'
import { upstreamUrl } from '../http/upstream-url.js'
import { boundInputTokens } from '../tokens/bound.js'
import { createMessagesStreamParser, messageUsage } from './anthropic-stream.js'
import { isObject, readFlag, requireModel, type Json } from './body.js'
import { anthropicReferencedInput } from './hosted-tools.js'
import { isModelRead } from './openai.js'
import type { ErrorInfo, ExactInput, ProviderAdapter, RouteMatch, UpstreamCredential } from './types.js'
import { serverApiKey } from './types.js'

/**
 * Anthropic's Messages API: `POST /v1/messages`, streamed or not, is metered; token counting and every
 * model read pass through free. Usage, stream events and error bodies in Anthropic's wire format.
 */

const MESSAGES_PATH = '/v1/messages'
const COUNT_PATH = '/v1/messages/count_tokens'
const FREE_POSTS = new Set([COUNT_PATH])
/** The only reads forwarded: `GET /v1/models` and `/v1/models/{id}` (never batches, files or results). */
const MODEL_READS = /^\/v1\/models(?:\/[^/]+)?$/
/** The fields of a Messages body that `count_tokens` accepts (it refuses the others, e.g. max_tokens). */
const COUNTED_FIELDS = ['model', 'messages', 'system', 'tools', 'tool_choice', 'thinking', 'mcp_servers'] as const

/**
 * The system prompt Anthropic adds when a request has tools: at most 530 tokens (Claude 3 Opus; Claude 4
 * models 346). A request without tools gets none: its JSON wrappers outweigh the message delimiters.
 */
export const TOOL_USE_PROMPT_TOKENS = 530

/**
 * Input tokens an Anthropic-defined tool adds beyond its few bytes of JSON: its real definition (and, for
 * computer use, a system prompt) lives server-side. Published: bash 245, text editor 700, computer use
 * 735 + up to 499 of system prompt. Other server tools (web search, web fetch, code execution, memory,
 * MCP toolsets) publish no figure and get an allowance; the results they fetch are billed on top.
 */
const TOOL_OVERHEAD_TOKENS: ReadonlyArray<readonly [prefix: string, tokens: number]> = [
  ['bash_', 245],
  ['text_editor_', 700],
  ['computer_', 735 + 499],
]
const OTHER_TOOL_OVERHEAD_TOKENS = 1024

// Extended thinking needs 1,024 ≤ budget_tokens < max_tokens.
const MIN_THINKING_BUDGET = 1024

/** The proxy key: the `lp-` value of `x-api-key` (SDK 0.x) or `Authorization: Bearer` (SDK 1.x), else whichever came. */
function readAnthropicKey(headers: IncomingHttpHeaders): string | null {
  const sent = [headerValue(headers, 'x-api-key'), bearerToken(headers)]
  return sent.find((value) => value !== null && isProxyKey(value)) ?? sent.find((value) => value !== null) ?? null
}

/** Extended thinking is on (`thinking: {type: "enabled", …}`). */
function thinkingEnabled(body: Json): boolean {
  return isObject(body.thinking) && body.thinking.type === 'enabled'
}

/** `max_tokens`: required, a whole number; 0 only warms the prompt cache and generates nothing. */
function readMaxTokens(body: Json): number {
  const value = body.max_tokens
  if (value === undefined || value === null) throw invalidRequest("'max_tokens' is required by the Anthropic Messages API")
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidRequest("'max_tokens' must be a non-negative integer")
  }
  return value
}

/** Input tokens the request's Anthropic-defined tools add beyond their JSON. */
export function toolOverheadTokens(tools: Elements | null): number {
  if (tools === null) return 0
  let total = 0
  for (let i = 0; i < tools.length; i++) {
    // Client tools carry their whole definition in the body: no `type`, or `custom`.
    const type = tools.member(i, 'type')
    if (typeof type !== 'string' || type === 'custom') continue
    total += TOOL_OVERHEAD_TOKENS.find(([prefix]) => type.startsWith(prefix))?.[1] ?? OTHER_TOOL_OVERHEAD_TOKENS
  }
  return total
}

/**
 * Anthropic's error shape with the Loopers code as `error.type`, budget details beside it, and both again
 * in `error.details` (`error_code` there is what @anthropic-ai/sdk exposes as `APIError.errorCode`).
 */
function anthropicErrorBody(error: ErrorInfo): Json {
  return {
    type: 'error',
    error: {
      ...error.details,
      type: error.code,
      message: error.message,
      details: { ...error.details, error_code: error.code },
    },
  }
}

/** The query string to forward: as sent, minus any parameter carrying a proxy key. */
function upstreamQuery(query: string): string {
  if (query.length === 0 || !query.includes('lp-')) return query
  const params = new URLSearchParams(query)
  for (const [name, value] of [...params]) if (isProxyKey(value)) params.delete(name, value)
  return params.toString()
}

/** True when a server tool (web search, web fetch, code execution…) feeds content the count cannot see. */
function fetchesContent(tools: Elements | null): boolean {
  if (tools === null) return false
  for (let i = 0; i < tools.length; i++) {
    const type = tools.member(i, 'type')
    if (typeof type === 'string' && type !== 'custom' && !TOOL_OVERHEAD_TOKENS.some(([p]) => type.startsWith(p))) return true
  }
  return false
}

/**
 * Asks `count_tokens` (free) for the input the request holds, tool prompts and media included; null when
 * server tools fetch content the count cannot see (the bound's allowance stands). The count body is the
 * request's own counted members, as sent.
 */
function anthropicCount(body: Json): ExactInput | null {
  if (fetchesContent(elementsOf(body, 'tools')) || body.mcp_servers != null) return null
  return {
    kind: 'endpoint',
    path: COUNT_PATH,
    body: { kind: 'members', open: '{', extra: [], fields: COUNTED_FIELDS, close: '}' },
    read: (json) => (isObject(json) ? readTokens(json.input_tokens) : null),
  }
}

function readTokens(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null
}

/** Anthropic: `x-api-key` or Bearer auth, the Messages API metered, token counting and GETs free. */
export function createAnthropicAdapter(options: { baseUrl: string; apiKey: string | null }): ProviderAdapter {
  const serverCredential = serverApiKey(options.apiKey)
  return {
    id: 'anthropic',
    readKey: (headers) => readAnthropicKey(headers),
    findRoute(method, path) {
      return method === 'POST' && path === MESSAGES_PATH ? { operation: 'messages', pathModel: null, pathStream: null } : null
    },
    isFree: (method, path) => isModelRead(method, path, MODEL_READS) || (method === 'POST' && FREE_POSTS.has(path)),
    // Claude 4 streams a summary of its thinking but bills all of it; without thinking there is nothing hidden.
    hidesReasoning: (_route, body, modelHidesReasoning) => modelHidesReasoning && thinkingEnabled(body),
    describe(_route, body) {
      const model = requireModel(body)
      // `thinking.budget_tokens` is part of max_tokens, so max_tokens bounds all output.
      return { model, stream: readFlag(body, 'stream'), maxOutputTokens: readMaxTokens(body), choices: 1 }
    },
    referencedInput: (_route, body, headers) => anthropicReferencedInput(body, headers),
    boundInputTokens(_route, body, raw, tokensPerMedia, scan) {
      const tools = elementsOf(body, 'tools')
      const hasTools = tools !== null && tools.length > 0
      return boundInputTokens(raw, body, tokensPerMedia, hasTools ? TOOL_USE_PROMPT_TOKENS + toolOverheadTokens(tools) : 0, scan?.mediaParts)
    },
    exactInput: (_route, _path, body) => anthropicCount(body),
    prepareBody(_route, body, _facts, maxOutputTokens) {
      if (maxOutputTokens === null) return false
      const cap = Math.max(1, maxOutputTokens)
      // Only ever lowered: a cache pre-warming request (max_tokens 0) stays one.
      if (typeof body.max_tokens === 'number' && body.max_tokens <= cap) return false
      body.max_tokens = cap
      const thinking = body.thinking
      if (isObject(thinking) && typeof thinking.budget_tokens === 'number' && thinking.budget_tokens >= cap && cap > MIN_THINKING_BUDGET) {
        body.thinking = { ...thinking, budget_tokens: cap - 1 }
      }
      return true
    },
    readClientCredential(headers): UpstreamCredential | null {
      const sent = [headerValue(headers, 'x-api-key'), bearerToken(headers)]
      const value = sent.find((candidate) => candidate !== null && !isProxyKey(candidate))
      return value == null ? null : { kind: 'apiKey', value }
    },
    defaultCredential: () => serverCredential,
    buildUpstream(ctx) {
      const headers = forwardableRequestHeaders(ctx.headers)
      const credential = ctx.credential
      if (credential?.kind === 'apiKey' && !isProxyKey(credential.value)) {
        // A key the client sent as a bearer token (path auth: SDK 1.x keys, OAuth tokens) goes on as one.
        if (bearerToken(ctx.headers) === credential.value) headers.authorization = `Bearer ${credential.value}`
        else headers['x-api-key'] = credential.value
      }
      return { url: upstreamUrl(options.baseUrl, ctx.path, upstreamQuery(ctx.query)), headers, body: ctx.body }
    },
    usageFromBody: (_route, json) => (isObject(json) ? messageUsage(json.usage) : null),
    usageMembers: ['usage'],
    createStreamParser: (_route, counter) => createMessagesStreamParser(counter),
    loopShape: () => messagesShape,
    cutoffFrame(_route: RouteMatch, error: ErrorInfo) {
      // @anthropic-ai/sdk throws an APIError for any `event: error` (core/streaming: fromSSEResponse).
      return Buffer.from(`event: error\ndata: ${JSON.stringify(anthropicErrorBody(error))}\n\n`)
    },
    errorBody: anthropicErrorBody,
  }
}
