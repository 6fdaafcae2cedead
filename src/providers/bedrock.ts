import type { IncomingHttpHeaders } from 'node:http'
import { invalidRequest } from '../errors.js'
import { invokeShape, messagesShape } from '../loop/shapes/messages.js'
import { bearerToken, forwardableRequestHeaders, headerValue } from '../http/headers.js'
import { elementsOf } from '../http/json-elements.js'
import { upstreamUrl } from '../http/upstream-url.js'
import { encodeEventStreamMessage } from '../stream/event-stream.js'
import { boundInputTokens, PRIMING_TOKENS } from '../tokens/bound.js'
import { isObject, readPositiveInt, type Json } from './body.js'
import {
  converseUsage,
  isEmbeddingModel,
  NATIVE_USAGE_MEMBERS,
  nativeBodyUsage,
  readNativeCap,
  readNativeChoices,
  writeNativeCap,
  writePath,
} from './bedrock-native.js'
import { createBedrockStreamParser } from './bedrock-stream.js'
import { bedrockReferencedInput } from './hosted-tools.js'
import { signRequest } from './sigv4.js'
import type { ErrorInfo, ExactInput, ProviderAdapter, RouteMatch, Usage, UpstreamCredential } from './types.js'
import { serverApiKey } from './types.js'

/**
 * AWS Bedrock runtime: InvokeModel (model-native bodies), Converse, and their streaming forms.
 * The proxy key arrives as a Bedrock API key (`Authorization: Bearer lp-…`) or as the access key id
 * of the AWS SDK's SigV4 header (whose signature the proxy cannot and need not check). Upstream
 * requests are signed with SigV4 over the exact bytes sent, or carry a Bedrock API key.
 */

type Operation = 'invoke' | 'invoke-stream' | 'converse' | 'converse-stream'

const OPERATIONS = new Map<string, Operation>([
  ['invoke', 'invoke'],
  ['invoke-with-response-stream', 'invoke-stream'],
  ['converse', 'converse'],
  ['converse-stream', 'converse-stream'],
])
// The model id is one path segment; the SDK percent-encodes `:` and an ARN's `/` inside it.
const MODEL_ROUTE = /^\/model\/([^/]+)\/([a-z-]+)$/
const SIGV4_ACCESS_KEY = /^AWS4-HMAC-SHA256\s.*?Credential=([^/,\s]+)\//i
// The regional AWS endpoint (the default base URL); its region follows the signing credential's.
const REGIONAL_ENDPOINT = /^https:\/\/bedrock-runtime(-fips)?\.[a-z0-9-]+\.amazonaws\.com$/
const SERVICE = 'bedrock'

const CONVERSE_CAP = ['inferenceConfig', 'maxTokens'] as const

/** `x-amzn-errortype` per status: the AWS SDK picks the typed exception from it. */
const ERROR_TYPES: Record<number, string> = {
  400: 'ValidationException',
  401: 'UnrecognizedClientException',
  403: 'AccessDeniedException',
  404: 'ResourceNotFoundException',
  413: 'ValidationException',
  429: 'ThrottlingException',
  503: 'ServiceUnavailableException',
  504: 'ModelTimeoutException',
}

/** Stream exception events both Bedrock stream unions model, so the SDK throws the typed error. */
const STREAM_EXCEPTIONS: Record<number, string> = {
  400: 'validationException',
  429: 'throttlingException',
  503: 'serviceUnavailableException',
}

/** Configuration the Bedrock adapter needs: upstream base URL and the server-held credentials. */
interface BedrockOptions {
  baseUrl: string
  /** LOOPERS_BEDROCK_API_KEY, preferred over `aws` when both are set. */
  apiKey: string | null
  aws: { accessKeyId: string; secretAccessKey: string; sessionToken: string | null } | null
  /** AWS_REGION: the signing region of the server-held AWS credentials. */
  region: string
}

/** True when the request defines tools: Converse `toolConfig.tools`, or a native body's `tools`. */
function hasTools(route: RouteMatch, body: Json): boolean {
  const tools = isConverse(route) ? elementsOf(body, 'toolConfig', 'tools') : elementsOf(body, 'tools')
  return tools !== null && tools.length > 0
}

/** Converse fields CountTokens accepts under `input.converse`. */
const CONVERSE_COUNTED = ['messages', 'system', 'toolConfig', 'additionalModelRequestFields'] as const

/**
 * Asks CountTokens (`POST /model/{id}/count-tokens`, free) for the input the request holds: a Converse
 * request's messages, or an InvokeModel body as sent (base64). Models without CountTokens answer an
 * error, and the bound stands.
 */
