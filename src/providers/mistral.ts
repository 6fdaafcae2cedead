import { bearerToken, forwardableRequestHeaders } from '../http/headers.js'
import { upstreamUrl } from '../http/upstream-url.js'
import { DEFAULT_TOKEN_FACTOR } from '../pricing/table.js'
import { boundInputTokens, PRIMING_TOKENS } from '../tokens/bound.js'
import { isObject, type Json } from './body.js'
import { createChatStreamParser, describeCompat, type DeltaTextReader } from './openai-compat.js'
import { compatMembers, isModelRead, OPENAI_MODEL_READS } from './openai.js'
import type { ErrorInfo, ProviderAdapter, RouteMatch, UpstreamCredential } from './types.js'
import { serverApiKey } from './types.js'

/**
 * Mistral speaks OpenAI's chat format with its own differences, overridden here: it refuses unknown fields
 * (so no `stream_options`, and `max_tokens` is its only output cap), reports stream usage on the last
 * chunk unasked, streams content as parts (Magistral's `thinking`), has no exact tokenizer in this proxy,
 * and shapes errors as `{object: "error", message, type, param, code}`.
 */

type MistralOperation = 'chat' | 'embeddings' | 'fim'

const OPERATIONS = new Map<string, MistralOperation>([
  ['/v1/chat/completions', 'chat'],
  ['/v1/embeddings', 'embeddings'],
  ['/v1/fim/completions', 'fim'],
])

/** FIM requests and answers are chat-shaped: `model`, `max_tokens`, `stream`, `choices`, `usage`. */
function asChat(route: RouteMatch): RouteMatch {
  return route.operation === 'fim' ? { ...route, operation: 'chat' } : route
}

/** Text parts of a streamed `content` array: `{type: "text", text}` and `{type: "thinking", thinking: [parts]}`. */
function addContentParts(parts: unknown[], add: (text: unknown) => void): void {
  for (const part of parts) {
    if (typeof part === 'string') add(part)
    else if (isObject(part)) {
      add(part.text)
      if (Array.isArray(part.thinking)) addContentParts(part.thinking, add)
    }
  }
}

/** What Mistral deltas carry beyond OpenAI's string fields: content parts and object-valued tool arguments. */
const readMistralDelta: DeltaTextReader = (delta, add) => {
  if (Array.isArray(delta.content)) addContentParts(delta.content, add)
  if (!Array.isArray(delta.tool_calls)) return
  for (const call of delta.tool_calls) {
    if (isObject(call) && isObject(call.function) && isObject(call.function.arguments)) add(JSON.stringify(call.function.arguments))
  }
}

/**
 * True when Mistral adds a system prompt the body does not carry: `safe_prompt` prepends its safety prompt,
 * and reasoning models get their default reasoning prompt (`prompt_mode: "reasoning"`, Magistral's default).
 */
function injectsSystemPrompt(route: RouteMatch, body: Json): boolean {
  if (route.operation !== 'chat') return false
  return body.safe_prompt === true || body.prompt_mode === 'reasoning' || (typeof body.model === 'string' && body.model.startsWith('magistral'))
}

/** Mistral's error object, with the Loopers code as `type` and `code` and budget details beside them. */
function mistralErrorBody(error: ErrorInfo): Json {
  return { object: 'error', message: error.message, type: error.code, param: null, code: error.code, ...error.details }
}

/**
 * Mistral: Bearer auth; chat completions, FIM completions and embeddings are metered; model reads
 * (`GET /v1/models`, `/v1/models/{id}`) are free. Conversations, files, batches and agents are refused.
 */
export function createMistralAdapter(options: { baseUrl: string; apiKey: string | null }): ProviderAdapter {
  const serverCredential = serverApiKey(options.apiKey)
  return {
    id: 'mistral',
    ...compatMembers,
    readKey: (headers) => bearerToken(headers),
    findRoute(method, path) {
      const operation = method === 'POST' ? OPERATIONS.get(path) : undefined
      return operation === undefined ? null : { operation, pathModel: null, pathStream: operation === 'embeddings' ? false : null }
    },
    isFree: (method, path) => isModelRead(method, path, OPENAI_MODEL_READS),
    describe: (route, body) => describeCompat(asChat(route), body),
    boundInputTokens: (route, body, raw, tokensPerMedia, scan) =>
      boundInputTokens(raw, body, tokensPerMedia, injectsSystemPrompt(route, body) ? PRIMING_TOKENS : 0, scan?.mediaParts),
    // Mistral's tokenizers (Tekken, SentencePiece) are not available here: an o200k count × a factor estimates them.
    // Input is estimated as output is: o200k × the pricing entry's token factor (one factor per model).
    exactInput: (route, _path, body, _model, price) =>
      route.operation === 'fim' || typeof body.model !== 'string'
        ? null
        : { kind: 'local', counter: route.operation === 'embeddings' ? 'embeddings' : 'chat', model: 'o200k', factor: price?.tokenizer.factor ?? DEFAULT_TOKEN_FACTOR.mistral },
    prepareBody(route, body, facts, maxOutputTokens) {
      // No `stream_options`: Mistral reports usage on the last stream chunk by itself and refuses the field (422).
      if (maxOutputTokens === null || route.operation === 'embeddings') return false
      body.max_tokens = Math.max(1, Math.floor(maxOutputTokens / facts.choices))
      return true
    },
    createStreamParser: (_route, counter) => createChatStreamParser(counter, readMistralDelta),
    /**
     * Ends a cut stream with Mistral's error object as a data event: @mistralai/mistralai validates every
     * event as a chunk and throws on it; the nested `error` makes OpenAI-SDK clients of Mistral throw too.
     */
    cutoffFrame(_route, error) {
      const event = { ...mistralErrorBody(error), error: { message: error.message, type: error.code, param: null, code: error.code } }
      return Buffer.from(`data: ${JSON.stringify(event)}\n\n`)
    },
    errorBody: mistralErrorBody,
    readClientCredential(headers): UpstreamCredential | null {
      // A proxy key is never an upstream credential.
      const token = bearerToken(headers)
      return token === null || token.startsWith('lp-') ? null : { kind: 'apiKey', value: token }
    },
    defaultCredential: () => serverCredential,
    buildUpstream(ctx) {
      const headers = forwardableRequestHeaders(ctx.headers)
      if (ctx.credential?.kind === 'apiKey') headers.authorization = `Bearer ${ctx.credential.value}`
      return { url: upstreamUrl(options.baseUrl, ctx.path, ctx.query), headers, body: ctx.body }
    },
  }
}
