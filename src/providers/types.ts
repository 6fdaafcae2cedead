import type { IncomingHttpHeaders } from 'node:http'
import type { LoopShape } from '../loop/types.js'
import type { OutputCounter } from '../tokens/output-counter.js'
import type { Price } from '../pricing/types.js'
import type { BodyScan } from '../tokens/bound.js'

/** The six upstreams Loopers fronts; the first path segment of every proxied route. */
export const PROVIDER_IDS = ['openai', 'anthropic', 'gemini', 'bedrock', 'azure', 'mistral'] as const
export type ProviderId = (typeof PROVIDER_IDS)[number]

export function isProviderId(value: string): value is ProviderId {
  return providerIdOf(value) !== null
}

/**
 * The id `value` names, as the table's own string; null when it names none. A URL's segment is a new string
 * each request: the table's is compared, and used as a property name, by identity downstream.
 */
export function providerIdOf(value: string): ProviderId | null {
  for (const id of PROVIDER_IDS) if (id === value) return id
  return null
}

/** A metered operation recognised by an adapter, e.g. OpenAI `chat` or Gemini `generateContent`. */
export interface RouteMatch {
  /** Adapter-defined operation name, stable for logs and metrics. */
  operation: string
  /** Model named by the path (Gemini, Bedrock, Azure deployment); null when the body names it. */
  pathModel: string | null
  /** Streaming decided by the path (Gemini `:streamGenerateContent`, Bedrock `-stream`); null when the body decides. */
  pathStream: boolean | null
}

/** Input and paid tool calls a request adds beyond its body. */
export interface ReferencedInput {
  /** Input tokens the provider may read or generate beyond the body (hosted tools' results), 0 when none. */
  tokens: number
  /** The most calls the request allows each hosted tool with a per-call fee (`tool_fees` in the pricing table). */
  toolCalls: Record<string, number>
}

/** What the proxy needs to know about a request before it reserves. */
export interface RequestFacts {
  /** The pricing key: the model id, or the Azure deployment name. */
  model: string
  stream: boolean
  /** Output tokens the request may produce across all choices, or null when the body sets no cap. */
  maxOutputTokens: number | null
  /** How many completions one request yields (`n`); caps are per choice, so output bounds multiply by it. */
  choices: number
}

/**
 * Token usage normalised across providers. Undefined means the provider did not report the field.
 * `inputTokens` excludes cached and cache-write tokens; `outputTokens` includes reasoning/thinking tokens.
 */
export interface Usage {
  inputTokens?: number
  cachedInputTokens?: number
  cacheWriteTokens?: number
  outputTokens?: number
}

/** Incremental reader of one upstream stream body. It never changes bytes: it only watches them. */
export interface StreamParser {
  /**
   * Feeds upstream bytes. Returns the bytes of the frames completed by this chunk (possibly empty),
   * so the meter forwards whole frames only and a cutoff frame never lands inside another frame.
   */
  push(chunk: Buffer): Buffer
  /**
   * Optional, preferred by the meter: like `push`, but yields the completed frames one at a time and
   * counts each just before yielding it, so a read holding several events can be cut between them.
   */
  frames?(chunk: Buffer): Iterable<Buffer>
  /** Remaining bytes of an unfinished frame at end of stream (forwarded as they are). */
  flush(): Buffer
  /** Usage reported by the provider so far (cumulative); fields stay undefined until reported. */
  reported(): Usage
  /**
   * Output tokens generated so far, what the cut and every settlement without reported usage use: the
   * provider's reported count once it reports one (a running count plus what streamed after it), else the
   * `OutputCounter`'s count of the deltas. Reasoning the stream does not show is never in it.
   */
  outputTokens(): number
  /**
   * Output tokens so far or more, known without tokenizing what waits (never below `outputTokens()`), for the
   * meter's check before each frame; it asks `outputTokens()` only when this passes the hold.
   */
  outputBound(): number
  /**
   * Optional: the bytes that end this stream when it is cut, for formats whose ending depends on what the
   * client already has (Gemini's JSON array needs `[`, `,` or nothing before its error element).
   * `forwardedBytes`: how many bytes of the frames `push`/`flush` returned reached the client.
   * Absent: the adapter's `cutoffFrame` is used.
   */
  cutoffFrame?(error: ErrorInfo, forwardedBytes: number): Buffer
}

