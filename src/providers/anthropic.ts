import type { IncomingHttpHeaders } from 'node:http'
import { invalidRequest } from '../errors.js'
import { isProxyKey } from '../keys.js'
import { messagesShape } from '../loop/shapes/messages.js'
import { bearerToken, forwardableRequestHeaders, headerValue } from '../http/headers.js'
import { upstreamUrl } from '../http/upstream-url.js'
import { createSseFramer } from '../stream/sse.js'
import { ProbeCounter, StringSlot } from '../stream/string-slot.js'
import { boundInputTokens } from '../tokens/bound.js'
import type { OutputCounter } from '../tokens/output-counter.js'
import { isObject, readCount, readFlag, requireString, type Json } from './body.js'
import { anthropicReferencedInput } from './hosted-tools.js'
import { isModelRead } from './openai.js'
import type { ErrorInfo, ExactInput, ProviderAdapter, RouteMatch, StreamParser, UpstreamCredential, Usage } from './types.js'

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

// Each content block costs delimiter tokens no delta shows (thinking blocks and tool calls are wrapped).
const BLOCK_OVERHEAD_TOKENS = 16
const TEXT_BLOCK_OVERHEAD_TOKENS = 2
// Extended thinking needs 1,024 ≤ budget_tokens < max_tokens.
const MIN_THINKING_BUDGET = 1024

