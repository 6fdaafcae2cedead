import type { IncomingHttpHeaders } from 'node:http'
import { invalidRequest } from '../errors.js'
import { isProxyKey } from '../keys.js'
import { geminiShape } from '../loop/shapes/gemini.js'
import { forwardableRequestHeaders, headerValue } from '../http/headers.js'
import { elementsOf } from '../http/json-elements.js'
import { upstreamUrl } from '../http/upstream-url.js'
import { createJsonArrayFramer, type JsonArrayState } from '../stream/json-array.js'
import { createSseFramer } from '../stream/sse.js'
import { boundInputTokens, MAX_MEDIA_WALK_NODES, PRIMING_TOKENS, type BodyScan } from '../tokens/bound.js'
import type { OutputCounter } from '../tokens/output-counter.js'
import { isObject, readCount, type Json } from './body.js'
import { geminiReferencedInput } from './hosted-tools.js'
import type { ErrorInfo, ExactInput, ProviderAdapter, RequestFacts, RouteMatch, StreamParser, UpstreamCredential, Usage } from './types.js'
import { serverApiKey } from './types.js'

/**
 * Google's Generative Language API (Gemini): `generateContent`, `streamGenerateContent` (SSE with
 * `alt=sse`, else a streamed JSON array), `embedContent` and `batchEmbedContents` on `models/…` and
 * `tunedModels/…` under v1, v1beta and v1alpha are metered; `countTokens` and model reads pass through free.
 * The pricing key is the model id without `models/`; a tuned model keeps its `tunedModels/…` name (its
 * base model is not in the request), so it is priced by a pricing-file entry of that name or `_fallback`.
 */

const ROUTE = /^\/v1(?:beta|alpha)?\/((?:models|tunedModels)\/[A-Za-z0-9._-]+):([A-Za-z]+)$/
const GENERATE = 'generateContent'
/** The API's default stream: one JSON array whose elements arrive as they are generated. */
const STREAM_ARRAY = 'streamGenerateContent'
const STREAM_SSE = 'streamGenerateContent:sse'
const EMBED = new Set(['embedContent', 'batchEmbedContents'])
const FREE_VERBS = new Set(['countTokens'])
/** The only reads forwarded: `GET /v1beta/models` and `/v1beta/models/{model}` (and v1, v1alpha); never files, caches, batches or tuned models. */
const MODEL_READS = /^\/v1(?:beta|alpha)?\/models(?:\/[A-Za-z0-9._-]+)?$/

/**
 * What a request may read beyond its body (a cached context, a continued generation, uploaded files,
 * server-side tools' results) all counts against one context window; the largest any Gemini model
 * accepts (1.5 Pro) bounds it.
 */
const REFERENCED_CONTEXT_TOKENS = 2_097_152
/** Output tokens one generated image or audio part can cost (an image is 1,290-2,000 tokens). */
const MEDIA_OUTPUT_TOKENS = 4200
/** Structure tokens around a function call or code part beyond its JSON text. */
const PART_OVERHEAD_TOKENS = 8

/** Headers that could hide usage (a field mask) or turn a free GET into a billed call (method override). */
const NOT_FORWARDED = ['x-goog-fieldmask', 'x-http-method-override', 'x-http-method', 'x-method-override']
/** Query parameters never forwarded: the key (replaced by the header) and field masks that could drop usageMetadata. */
const CREDENTIAL_PARAMS = new Set(['key', '$key'])
const FIELD_MASK_PARAMS = new Set(['fields', '$fields'])

const GOOGLE_STATUS: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  413: 'INVALID_ARGUMENT',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
}

/** The stream format the client asked for with `alt` (or `$alt`); throws for one the proxy cannot meter. */
function readAlt(query: URLSearchParams | undefined, stream: boolean): 'json' | 'sse' {
  const values = new Set([...(query?.getAll('alt') ?? []), ...(query?.getAll('$alt') ?? [])])
  if (values.size === 0) return 'json'
  const [alt] = values
  if (values.size > 1 || (alt !== 'json' && !(alt === 'sse' && stream))) {
    throw invalidRequest(`alt=${[...values].join(',')} cannot be metered: send no alt, alt=json, or alt=sse for streamGenerateContent`)
  }
  return alt
}

