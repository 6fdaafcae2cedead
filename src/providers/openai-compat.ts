import { invalidRequest } from '../errors.js'
import { createSseFramer, type SseFramer } from '../stream/sse.js'
import { StringSlot } from '../stream/string-slot.js'
import { boundInputTokens } from '../tokens/bound.js'
import type { OutputCounter } from '../tokens/output-counter.js'
import { isObject, readCount, readFlag, readPositiveInt, requireModel, type Json } from './body.js'
import type { ErrorInfo, ExactInput, RequestFacts, RouteMatch, StreamParser, Usage } from './types.js'

/**
 * The OpenAI wire format, shared by OpenAI, Azure OpenAI and Mistral: request facts for chat,
 * responses and embeddings, usage readers, stream parsers, error bodies and cutoff frames.
 */

export type CompatOperation = 'chat' | 'responses' | 'embeddings'

// A Responses request that continues a stored conversation is billed for context the body does not
// carry; without it in hand, the bound is the largest context window any priced model accepts.
const STORED_CONTEXT_BOUND_TOKENS = 1_048_576

// The routes of a model named by the body, made once: a route is read, never edited, so every request shares them.
const BODY_MODEL_ROUTES: Record<CompatOperation, RouteMatch> = {
  chat: { operation: 'chat', pathModel: null, pathStream: null },
  responses: { operation: 'responses', pathModel: null, pathStream: null },
  embeddings: { operation: 'embeddings', pathModel: null, pathStream: false },
}

/** The route of `operation`; `pathModel` when the path names the model (an Azure deployment), else the shared one. */
export function compatRoute(operation: CompatOperation, pathModel: string | null = null): RouteMatch {
  if (pathModel === null) return BODY_MODEL_ROUTES[operation]
  return { operation, pathModel, pathStream: operation === 'embeddings' ? false : null }
}

/** Reads model, stream and output cap; the model may come from the path (Azure deployment). */
export function describeCompat(route: RouteMatch, body: Json): RequestFacts {
  const model = route.pathModel ?? requireModel(body)
  switch (route.operation) {
    case 'chat': {
      const choices = readPositiveInt(body, 'n') ?? 1
      const perChoice = readPositiveInt(body, 'max_completion_tokens') ?? readPositiveInt(body, 'max_tokens')
      return { model, stream: readFlag(body, 'stream'), maxOutputTokens: perChoice === null ? null : perChoice * choices, choices }
    }
    case 'responses': {
      if (readFlag(body, 'background')) {
        throw invalidRequest('background responses are settled after the request ends and cannot be metered; send them without background')
      }
      return { model, stream: readFlag(body, 'stream'), maxOutputTokens: readPositiveInt(body, 'max_output_tokens'), choices: 1 }
    }
    case 'embeddings':
      return { model, stream: false, maxOutputTokens: 0, choices: 1 }
    default:
      throw invalidRequest(`unsupported operation ${route.operation}`)
  }
}

/**
 * Bytes of the body plus media parts; a stored conversation adds the largest context window. No priming
 * overhead: each message's JSON (`{"role":"user","content":""}`, 28 bytes) outweighs its 4 wrapper tokens.
 */
export function boundCompatInput(route: RouteMatch, body: Json, raw: Buffer, tokensPerMedia: number, mediaParts?: number | null): number {
  const bound = boundInputTokens(raw, body, tokensPerMedia, 0, mediaParts)
  const stored = route.operation === 'responses' && (body.previous_response_id != null || body.conversation != null)
  return stored ? bound + STORED_CONTEXT_BOUND_TOKENS : bound
}

/**
 * Counted exactly with tiktoken in the counting worker (the model's encoding); null for stored
 * conversations, which the body does not carry.
 */
export function exactCompatInput(route: RouteMatch, _path: string, body: Json, model: string): ExactInput | null {
  switch (route.operation) {
    case 'chat':
    case 'embeddings':
      return { kind: 'local', counter: route.operation, model, factor: 1 }
    case 'responses':
      if (body.previous_response_id != null || body.conversation != null) return null
      return { kind: 'local', counter: 'responses', model, factor: 1 }
    default:
      return null
  }
}

/** `cap`, or `current` when that is a valid cap below it. */
function lowerCap(current: unknown, cap: number): number {
  return typeof current === 'number' && Number.isSafeInteger(current) && current >= 1 ? Math.min(current, cap) : cap
}

/**
 * Forces usage on streams and lowers the output cap; returns true if the body changed. Prepared once without a
 * cap and again with one, a body is as one preparation with that cap makes it (the pipeline prepares it while
 * its reserve is in flight).
 */