/** Where and how to send the upstream request. Credential injection sees the final body (SigV4 signs it). */
export interface UpstreamRequest {
  url: string
  headers: Record<string, string>
  body: Buffer
}

/** What an adapter receives to build the upstream request. */
interface UpstreamContext {
  route: RouteMatch
  /** The path after `/{provider}`, without query string, as the client sent it. */
  path: string
  /** The raw query string without `?` (may be empty). Adapters drop credential parameters. */
  query: string
  headers: IncomingHttpHeaders
  /** Upstream credential chosen by the proxy (header, path-auth SDK key, or environment); null if none. */
  credential: UpstreamCredential | null
  body: Buffer
  /** Hex SHA-256 of `body`, given for a big body signed with an AWS credential (hashed in slices, off the critical path). */
  bodySha256?: string
}

export type UpstreamCredential =
  | { kind: 'apiKey'; value: string }
  | { kind: 'aws'; accessKeyId: string; secretAccessKey: string; sessionToken?: string; region: string }

/**
 * The server-held API key (LOOPERS_<PROVIDER>_API_KEY) as a credential, made once per adapter: a credential is
 * read, never edited, so every request without its own shares it. Null when none is set.
 */
export function serverApiKey(apiKey: string | null): UpstreamCredential | null {
  return apiKey === null ? null : { kind: 'apiKey', value: apiKey }
}

/**
 * An exact count of a request's input, as its provider allows:
 * - `local`: in the proxy's counting worker, tiktoken over an OpenAI-format body (`factor` 1), or an o200k
 *   estimate of a tokenizer the proxy cannot run (`factor` > 1, chosen so it rarely undercounts). Media
 *   parts are priced apart, per part.
 * - `endpoint`: the provider's free counting endpoint, sent through `buildUpstream` (the request's own
 *   credential and base URL) to `path` with `body`; `read` takes the count from its JSON answer. It
 *   counts everything the request holds, media included.
 */
export type ExactInput =
  | {
      kind: 'local'
      counter: 'chat' | 'responses' | 'embeddings'
      model: string
      factor: number
      /** Count with o200k and cl100k and keep the larger: the model's encoding is not known (an Azure deployment name). */
      anyEncoding?: boolean
    }
  | { kind: 'endpoint'; path: string; body: CountBody; read(json: unknown): number | null }

/**
 * The JSON body of a count request, assembled from the request's own bytes (a big body's top-level members
 * are copied as sent, never parsed on the event loop):
 * - `members`: `open`, then `extra` (member texts such as `"model":"…"`) and each of `fields` the request
 *   has as `"field":<its value as sent>`, comma-separated, then `close`.
 * - `base64`: `open`, the request body as forwarded in base64, then `close`.
 */
export type CountBody =
  | { kind: 'members'; open: string; extra: readonly string[]; fields: readonly string[]; close: string }
  | { kind: 'base64'; open: string; close: string }

/** Proxy-produced error, rendered in the provider's own shape. */
export interface ErrorInfo {
  status: number
  code: string
  message: string
  /** Extra fields for budget errors (window, limit_usd, spent_usd, resets_at). */
  details?: Record<string, unknown>
}

/**
 * Everything Loopers knows about one provider. Shared code never branches on the provider id;
 * a need that is not expressible here is a missing member of this interface.
 */