/** A token count from generationConfig: 0 and absent mean "unset" (protobuf defaults); both spellings at once are refused. */
function readTokenField(config: Json, camel: string, snake: string): number | null {
  if (config[camel] != null && config[snake] != null) throw invalidRequest(`send '${camel}' or '${snake}', not both`)
  const value = config[camel] ?? config[snake]
  if (value === undefined || value === null || value === 0) return null
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw invalidRequest(`'${camel}' must be a non-negative integer`)
  return value
}

/** The request's generationConfig under either JSON spelling (protobuf JSON accepts both), or null. */
function generationConfig(body: Json): { key: string; config: Json } | null {
  if (body.generationConfig != null && body.generation_config != null) throw invalidRequest("send 'generationConfig' or 'generation_config', not both")
  const key = body.generationConfig != null ? 'generationConfig' : 'generation_config'
  const config = body[key]
  if (config == null) return null
  if (!isObject(config)) throw invalidRequest(`'${key}' must be an object`)
  return { key, config }
}

const FUNCTION_DECLARATIONS = ['functionDeclarations', 'function_declarations']

/** True when the request makes the model read content the body does not carry. */
function readsBeyondBody(body: Json, scan?: BodyScan): boolean {
  if (body.cachedContent != null || body.cached_content != null) return true
  if (body.continuationToken != null || body.continuation_token != null) return true
  // Built-in tools (search, URL context, code execution, file search…) feed results back as input.
  const tools = elementsOf(body, 'tools')
  if (tools !== null) for (let i = 0; i < tools.length; i++) if (tools.hasOtherMember(i, FUNCTION_DECLARATIONS)) return true
  // The body's one walk (in the worker, for a big body) already looked for uploaded files.
  return scan === undefined ? hasFileData(body) : scan.fileData
}

/** True when any part references an uploaded file (or the body is too large to walk). */
function hasFileData(body: unknown): boolean {
  const stack: unknown[] = [body]
  let visited = 0
  while (stack.length > 0) {
    const node = stack.pop()
    if (typeof node !== 'object' || node === null) continue
    if (++visited > MAX_MEDIA_WALK_NODES) return true
    const values = Array.isArray(node) ? node : Object.values(node)
    if (!Array.isArray(node) && (isObject((node as Json).fileData) || isObject((node as Json).file_data))) return true
    for (const value of values) if (typeof value === 'object' && value !== null) stack.push(value)
  }
  return false
}

/**
 * Usage from a usageMetadata object: `promptTokenCount` includes cached tokens, tool-use prompts are
 * billed as input, thinking is billed as output. Fields stay undefined when not reported.
 */
function geminiUsage(metadata: unknown): Usage | null {
  if (!isObject(metadata)) return null
  const prompt = readCount(metadata, 'promptTokenCount')
  const cached = readCount(metadata, 'cachedContentTokenCount') ?? 0
  const candidates = readCount(metadata, 'candidatesTokenCount')
  const thoughts = readCount(metadata, 'thoughtsTokenCount')
  const usage: Usage = {}
  if (prompt !== undefined) {
    usage.inputTokens = Math.max(0, prompt - cached) + (readCount(metadata, 'toolUsePromptTokenCount') ?? 0)
    usage.cachedInputTokens = Math.min(cached, prompt)
  }
  if (candidates !== undefined || thoughts !== undefined) usage.outputTokens = (candidates ?? 0) + (thoughts ?? 0)
  return usage
}

/**
 * Watches GenerateContentResponse objects: keeps the latest cumulative usage (each chunk carries one) and
 * counts the parts generated since it, so a chunk without usage is still metered.
 */
class GeminiStreamState {
  usage: Usage = {}
  /** The counter's value when the latest usage arrived: what it counted since then is not in that usage. */
  private countedAtReport = 0

  constructor(readonly counter: OutputCounter) {}

