import { JsonText } from '../http/json-elements.js'
import type { Digest } from './digest.js'

/**
 * Content parts of every supported wire shape, read the same way: text, tool calls, tool results,
 * media. Ids, signatures, cache markers and reasoning are volatile (they differ between identical
 * steps), so they are never hashed.
 */

type PartKind = 'call' | 'content' | 'skip'

/** At most this many parts of one item or tool result are hashed. */
export const MAX_PARTS = 256

const VOLATILE = new Set([
  'id', 'call_id', 'tool_call_id', 'tool_use_id', 'toolUseId', 'cache_control', 'cachePoint', 'signature',
  'thoughtSignature', 'thought_signature', 'citations', 'annotations', 'logprobs', 'status', 'index',
])
const REASONING_TYPES = new Set(['thinking', 'redacted_thinking', 'reasoning'])
const CALL_TYPES = new Set(['tool_use', 'server_tool_use', 'mcp_tool_use', 'function', 'function_call', 'custom_tool_call'])
const TEXT_TYPES = new Set(['text', 'input_text', 'output_text'])

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Whether a part is a tool call (the model's action), content, or carries nothing to hash (reasoning). */
export function partKind(part: unknown): PartKind {
  if (part instanceof JsonText) return 'content'
  if (!isRecord(part)) return part === null || part === undefined ? 'skip' : 'content'
  const type = part.type
  if (typeof type === 'string') {
    if (REASONING_TYPES.has(type)) return 'skip'
    if (CALL_TYPES.has(type) || type.endsWith('_call')) return 'call'
    return 'content'
  }
  if (part.toolUse !== undefined || part.functionCall !== undefined) return 'call'
  // Bedrock reasoning blocks, Gemini thought summaries and bare cache points change nothing the model did.
  if (part.reasoningContent !== undefined || part.thought === true) return 'skip'
  // A Converse content block sets exactly one member, so a cache point block carries nothing else.
  if (part.cachePoint !== undefined) return 'skip'
  return 'content'
}

/** Feeds one part to the digest in a shape-independent form (a tool call hashes as name + arguments). */
export function hashPart(digest: Digest, part: unknown): void {
  if (part instanceof JsonText) {
    // A string not decoded yet hashes as that string.
    digest.add('text')
    digest.jsonText(part)
    return
  }
  if (!isRecord(part)) {
    // A bare string is text, whether the wire sent `"content": "…"` or a text block.
    if (typeof part === 'string') digest.add('text')
    digest.value(part)
    return
  }
  const type = typeof part.type === 'string' ? part.type : null
  if (type !== null && TEXT_TYPES.has(type)) {
    digest.add('text')
    digest.value(part.text)
  } else if (type === 'tool_use' || type === 'server_tool_use' || type === 'mcp_tool_use') {
    call(digest, part.name, part.input)
  } else if (type === 'function' && isRecord(part.function)) {
    call(digest, part.function.name, part.function.arguments)
  } else if (type === 'function_call') {
    call(digest, part.name, part.arguments)
  } else if (type === 'custom_tool_call') {
    call(digest, part.name, part.input)
  } else if (isRecord(part.toolUse)) {
    call(digest, part.toolUse.name, part.toolUse.input)
  } else if (isRecord(part.functionCall)) {
    call(digest, part.functionCall.name, part.functionCall.args)
  } else if (type === 'tool_result') {
    result(digest, part.content, part.is_error)
  } else if (type === 'function_call_output' || type === 'custom_tool_call_output') {
    result(digest, part.output, undefined)
  } else if (isRecord(part.toolResult)) {
    result(digest, part.toolResult.content, part.toolResult.status)
  } else if (isRecord(part.functionResponse)) {
    digest.add('result')
    digest.value(part.functionResponse.name)
    digest.value(part.functionResponse.response)
  } else {
    digest.add('part')
    digest.value(part, VOLATILE)
  }
}

function call(digest: Digest, name: unknown, args: unknown): void {
  digest.add('call')
  digest.value(name)
  // Arguments arrive as a JSON string (OpenAI) or an object (Anthropic, Gemini, Bedrock): both hash as given.
  digest.value(args)
}

function result(digest: Digest, content: unknown, flag: unknown): void {
  digest.add('result')
  if (Array.isArray(content)) {
    digest.add(`[${content.length}`)
    const count = Math.min(content.length, MAX_PARTS)
    for (let i = 0; i < count; i++) if (partKind(content[i]) !== 'skip') hashPart(digest, content[i])
  } else {
    digest.value(content)
  }
  digest.value(flag)
}