/** The proxy key: the `lp-` value of `x-api-key` (SDK 0.x) or `Authorization: Bearer` (SDK 1.x), else whichever came. */
export function readAnthropicKey(headers: IncomingHttpHeaders): string | null {
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
export function toolOverheadTokens(tools: unknown): number {
  if (!Array.isArray(tools)) return 0
  let total = 0
  for (const tool of tools) {
    // Client tools carry their whole definition in the body: no `type`, or `custom`.
    if (!isObject(tool) || typeof tool.type !== 'string' || tool.type === 'custom') continue
    const type = tool.type
    total += TOOL_OVERHEAD_TOKENS.find(([prefix]) => type.startsWith(prefix))?.[1] ?? OTHER_TOOL_OVERHEAD_TOKENS
  }
  return total
}

/** Copies the input counters a usage object reports; absent or null fields stay unset. */
function readInputUsage(target: Usage, usage: Json): void {
  // `input_tokens` already excludes cache reads and writes, which Anthropic prices apart.
  const input = readCount(usage, 'input_tokens')
  const cacheRead = readCount(usage, 'cache_read_input_tokens')
  const cacheWrite = readCount(usage, 'cache_creation_input_tokens')
  if (input !== undefined) target.inputTokens = input
  if (cacheRead !== undefined) target.cachedInputTokens = cacheRead
  if (cacheWrite !== undefined) target.cacheWriteTokens = cacheWrite
}

/** Usage of a complete Message; null when it has none. */
export function messageUsage(usage: unknown): Usage | null {
  if (!isObject(usage)) return null
  const result: Usage = { outputTokens: readCount(usage, 'output_tokens') ?? 0 }
  readInputUsage(result, usage)
  return result
}

/** Counts generated text (an o200k estimate × the pricing table's factor) and keeps the usage the stream reported. */
class MessagesStreamState {
  usage: Usage = {}
  failed = false

  constructor(readonly counter: OutputCounter) {}

  add(value: unknown): void {
    this.counter.add(value)
  }

  /** A block opens: text, thinking and tool names may already carry generated text (tool results do not). */
  blockStart(block: unknown): void {
    this.counter.addTokens(isObject(block) && block.type === 'text' ? TEXT_BLOCK_OVERHEAD_TOKENS : BLOCK_OVERHEAD_TOKENS)
    if (!isObject(block)) return
    this.add(block.text)
    this.add(block.thinking)
    // redacted_thinking: billed thinking shown only encrypted; the counter cannot know it, its bytes bound it.
    if (typeof block.data === 'string') this.counter.addTokens(Buffer.byteLength(block.data))
    if (typeof block.type === 'string' && block.type.endsWith('tool_use')) {
      this.add(block.name)
      if (isObject(block.input) && Object.keys(block.input).length > 0) this.add(JSON.stringify(block.input))
    }
  }

  delta(delta: unknown): void {
    if (!isObject(delta)) return
    switch (delta.type) {
      case 'text_delta':
        return this.add(delta.text)
      case 'thinking_delta':
        return this.add(delta.thinking)
      case 'input_json_delta':
        return this.add(delta.partial_json)
      case 'citations_delta':
        // Not billed as output by Anthropic; counted anyway, an upper bound may overshoot.
        return this.add(isObject(delta.citation) ? delta.citation.cited_text : undefined)
      case 'signature_delta':
        return // an integrity signature over the thinking, not generated tokens
      default:
        // A delta type this proxy does not know yet (e.g. beta `compaction_delta`): count every string in it.
        for (const [field, value] of Object.entries(delta)) if (field !== 'type') this.add(value)
    }
  }

  /** `message_delta` usage is cumulative; counters it omits or nulls keep their value. */
  messageDelta(usage: unknown): void {
    if (!isObject(usage)) return
    readInputUsage(this.usage, usage)
    const output = readCount(usage, 'output_tokens')
    if (output !== undefined) this.usage.outputTokens = output
  }
}

/** Reads one parsed Messages stream event (`event`: its SSE event field) into `state`. */
function readMessagesEvent(data: Json, event: string | undefined, state: MessagesStreamState): void {
  switch (typeof data.type === 'string' ? data.type : event) {
    case 'message_start':
      if (isObject(data.message) && isObject(data.message.usage)) readInputUsage(state.usage, data.message.usage)
      return
    case 'content_block_start':
      return state.blockStart(data.content_block)
    case 'content_block_delta':
      return state.delta(data.delta)
    case 'message_delta':
      return state.messageDelta(data.usage)
    case 'error':
      state.failed = true
      return
    default:
      return // ping, content_block_stop, message_stop
  }
}

/**
 * Reads a Messages stream's events into its state. A text delta that is the last parsed event with other text
 * (nearly every event: same type, block index) is read through a slot, without JSON.parse: its full reading
 * would do nothing but count that text, as the slot's probe showed.
 */
class MessagesEventReader {
  private readonly slot = new StringSlot()
  // The SSE event type of the events the slot reads.
  private slotEvent: string | undefined = undefined

  constructor(private readonly state: MessagesStreamState) {}

  read(text: string, event: string | undefined): void {
    const { state, slot } = this
    if (event === 'error') state.failed = true
    const slotted = event === this.slotEvent ? slot.read(text) : undefined
    if (slotted !== undefined) return state.add(slotted)
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch {
      return
    }
    if (!isObject(data)) return
    readMessagesEvent(data, event, state)
    this.learn(text, event)
  }

  private learn(text: string, event: string | undefined): void {
    const { slot } = this
    const probe = slot.learn(text, '"text":"')
    if (probe === null) return
    const counter = new ProbeCounter()
    const record = new MessagesStreamState(counter)
    try {
      const data: unknown = JSON.parse(probe)
      if (isObject(data)) readMessagesEvent(data, event, record)
    } catch {
      return slot.forget()
    }
    if (event === 'error' || record.failed || Object.keys(record.usage).length > 0 || counter.onlyCounted(slot.probeValue()) === null) slot.forget()
    else this.slotEvent = event
  }
}

/**
 * Parser for Messages streams. Input usage comes first, in `message_start`; its `output_tokens` is a
 * placeholder, so output stays unreported (the counter meters it) until `message_delta` gives the total.
 */
export function createMessagesStreamParser(counter: OutputCounter): StreamParser {
  const state = new MessagesStreamState(counter)
  const events = new MessagesEventReader(state)
  const framer = createSseFramer((text, event) => events.read(text, event))
  return {
    push: (chunk) => framer.push(chunk),
    frames: (chunk) => framer.frames(chunk),
    flush: () => framer.flush(),
    reported: () => state.usage,
    // `message_delta` reports the total; until then the counter's estimate stands.
    outputTokens: () => state.usage.outputTokens ?? state.counter.tokens(),
    upstreamError: () => state.failed,
  }
}

/**
 * Anthropic's error shape with the Loopers code as `error.type`, budget details beside it, and both again
 * in `error.details` (`error_code` there is what @anthropic-ai/sdk exposes as `APIError.errorCode`).
 */
export function anthropicErrorBody(error: ErrorInfo): Json {
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
function fetchesContent(tools: unknown): boolean {
  if (!Array.isArray(tools)) return false
  return tools.some((tool) => isObject(tool) && typeof tool.type === 'string' && tool.type !== 'custom' && !TOOL_OVERHEAD_TOKENS.some(([p]) => (tool.type as string).startsWith(p)))
}

/**
 * Asks `count_tokens` (free) for the input the request holds, tool prompts and media included; null when
 * server tools fetch content the count cannot see (the bound's allowance stands). The count body is the
 * request's own counted members, as sent.
 */
export function anthropicCount(body: Json): ExactInput | null {
  if (fetchesContent(body.tools) || body.mcp_servers != null) return null
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
      const model = requireString(body, 'model')
      // `thinking.budget_tokens` is part of max_tokens, so max_tokens bounds all output.
      return { model, stream: readFlag(body, 'stream'), maxOutputTokens: readMaxTokens(body), choices: 1 }
    },
    referencedInput: (_route, body, headers) => anthropicReferencedInput(body, headers),
    boundInputTokens(_route, body, raw, tokensPerMedia, scan) {
      const hasTools = Array.isArray(body.tools) && body.tools.length > 0
      return boundInputTokens(raw, body, tokensPerMedia, hasTools ? TOOL_USE_PROMPT_TOKENS + toolOverheadTokens(body.tools) : 0, scan?.mediaParts)
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
    defaultCredential: () => (options.apiKey === null ? null : { kind: 'apiKey', value: options.apiKey }),
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
    createStreamParser: (_route, counter) => createMessagesStreamParser(counter),
    loopShape: () => messagesShape,
    cutoffFrame(_route: RouteMatch, error: ErrorInfo) {
      // @anthropic-ai/sdk throws an APIError for any `event: error` (core/streaming: fromSSEResponse).
      return Buffer.from(`event: error\ndata: ${JSON.stringify(anthropicErrorBody(error))}\n\n`)
    },
    errorBody: anthropicErrorBody,
  }
}