export function prepareCompatBody(route: RouteMatch, body: Json, facts: RequestFacts, maxOutputTokens: number | null): boolean {
  let changed = false
  if (route.operation === 'chat' && facts.stream) {
    // Usage arrives only when asked for; settlement needs it.
    const options = isObject(body.stream_options) ? body.stream_options : {}
    if (options.include_usage !== true) {
      body.stream_options = { ...options, include_usage: true }
      changed = true
    }
  }
  if (maxOutputTokens !== null) {
    if (route.operation === 'chat') {
      const perChoice = Math.max(1, Math.floor(maxOutputTokens / facts.choices))
      // Only ever lowered: a body prepared before (a legacy Azure body's max_tokens is the smaller of its two
      // caps) keeps a smaller cap of its own, as one preparation with this cap would.
      if (body.max_tokens != null && body.max_completion_tokens == null) body.max_tokens = lowerCap(body.max_tokens, perChoice)
      else body.max_completion_tokens = perChoice
      changed = true
    } else if (route.operation === 'responses') {
      body.max_output_tokens = Math.max(16, maxOutputTokens)
      changed = true
    }
  }
  return changed
}

/** Usage of a chat or embeddings response (`prompt_tokens` includes cached tokens). */
function chatUsage(usage: unknown): Usage | null {
  if (!isObject(usage)) return null
  const prompt = readCount(usage, 'prompt_tokens')
  const cached = readCount(usage.prompt_tokens_details, 'cached_tokens') ?? 0
  const result: Usage = { outputTokens: readCount(usage, 'completion_tokens') ?? 0 }
  if (prompt !== undefined) {
    result.inputTokens = Math.max(0, prompt - cached)
    result.cachedInputTokens = Math.min(cached, prompt)
  }
  return result
}

/** Usage of a Responses API response (`input_tokens` includes cached tokens; output includes reasoning). */
function responsesUsage(usage: unknown): Usage | null {
  if (!isObject(usage)) return null
  const input = readCount(usage, 'input_tokens')
  const cached = readCount(usage.input_tokens_details, 'cached_tokens') ?? 0
  const result: Usage = { outputTokens: readCount(usage, 'output_tokens') ?? 0 }
  if (input !== undefined) {
    result.inputTokens = Math.max(0, input - cached)
    result.cachedInputTokens = Math.min(cached, input)
  }
  return result
}

export function compatUsageFromBody(route: RouteMatch, json: unknown): Usage | null {
  if (!isObject(json)) return null
  return route.operation === 'responses' ? responsesUsage(json.usage) : chatUsage(json.usage)
}

/**
 * Reads generated text a provider's chat deltas carry beyond OpenAI's string fields (Mistral's content
 * parts and object-valued tool arguments); `add` takes strings and ignores anything else. A string it finds
 * goes to `add` whole or not at all, whatever its value (the chat reader's slot relies on it).
 */
export type DeltaTextReader = (delta: Json, add: (text: unknown) => void) => void

/** Adds the generated text of one chat chunk: content, refusal, reasoning and tool-call arguments. */
function addChatDelta(chunk: Json, counter: OutputCounter, readExtra: DeltaTextReader | undefined): void {
  const choices = chunk.choices
  if (!Array.isArray(choices)) return
  for (const choice of choices) {
    const delta = isObject(choice) ? choice.delta : undefined
    if (!isObject(delta)) continue
    // With `n` > 1 the choices' deltas interleave: each choice is its own text, counted on its own.
    const index = typeof choice.index === 'number' ? choice.index : 0
    counter.add(delta.content, index)
    counter.add(delta.refusal, index)
    counter.add(delta.reasoning_content, index)
    counter.add(delta.reasoning, index)
    if (Array.isArray(delta.tool_calls)) {
      for (const call of delta.tool_calls) {
        if (!isObject(call) || !isObject(call.function)) continue
        counter.add(call.function.name, index)
        counter.add(call.function.arguments, index)
      }
    }
    if (isObject(delta.function_call)) counter.add(delta.function_call.arguments, index)
    readExtra?.(delta, (text) => counter.add(text, index))
  }
}

/** Tracks generated text (through the counter) and reported usage for one OpenAI-format stream. */
class CompatStreamState {
  usage: Usage = {}
  failed = false

  constructor(readonly counter: OutputCounter) {}

  addText(value: unknown): void {
    this.counter.add(value)
  }
}

/** Reads one parsed chat chunk: its generated text, an error it reports, its usage. */
function readChatChunk(chunk: Json, effects: CompatStreamState, readExtra: DeltaTextReader | undefined): void {
  // OpenAI nests an `error` object; Mistral sends its error object itself (`"object": "error"`).
  if (chunk.error !== undefined || chunk.object === 'error') effects.failed = true
  addChatDelta(chunk, effects.counter, readExtra)
  const usage = chatUsage(chunk.usage)
  if (usage !== null) effects.usage = usage
}