function bedrockCount(route: RouteMatch): ExactInput | null {
  const modelId = route.pathModel
  if (modelId === null || (!isConverse(route) && isEmbeddingModel(modelId))) return null
  return {
    kind: 'endpoint',
    path: `/model/${encodeURIComponent(modelId)}/count-tokens`,
    // `{"input":{"converse":{…the counted members…}}}` or `{"input":{"invokeModel":{"body":"<base64 of the body>"}}}`.
    body: isConverse(route)
      ? { kind: 'members', open: '{"input":{"converse":{', extra: [], fields: CONVERSE_COUNTED, close: '}}}' }
      : { kind: 'base64', open: '{"input":{"invokeModel":{"body":"', close: '"}}}' },
    read: (json) => (isObject(json) && typeof json.inputTokens === 'number' && Number.isSafeInteger(json.inputTokens) ? json.inputTokens : null),
  }
}

/** The server-held SigV4 credentials (AWS_*) as a credential, made once; null when none are set. */
function awsCredential(options: BedrockOptions): UpstreamCredential | null {
  if (options.aws === null) return null
  const { accessKeyId, secretAccessKey, sessionToken } = options.aws
  return { kind: 'aws', accessKeyId, secretAccessKey, region: options.region, ...(sessionToken === null ? {} : { sessionToken }) }
}

/** The Bedrock runtime adapter; shared code reaches it only through the ProviderAdapter members. */
export function createBedrockAdapter(options: BedrockOptions): ProviderAdapter {
  const serverCredential = serverApiKey(options.apiKey) ?? awsCredential(options)
  return {
    id: 'bedrock',
    readKey: (headers) => bearerToken(headers) ?? sigV4AccessKey(headers),
    findRoute(method, path) {
      const match = method === 'POST' ? MODEL_ROUTE.exec(path) : null
      const operation = OPERATIONS.get(match?.[2] ?? '')
      if (match === null || operation === undefined) return null
      const modelId = decodeModelId(match[1] ?? '')
      return modelId === null ? null : { operation, pathModel: modelId, pathStream: operation.endsWith('-stream') }
    },
    // The runtime host has no model reads (those live on the control-plane host), and its other GETs list
    // async jobs of the whole account: no GET is forwarded. Bedrock does not charge for CountTokens.
    isFree: (method, path) => method === 'POST' && /^\/model\/[^/]+\/count-tokens$/.test(path),
    describe(route, body) {
      const model = route.pathModel ?? ''
      const stream = route.pathStream === true
      if (isConverse(route)) {
        const cap = readPositiveInt(isObject(body.inferenceConfig) ? body.inferenceConfig : {}, 'maxTokens')
        // A model-native cap in additionalModelRequestFields may reach the model too: the larger one bounds.
        const native = nativeCapOf(model, body.additionalModelRequestFields)
        return { model, stream, maxOutputTokens: cap === null ? null : Math.max(cap, native ?? 0), choices: 1 }
      }
      if (isEmbeddingModel(model)) return { model, stream, maxOutputTokens: 0, choices: 1 }
      const choices = readNativeChoices(body)
      const perChoice = readNativeCap(model, body)
      return { model, stream, maxOutputTokens: perChoice === null ? null : perChoice * choices, choices }
    },
    referencedInput: (_route, body, headers) => bedrockReferencedInput(body, headers),
    // Tool-use system prompts add tokens beyond the body; without tools the JSON outweighs chat templates.
    boundInputTokens: (route, body, raw, tokensPerMedia, scan) => boundInputTokens(raw, body, tokensPerMedia, hasTools(route, body) ? PRIMING_TOKENS : 0, scan?.mediaParts),
    exactInput: (route) => bedrockCount(route),
    prepareBody(route, body, facts, maxOutputTokens) {
      if (maxOutputTokens === null || facts.maxOutputTokens === 0) return false
      const perChoice = Math.max(1, Math.floor(maxOutputTokens / facts.choices))
      if (isConverse(route)) {
        writePath(body, CONVERSE_CAP, perChoice)
        const extra = body.additionalModelRequestFields
        if (isObject(extra) && nativeCapOf(facts.model, extra) !== null) writeNativeCap(facts.model, extra, perChoice)
      } else {
        writeNativeCap(facts.model, body, perChoice)
      }
      return true
    },
    readClientCredential(headers): UpstreamCredential | null {
      // Under path auth a Bedrock API key is usable upstream; a SigV4 header is not (no secret in it).
      const token = bearerToken(headers)
      return token === null ? null : { kind: 'apiKey', value: token }
    },
    defaultCredential: () => serverCredential,
    buildUpstream(ctx) {
      const credential = ctx.credential
      const base = credential?.kind === 'aws' ? regionalBase(options.baseUrl, credential.region) : options.baseUrl
      // Model ids are ARNs whose `/` the SDK percent-encodes inside their one path segment.
      const url = new URL(upstreamUrl(base, ctx.path, forwardedQuery(ctx.query).slice(1), { allowEncodedSlash: true }))
      const headers = forwardableRequestHeaders(ctx.headers)
      for (const name of Object.keys(headers)) {
        // The client's own signing and SDK attempt metadata; the proxy signs its own request.
        if (name.startsWith('x-amz-') || name.startsWith('amz-sdk-')) delete headers[name]
      }
      if (credential?.kind === 'apiKey') {
        headers.authorization = `Bearer ${credential.value}`
      } else if (credential?.kind === 'aws') {
        headers.host = url.host
        const { accessKeyId, secretAccessKey, sessionToken, region } = credential
        // Every operation forwarded to Bedrock, free CountTokens included, is a POST.
        const method = 'POST'
        const signed = signRequest(
          { method, path: url.pathname, query: url.search.slice(1), headers, body: ctx.body, ...(ctx.bodySha256 === undefined ? {} : { bodySha256: ctx.bodySha256 }) },
          { credentials: { accessKeyId, secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) }, region, service: SERVICE, date: new Date(), contentSha256: true },
        )
        return { url: url.href, headers: signed, body: ctx.body }
      }
      return { url: url.href, headers, body: ctx.body }
    },
    usageFromBody(route, json) {
      return isConverse(route) ? (isObject(json) ? converseUsage(json.usage) : null) : nativeBodyUsage(json)
    },
    // Converse reads only `usage`, one of them.
    usageMembers: NATIVE_USAGE_MEMBERS,
    usageFromHeaders: (_route, headers) => usageFromHeaders(headers),
    loopShape: (route) => (isConverse(route) ? messagesShape : isEmbeddingModel(route.pathModel ?? '') ? null : invokeShape),
    createStreamParser: (route, counter) => createBedrockStreamParser(isConverse(route) ? 'converse' : 'invoke', counter),
    cutoffFrame(_route, error) {
      const exceptionType = STREAM_EXCEPTIONS[error.status] ?? 'internalServerException'
      // The SDK keeps only `message` of a stream exception's payload, so the code leads it there too.
      const payload = { ...errorBody(error), message: `${error.code}: ${error.message}` }
      return encodeEventStreamMessage(
        { ':message-type': 'exception', ':exception-type': exceptionType, ':content-type': 'application/json' },
        Buffer.from(JSON.stringify(payload)),
      )
    },
    errorBody,
    errorHeaders: (error) => ({ 'x-amzn-errortype': ERROR_TYPES[error.status] ?? (error.status >= 500 ? 'InternalServerException' : 'ValidationException') }),
  }
}