  /** The latest reported running count plus the estimate of what streamed after it. */
  outputTokens(): number {
    const counted = this.counter.tokens()
    if (this.usage.outputTokens === undefined) return counted
    return this.usage.outputTokens + Math.max(0, counted - this.countedAtReport)
  }

  observe(text: string): void {
    let response: unknown
    try {
      response = JSON.parse(text)
    } catch {
      return
    }
    if (!isObject(response)) return
    if (Array.isArray(response.candidates)) {
      for (const candidate of response.candidates) {
        const parts = isObject(candidate) && isObject(candidate.content) ? candidate.content.parts : undefined
        if (Array.isArray(parts)) for (const part of parts) if (isObject(part)) countPart(part, this.counter)
      }
    }
    // Each chunk reports the running totals so far (not a delta), its own parts included: the latest wins.
    const usage = geminiUsage(response.usageMetadata)
    if (usage !== null) {
      this.usage = { ...this.usage, ...usage }
      if (usage.outputTokens !== undefined) this.countedAtReport = this.counter.tokens()
    }
  }
}

/** Counts one generated part: its text (thought summaries included), call and code parts with their framing, media. */
function countPart(part: Json, counter: OutputCounter): void {
  counter.add(part.text)
  if (isObject(part.functionCall)) {
    counter.addTokens(PART_OVERHEAD_TOKENS)
    counter.add(part.functionCall.name)
    counter.add(JSON.stringify(part.functionCall.args ?? {}))
  }
  if (isObject(part.executableCode)) {
    counter.addTokens(PART_OVERHEAD_TOKENS)
    counter.add(part.executableCode.code)
  }
  if (isObject(part.codeExecutionResult)) {
    counter.addTokens(PART_OVERHEAD_TOKENS)
    counter.add(part.codeExecutionResult.output)
  }
  if (isObject(part.inlineData)) counter.addTokens(MEDIA_OUTPUT_TOKENS)
}

function parserFrom(
  framer: { push(chunk: Buffer): Buffer; frames?(chunk: Buffer): Iterable<Buffer>; flush(): Buffer },
  state: GeminiStreamState,
): StreamParser {
  const frames = framer.frames?.bind(framer)
  return {
    push: (chunk) => framer.push(chunk),
    // The SSE framer yields event by event; the JSON-array framer regroups whole reads only.
    ...(frames === undefined ? {} : { frames }),
    flush: () => framer.flush(),
    reported: () => state.usage,
    outputTokens: () => state.outputTokens(),
    // Each chunk's usage report reads the count already (countedAtReport), so a bound would save nothing here.
    outputBound: () => state.outputTokens(),
  }
}

/** Parser for `alt=sse` streams: one `data: {GenerateContentResponse}` event per chunk. */
function createSseParser(counter: OutputCounter): StreamParser {
  const state = new GeminiStreamState(counter)
  return parserFrom(
    createSseFramer((data) => state.observe(data)),
    state,
  )
}

/** Parser for the JSON-array stream; its cutoff keeps the array well-formed after whatever the client has. */
function createArrayParser(counter: OutputCounter): StreamParser {
  const state = new GeminiStreamState(counter)
  // A body that is not an array cannot be read: every byte of it counts as an output token.
  const framer = createJsonArrayFramer(
    (text) => state.observe(text),
    (bytes) => counter.addTokens(bytes.length),
  )
  return { ...parserFrom(framer, state), cutoffFrame: (error, forwarded) => arrayCutoff(error, framer.stateAt(forwarded)) }
}