/**
 * Parser for `chat/completions` streams: `data: {chunk}` events, usage on the last chunk, `[DONE]`.
 * `readExtra` counts provider-specific delta text on top of OpenAI's fields.
 */
export function createChatStreamParser(counter: OutputCounter, readExtra?: DeltaTextReader): StreamParser {
  const state = new CompatStreamState(counter)
  const chunks = new ChatChunkReader(state, readExtra)
  return new CompatStreamParser(
    createSseFramer((data) => chunks.read(data)),
    state,
  )
}

/**
 * Reads a chat stream's chunks into its state. A chunk that is the last parsed one with other content (nearly
 * every chunk: same id, model, choice; another delta text) is read through a slot, without JSON.parse: its
 * full reading would do nothing but count that text, as the slot's probe showed.
 */
class ChatChunkReader {
  private readonly slot = new StringSlot()
  // The choice whose content the slot holds.
  private context = 0

  constructor(
    private readonly state: CompatStreamState,
    private readonly readExtra: DeltaTextReader | undefined,
  ) {}

  read(data: string): void {
    if (data === '[DONE]') return
    const text = this.slot.read(data)
    if (text !== undefined) return this.state.counter.add(text, this.context)
    let chunk: unknown
    try {
      chunk = JSON.parse(data)
    } catch {
      return
    }
    if (!isObject(chunk)) return
    readChatChunk(chunk, this.state, this.readExtra)
    this.learn(data)
  }

  private learn(data: string): void {
    const context = this.slot.learnChecked(data, '"content":"', (chunk, counter) => {
      if (!isObject(chunk)) return false
      const record = new CompatStreamState(counter)
      readChatChunk(chunk, record, this.readExtra)
      return !record.failed && Object.keys(record.usage).length === 0
    })
    if (context !== null) this.context = context
  }
}

const RESPONSES_TEXT_EVENTS = new Set([
  'response.output_text.delta',
  'response.refusal.delta',
  'response.function_call_arguments.delta',
  'response.reasoning_text.delta',
  'response.reasoning_summary_text.delta',
  'response.custom_tool_call_input.delta',
  'response.code_interpreter_call_code.delta',
  'response.mcp_call_arguments.delta',
])

/** Parser for Responses API streams: typed events, usage in `response.completed`/`incomplete`/`failed`. */
function createResponsesStreamParser(counter: OutputCounter): StreamParser {
  const state = new CompatStreamState(counter)
  const framer = createSseFramer((text, event) => {
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch {
      return
    }
    if (!isObject(data)) return
    const type = typeof data.type === 'string' ? data.type : event
    if (type === undefined) return
    if (RESPONSES_TEXT_EVENTS.has(type)) {
      state.addText(data.delta)
    } else if (type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed') {
      const usage = isObject(data.response) ? responsesUsage(data.response.usage) : null
      if (usage !== null) state.usage = usage
    }
  })
  return new CompatStreamParser(framer, state)
}

/** The reader of one OpenAI-format stream: its framer's frames, its state's usage and count (methods, not closures). */
class CompatStreamParser implements StreamParser {
  constructor(
    private readonly framer: SseFramer,
    private readonly state: CompatStreamState,
  ) {}

  push(chunk: Buffer): Buffer {
    return this.framer.push(chunk)
  }

  frames(chunk: Buffer): Iterable<Buffer> {
    return this.framer.frames(chunk)
  }

  flush(): Buffer {
    return this.framer.flush()
  }

  reported(): Usage {
    return this.state.usage
  }

  // The final chunk's usage replaces the count; until then (cut, disconnect, reset) the count stands.
  outputTokens(): number {
    return this.state.usage.outputTokens ?? this.state.counter.tokens()
  }

  outputBound(): number {
    return this.state.usage.outputTokens ?? this.state.counter.bound()
  }
}

export function createCompatStreamParser(route: RouteMatch, counter: OutputCounter): StreamParser {
  return route.operation === 'responses' ? createResponsesStreamParser(counter) : createChatStreamParser(counter)
}

/** OpenAI's error object, with the Loopers code and budget details inside it. */
export function compatErrorBody(error: ErrorInfo): Json {
  return { error: { message: error.message, type: error.code, param: null, code: error.code, ...error.details } }
}

/**
 * Ends a cut stream so the SDK raises: chat streams get an `error` chunk and `[DONE]`; Responses
 * streams an `error` event that also carries the `error` object the SDK looks for.
 */
export function compatCutoffFrame(route: RouteMatch, error: ErrorInfo): Buffer {
  const body = compatErrorBody(error)
  if (route.operation === 'responses') {
    const event = { type: 'error', code: error.code, message: error.message, param: null, ...body }
    return Buffer.from(`event: error\ndata: ${JSON.stringify(event)}\n\n`)
  }
  return Buffer.from(`data: ${JSON.stringify(body)}\n\ndata: [DONE]\n\n`)
}