export interface ProviderAdapter {
  id: ProviderId
  /** The proxy key from where this provider's SDK sends its key; null when absent. */
  readKey(headers: IncomingHttpHeaders, query: URLSearchParams): string | null
  /**
   * Matches a metered POST operation; null means the path is not metered (and so refused). `query` is the
   * request's query string (Gemini's `alt` picks the stream format); throws ProxyError(invalid_request)
   * for a query it cannot meter.
   */
  findRoute(method: string, path: string, query?: URLSearchParams): RouteMatch | null
  /** True for requests forwarded without a reservation because they cost nothing (model lists, token counts). */
  isFree(method: string, path: string): boolean
  /** Reads model, stream flag and output cap; throws ProxyError(invalid_request) on a body it cannot meter. */
  describe(route: RouteMatch, body: Record<string, unknown>): RequestFacts
  /**
   * Optional: whether this request bills reasoning its stream does not show, so a stream cannot be
   * metered from deltas and must hold its worst case up front. Absent: the model's `hiddenReasoning` price flag.
   */
  hidesReasoning?(route: RouteMatch, body: Record<string, unknown>, modelHidesReasoning: boolean): boolean
  /**
   * Optional: what the request makes the provider read or run beyond the body that the shared check of
   * fetched parts (`scanBody`) does not see: hosted tools and stored prompts. Throws
   * ProxyError(invalid_request) for what the proxy cannot price: a price tier other than the standard one,
   * a hosted tool whose calls are not bounded or whose fee is not per call.
   */
  referencedInput?(route: RouteMatch, body: Record<string, unknown>, headers: IncomingHttpHeaders): ReferencedInput
  /**
   * Cheap upper bound of input tokens (never below the true count). `scan`: the body's one walk (media parts,
   * uploaded-file references); absent, the adapter walks `body` itself.
   */
  boundInputTokens(route: RouteMatch, body: Record<string, unknown>, raw: Buffer, tokensPerMedia: number, scan?: BodyScan): number
  /**
   * How to count this request's input exactly when its bound does not fit the budget, or null when
   * nothing counts better than the bound (content the body only references, an unknown format).
   * `path` is the provider path the request was sent to; `price` is the request's price entry, whose
   * `model` names the OpenAI model an Azure deployment runs. `scan` as for `boundInputTokens`. It reads only
   * small top-level members of `body`: a count request copies the others as sent (`CountBody`).
   */
  exactInput(route: RouteMatch, path: string, body: Record<string, unknown>, model: string, price?: Price, scan?: BodyScan): ExactInput | null
  /**
   * Rewrites the body before forwarding: forces usage reporting on streams and, when `maxOutputTokens`
   * is given, lowers the cap to it (per choice). Returns true if the body changed.
   */
  prepareBody(route: RouteMatch, body: Record<string, unknown>, facts: RequestFacts, maxOutputTokens: number | null): boolean
  /** The upstream credential as the client sent it in the SDK's usual place (used under path auth). */
  readClientCredential(headers: IncomingHttpHeaders, query: URLSearchParams): UpstreamCredential | null
  /** Server-held credential from configuration, or null. */
  defaultCredential(): UpstreamCredential | null
  /** Builds URL and headers for the upstream, injecting the credential; never forwards the proxy key. */
  buildUpstream(ctx: UpstreamContext): UpstreamRequest
  /**
   * Usage from a complete non-streaming JSON response; null if it reports none. `json` holds the response's
   * top-level members `usageMembers` names (../http/json-pick.ts): the rest of the response is not parsed.
   */
  usageFromBody(route: RouteMatch, json: unknown): Usage | null
  /** Every top-level member of a complete response `usageFromBody` reads, on any route. */
  usageMembers: readonly string[]
  /** A fresh parser for one streamed response body; `counter` counts the generated text it sees. */
  createStreamParser(route: RouteMatch, counter: OutputCounter): StreamParser
  /** The bytes that end a stream cut at the budget, in this provider's stream format. */
  cutoffFrame(route: RouteMatch, error: ErrorInfo): Buffer
  /** Error response body in this provider's shape (content-type is JSON). */
  errorBody(error: ErrorInfo): unknown
  /**
   * Optional: true when an upstream error response still bills the request's input (Azure charges prompts
   * its content filter refused); the proxy then charges the input it reserved. Absent or false: nothing is billed.
   */
  errorBillsInput?(route: RouteMatch, status: number, json: unknown): boolean
  /**
   * Optional: usage a complete non-streaming response reports in its headers (Bedrock InvokeModel's
   * `x-amzn-bedrock-*-token-count`, present for every model family); preferred over `usageFromBody`. Null if none.
   */
  usageFromHeaders?(route: RouteMatch, headers: Record<string, string | string[] | undefined>): Usage | null
  /** Optional: how to price an unpriced `model`, for the model_not_priced message. Absent: add it to the pricing file. */
  unpricedHint?(model: string): string
  /** Optional: extra headers for a proxy-produced error (Bedrock's `x-amzn-errortype`, which picks the SDK's typed error). */
  errorHeaders?(error: ErrorInfo): Record<string, string>
  /** The wire shape the loop guard reads this route's conversation with; null (or absent) when it has none (embeddings). */
  loopShape?(route: RouteMatch): LoopShape | null
}
