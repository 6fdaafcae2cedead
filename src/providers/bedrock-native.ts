import { invalidRequest } from '../errors.js'
import { isObject, readCount, type Json } from './body.js'
import type { Usage } from './types.js'

/**
 * Bedrock's model-native bodies (InvokeModel): where each model family puts its output cap, and the
 * usage and generated text its responses and stream chunks carry. Converse bodies are uniform and
 * handled by the adapter itself.
 */

/** A JSON path to an output cap, e.g. `['inferenceConfig', 'maxTokens']`. */
type CapPath = readonly string[]

// Cross-region inference profiles prefix the model id with a geography.
const REGION_PREFIX = /^(?:us|us-gov|eu|apac|ap|jp|au|ca|global)\./
const ARN_RESOURCE = /^arn:[^:]+:bedrock:[^:]*:[^:]*:(?:foundation-model|inference-profile|application-inference-profile)\/(.+)$/

/** The output caps of each model family, first match wins; the first path is written when none is set. */
const FAMILY_CAPS: ReadonlyArray<readonly [RegExp, readonly CapPath[]]> = [
  [/^anthropic\./, [['max_tokens'], ['max_tokens_to_sample']]],
  // Nova 2 documents `maxTokens`; Nova 1 examples use `max_new_tokens`.
  [/^amazon\.nova-/, [['inferenceConfig', 'maxTokens'], ['inferenceConfig', 'max_new_tokens']]],
  [/^amazon\.titan-/, [['textGenerationConfig', 'maxTokenCount']]],
  [/^meta\./, [['max_gen_len']]],
  [/^ai21\.j2-/, [['maxTokens']]],
  [/^openai\./, [['max_completion_tokens'], ['max_tokens']]],
  // Mistral, Cohere Command, AI21 Jamba, DeepSeek, Qwen, Writer and the OpenAI-style rest.
  [/./, [['max_tokens']]],
]

/** The family part of a model id: without ARN wrapper and geography prefix, e.g. `anthropic.claude-…`. */
export function baseModelId(modelId: string): string {
  const arn = ARN_RESOURCE.exec(modelId)
  return (arn?.[1] ?? modelId).replace(REGION_PREFIX, '')
}

/** Embedding models produce no output tokens. */
export function isEmbeddingModel(modelId: string): boolean {
  return /embed/i.test(baseModelId(modelId))
}

function capsFor(modelId: string): readonly CapPath[] {
  const base = baseModelId(modelId)
  for (const [pattern, caps] of FAMILY_CAPS) if (pattern.test(base)) return caps
  return [['max_tokens']]
}

function readPath(body: Json, path: CapPath): unknown {
  let node: unknown = body
  for (const key of path) node = isObject(node) ? node[key] : undefined
  return node
}

function readCap(body: Json, path: CapPath): number | null {
  const value = readPath(body, path)
  if (value === undefined || value === null) return null
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw invalidRequest(`'${path.join('.')}' must be a positive integer`)
  }
  return value
}

/** The output cap per choice a native body sets, or null when it sets none. Throws invalid_request on a bad value. */
export function readNativeCap(modelId: string, body: Json): number | null {
  for (const path of capsFor(modelId)) {
    const cap = readCap(body, path)
    if (cap !== null) return cap
  }
  return null
}

/** Completions one native request yields (`n`, Cohere `num_generations`, AI21 J2 `numResults`). */
export function readNativeChoices(body: Json): number {
  for (const field of ['n', 'num_generations', 'numResults']) {
    const choices = readCap(body, [field])
    if (choices !== null) return choices
  }
  return 1
}

/** Writes the output cap into the path the body already uses (or the family's usual one). */
export function writeNativeCap(modelId: string, body: Json, perChoice: number): void {
  const caps = capsFor(modelId)
  const path = caps.find((p) => readPath(body, p) != null) ?? caps[0] ?? ['max_tokens']
  writePath(body, path, perChoice)
}

/** Sets `value` at `path`, creating the objects on the way (replacing non-objects). */
export function writePath(body: Json, path: CapPath, value: number): void {
  let node: Json = body
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (!isObject(next)) node[key] = {}
    node = node[key] as Json
  }
  node[path[path.length - 1] ?? 'max_tokens'] = value
}

/** Usage in Converse's `TokenUsage` shape (`inputTokens` excludes cache reads and writes). */
export function converseUsage(usage: unknown): Usage | null {
  if (!isObject(usage)) return null
  const inputTokens = readCount(usage, 'inputTokens')
  if (inputTokens === undefined) return null
  return {
    inputTokens,
    outputTokens: readCount(usage, 'outputTokens') ?? 0,
    cachedInputTokens: readCount(usage, 'cacheReadInputTokens') ?? readCount(usage, 'cacheReadInputTokenCount') ?? 0,
    cacheWriteTokens: readCount(usage, 'cacheWriteInputTokens') ?? readCount(usage, 'cacheWriteInputTokenCount') ?? 0,
  }
}