/** Google's error object, with the Loopers code as a google.rpc.ErrorInfo reason and budget details as its metadata. */
function geminiErrorBody(error: ErrorInfo): Json {
  const metadata: Record<string, string> = {}
  for (const [name, value] of Object.entries(error.details ?? {})) if (value != null) metadata[name] = String(value)
  const status = GOOGLE_STATUS[error.status] ?? (error.status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION')
  const info = { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: error.code, domain: 'loopers', metadata }
  return { error: { code: error.status, message: error.message, status, details: [info] } }
}

/**
 * Ends a cut JSON-array stream with an `{"error":…}` element and `]` so the array stays well-formed;
 * @google/genai throws an ApiError for any element or event with an `error` object and a 4xx/5xx code.
 */
function arrayCutoff(error: ErrorInfo, state: JsonArrayState): Buffer {
  const element = JSON.stringify(geminiErrorBody(error))
  switch (state) {
    case 'before':
      return Buffer.from(`[${element}]\n`)
    case 'open':
      return Buffer.from(`${element}\n]\n`)
    case 'element':
      return Buffer.from(`\n,\r\n${element}\n]\n`)
    case 'closed':
      return Buffer.alloc(0)
    case 'opaque':
      return Buffer.from(`\n${element}\n`)
  }
}

/** The upstream query: the key parameter never leaves (the credential goes in a header); nor do field masks on metered calls. */
function upstreamQuery(raw: string, metered: boolean): string {
  if (raw.length === 0) return ''
  return raw
    .split('&')
    .filter((pair) => {
      let name = pair.split('=', 1)[0] ?? ''
      try {
        name = decodeURIComponent(name.replace(/\+/g, ' '))
      } catch {
        // not valid percent-encoding: compare it as it is
      }
      return !CREDENTIAL_PARAMS.has(name) && !(metered && FIELD_MASK_PARAMS.has(name))
    })
    .join('&')
}

/** The key as the Gemini SDK sends it: `x-goog-api-key`, or `?key=` (curl examples); an `lp-` value wins. */
function sentKeys(headers: IncomingHttpHeaders, query: URLSearchParams): string[] {
  return [headerValue(headers, 'x-goog-api-key'), query.get('key')?.trim() || null].filter((v): v is string => v !== null)
}

/** Fields of a generateContent body that `countTokens` counts (under `generateContentRequest`). */
const COUNTED_FIELDS = ['contents', 'systemInstruction', 'system_instruction', 'tools', 'toolConfig', 'tool_config'] as const

/**
 * Asks `:countTokens` (free) for the input a generateContent request holds, media included; null for
 * embeddings and for requests that read content beyond their body (the bound's allowance stands).
 */
function geminiCount(route: RouteMatch, path: string, body: Json, scan?: BodyScan): ExactInput | null {
  if (EMBED.has(route.operation) || readsBeyondBody(body, scan)) return null
  const colon = path.lastIndexOf(':')
  const slash = path.indexOf('/', 1)
  if (colon < 0 || slash < 0) return null
  const model = JSON.stringify(path.slice(slash + 1, colon))
  return {
    kind: 'endpoint',
    path: `${path.slice(0, colon)}:countTokens`,
    body: { kind: 'members', open: '{"generateContentRequest":{', extra: [`"model":${model}`], fields: COUNTED_FIELDS, close: '}}' },
    read: (json) => (isObject(json) && typeof json.totalTokens === 'number' && Number.isSafeInteger(json.totalTokens) ? json.totalTokens : null),
  }
}

export function createGeminiAdapter(options: { baseUrl: string; apiKey: string | null }): ProviderAdapter {
  const serverCredential = serverApiKey(options.apiKey)
  return {
    id: 'gemini',
    readKey(headers, query) {
      const sent = sentKeys(headers, query)
      return sent.find(isProxyKey) ?? sent[0] ?? null
    },
    findRoute(method, path, query) {
      const match = method === 'POST' ? ROUTE.exec(path) : null
      const resource = match?.[1]
      const verb = match?.[2]
      if (resource === undefined || verb === undefined) return null
      const pathModel = resource.startsWith('models/') ? resource.slice('models/'.length) : resource
      if (verb === GENERATE || EMBED.has(verb)) {
        readAlt(query, false)
        return { operation: verb, pathModel, pathStream: false }
      }
      if (verb !== 'streamGenerateContent') return null
      return { operation: readAlt(query, true) === 'sse' ? STREAM_SSE : STREAM_ARRAY, pathModel, pathStream: true }
    },
    isFree(method, path) {
      if (method === 'GET' || method === 'HEAD') return MODEL_READS.test(path)
      return method === 'POST' && FREE_VERBS.has(ROUTE.exec(path)?.[2] ?? '')
    },
    describe(route, body): RequestFacts {
      const model = route.pathModel
      if (model === null) throw invalidRequest('the model is named by the path: /v1beta/models/{model}:generateContent')
      if (EMBED.has(route.operation)) return { model, stream: false, maxOutputTokens: 0, choices: 1 }
      const found = generationConfig(body)
      const perCandidate = found === null ? null : readTokenField(found.config, 'maxOutputTokens', 'max_output_tokens')
      const choices = (found === null ? null : readTokenField(found.config, 'candidateCount', 'candidate_count')) ?? 1
      // maxOutputTokens caps thinking and answer together, for each candidate.
      return { model, stream: route.pathStream === true, maxOutputTokens: perCandidate === null ? null : perCandidate * choices, choices }
    },
    referencedInput: (_route, body) => geminiReferencedInput(body),
    boundInputTokens(route, body, raw, tokensPerMedia, scan) {
      // Embeddings have no chat template: their body bytes outweigh every token they embed.
      if (EMBED.has(route.operation)) return boundInputTokens(raw, body, tokensPerMedia, 0, scan?.mediaParts)
      // Function declarations are rendered into a tool prompt; without tools the JSON outweighs the turn markers.
      const tools = elementsOf(body, 'tools')
      const bound = boundInputTokens(raw, body, tokensPerMedia, tools !== null && tools.length > 0 ? PRIMING_TOKENS : 0, scan?.mediaParts)
      return readsBeyondBody(body, scan) ? bound + REFERENCED_CONTEXT_TOKENS : bound
    },
    exactInput: (route, path, body, _model, _price, scan) => geminiCount(route, path, body, scan),
    prepareBody(route, body, facts, maxOutputTokens) {
      // Gemini reports usage on every response and stream chunk unasked; only the cap may change.
      if (maxOutputTokens === null || EMBED.has(route.operation)) return false
      const found = generationConfig(body)
      const key = found?.key ?? 'generationConfig'
      const config = found?.config ?? {}
      const field = config.maxOutputTokens == null && config.max_output_tokens != null ? 'max_output_tokens' : 'maxOutputTokens'
      body[key] = { ...config, [field]: Math.max(1, Math.floor(maxOutputTokens / facts.choices)) }
      return true
    },
    readClientCredential(headers, query): UpstreamCredential | null {
      const [key] = sentKeys(headers, query)
      return key === undefined ? null : { kind: 'apiKey', value: key }
    },
    defaultCredential: () => serverCredential,
    buildUpstream(ctx) {
      const headers = forwardableRequestHeaders(ctx.headers)
      for (const name of NOT_FORWARDED) delete headers[name]
      if (ctx.credential?.kind === 'apiKey') headers['x-goog-api-key'] = ctx.credential.value
      const query = upstreamQuery(ctx.query, ctx.route.operation !== 'free')
      return { url: upstreamUrl(options.baseUrl, ctx.path, query), headers, body: ctx.body }
    },
    usageFromBody(_route, json) {
      if (!isObject(json)) return null
      const usage = geminiUsage(json.usageMetadata)
      // A complete answer that reports usage without candidate tokens generated none (a blocked prompt).
      return usage === null ? null : { outputTokens: 0, ...usage }
    },
    usageMembers: ['usageMetadata'],
    loopShape: (route) => (EMBED.has(route.operation) ? null : geminiShape),
    createStreamParser: (route, counter) => (route.operation === STREAM_SSE ? createSseParser(counter) : createArrayParser(counter)),
    cutoffFrame(route: RouteMatch, error: ErrorInfo) {
      // The array parser ends its own streams knowing what was forwarded; without it, assume an element was.
      if (route.operation !== STREAM_SSE) return arrayCutoff(error, 'element')
      return Buffer.from(`data: ${JSON.stringify(geminiErrorBody(error))}\n\n`)
    },
    errorBody: geminiErrorBody,
  }
}