/** The model-native output cap inside Converse's `additionalModelRequestFields`, or null. */
function nativeCapOf(model: string, fields: unknown): number | null {
  return isObject(fields) ? readNativeCap(model, fields) : null
}

function isConverse(route: RouteMatch): boolean {
  return route.operation === 'converse' || route.operation === 'converse-stream'
}

/** AWS's error body (`message`) with the Loopers code and budget details beside it. */
function errorBody(error: ErrorInfo): Json {
  return { message: error.message, code: error.code, ...error.details }
}

/** The access key id of a SigV4 `Authorization` header, or null. */
function sigV4AccessKey(headers: IncomingHttpHeaders): string | null {
  const value = headerValue(headers, 'authorization')
  return value === null ? null : (SIGV4_ACCESS_KEY.exec(value)?.[1] ?? null)
}

/** The model id of a path segment, percent-decoded; null when the segment is not a plausible id. */
function decodeModelId(segment: string): string | null {
  let id: string
  try {
    id = decodeURIComponent(segment)
  } catch {
    throw invalidRequest('the model id in the path is not valid percent-encoding')
  }
  return id === '' || id === '.' || id === '..' ? null : id
}

/** The query without presigned-URL auth parameters (`X-Amz-Credential` would carry the proxy key). */
function forwardedQuery(query: string): string {
  if (query === '') return ''
  const kept = query.split('&').filter((part) => part !== '' && !/^x-amz-/i.test(part))
  return kept.length === 0 ? '' : `?${kept.join('&')}`
}

function regionalBase(baseUrl: string, region: string): string {
  const match = REGIONAL_ENDPOINT.exec(baseUrl)
  return match === null ? baseUrl : `https://bedrock-runtime${match[1] ?? ''}.${region}.amazonaws.com`
}

/** InvokeModel's token-count response headers, which every model family gets; null when absent. */
function usageFromHeaders(headers: Record<string, string | string[] | undefined>): Usage | null {
  const count = (name: string): number | undefined => {
    const raw = headers[name]
    const value = Number(Array.isArray(raw) ? raw[0] : raw)
    return raw !== undefined && Number.isSafeInteger(value) && value >= 0 ? value : undefined
  }
  const inputTokens = count('x-amzn-bedrock-input-token-count')
  if (inputTokens === undefined) return null
  return {
    inputTokens,
    outputTokens: count('x-amzn-bedrock-output-token-count') ?? 0,
    cachedInputTokens: count('x-amzn-bedrock-cache-read-input-token-count') ?? 0,
    cacheWriteTokens: count('x-amzn-bedrock-cache-write-input-token-count') ?? 0,
  }
}