/** Anthropic's `usage` (input excludes cache reads and writes, as Bedrock's own counts do). */
export function anthropicUsage(usage: unknown): Usage | null {
  if (!isObject(usage)) return null
  const inputTokens = readCount(usage, 'input_tokens')
  const outputTokens = readCount(usage, 'output_tokens')
  if (inputTokens === undefined && outputTokens === undefined) return null
  const result: Usage = {}
  if (inputTokens !== undefined) result.inputTokens = inputTokens
  if (outputTokens !== undefined) result.outputTokens = outputTokens
  const cached = readCount(usage, 'cache_read_input_tokens')
  const written = readCount(usage, 'cache_creation_input_tokens')
  if (cached !== undefined) result.cachedInputTokens = cached
  if (written !== undefined) result.cacheWriteTokens = written
  return result
}

/** `amazon-bedrock-invocationMetrics` of a stream's last chunk: what Bedrock bills. */
export function invocationMetricsUsage(metrics: unknown): Usage | null {
  if (!isObject(metrics)) return null
  const inputTokens = readCount(metrics, 'inputTokenCount')
  if (inputTokens === undefined) return null
  return {
    inputTokens,
    outputTokens: readCount(metrics, 'outputTokenCount') ?? 0,
    cachedInputTokens: readCount(metrics, 'cacheReadInputTokenCount') ?? 0,
    cacheWriteTokens: readCount(metrics, 'cacheWriteInputTokenCount') ?? 0,
  }
}

/** The top-level members of a complete native response body `nativeBodyUsage` reads. */
export const NATIVE_USAGE_MEMBERS = ['usage', 'amazon-bedrock-invocationMetrics', 'prompt_token_count', 'generation_token_count', 'inputTextTokenCount', 'results']

/**
 * Usage a complete native response body reports, whatever the family: Anthropic and OpenAI-style
 * `usage`, Nova's Converse-shaped `usage`, Llama's and Titan's top-level counts. Null if none.
 */
export function nativeBodyUsage(json: unknown): Usage | null {
  if (!isObject(json)) return null
  const usage = json.usage
  const found =
    anthropicUsage(usage) ??
    converseUsage(usage) ??
    openAiStyleUsage(usage) ??
    invocationMetricsUsage(json['amazon-bedrock-invocationMetrics'])
  if (found !== null) return found
  const llamaInput = readCount(json, 'prompt_token_count')
  if (llamaInput !== undefined) return { inputTokens: llamaInput, outputTokens: readCount(json, 'generation_token_count') ?? 0 }
  const titanInput = readCount(json, 'inputTextTokenCount')
  if (titanInput !== undefined) {
    let output = 0
    if (Array.isArray(json.results)) for (const result of json.results) output += readCount(result, 'tokenCount') ?? 0
    return { inputTokens: titanInput, outputTokens: output }
  }
  return null
}

function openAiStyleUsage(usage: unknown): Usage | null {
  if (!isObject(usage)) return null
  const prompt = readCount(usage, 'prompt_tokens')
  if (prompt === undefined) return null
  return { inputTokens: prompt, outputTokens: readCount(usage, 'completion_tokens') ?? 0 }
}

/** Keys whose string values are generated text in some family's chunk or delta. */
const TEXT_KEYS = new Set([
  'text', // Anthropic text_delta, Nova and Converse deltas, Cohere
  'partial_json', // Anthropic tool input
  'thinking', // Anthropic thinking_delta
  'data', // Anthropic redacted_thinking (its bytes bound the hidden tokens)
  'redactedContent', // Converse redacted reasoning
  'name', // tool names
  'input', // Converse and Nova tool input (a string in deltas)
  'arguments', // OpenAI-style tool calls
  'content', // OpenAI-style deltas (AI21 Jamba, gpt-oss, DeepSeek)
  'reasoning_content',
  'generation', // Llama
  'outputText', // Titan
  'completion', // Anthropic text completions
])
/** Metadata that may hold strings which are not generated text (guardrail traces, metrics). */
const SKIPPED_KEYS = new Set(['usage', 'metrics', 'trace', 'performanceConfig'])
// A chunk is small; a walk bounded by node count cannot be turned into a slow path by a large one.
const MAX_WALK_NODES = 10_000

/**
 * UTF-8 texts generated in one stream chunk or delta: strings under the text keys of every family,
 * skipping metadata (`amazon-bedrock-*`, usage, traces). Over-counts rather than under-counts.
 */
export function generatedTexts(node: unknown): string[] {
  const out: string[] = []
  const stack: Array<[unknown, boolean]> = [[node, false]]
  let visited = 0
  while (stack.length > 0 && visited++ < MAX_WALK_NODES) {
    const [value, isText] = stack.pop() as [unknown, boolean]
    if (typeof value === 'string') {
      if (isText && value.length > 0) out.push(value)
    } else if (Array.isArray(value)) {
      for (const item of value) stack.push([item, isText])
    } else if (isObject(value)) {
      for (const [key, child] of Object.entries(value)) {
        if (SKIPPED_KEYS.has(key) || key.startsWith('amazon-bedrock-')) continue
        stack.push([child, TEXT_KEYS.has(key)])
      }
    }
  }
  return out
}
