import { JsonSpan, JsonText } from '../http/json-elements.js'
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

// The members of a content block that hashPart reads when its type is a string, and the bits of those that come
// undecoded (text, name, arguments, content, output): a string fed from its bytes, an object or array read from them.
const BLOCK_MEMBERS = ['type', 'text', 'name', 'input', 'arguments', 'content', 'is_error', 'output', 'toolUse', 'functionCall']
const BLOCK_UNDECODED = 0b10110110
const [TYPE, TEXT, NAME, INPUT, ARGUMENTS, CONTENT, IS_ERROR, OUTPUT, TOOL_USE, FUNCTION_CALL] = BLOCK_MEMBERS.map((_, n) => n) as number[] as [number, number, number, number, number, number, number, number, number, number]
// Block types hashPart reads by their members alone, before and after its checks of `toolUse` and `functionCall`.
const TYPED_CALLS = new Set(['tool_use', 'server_tool_use', 'mcp_tool_use', 'function_call', 'custom_tool_call'])
const TYPED_RESULTS = new Set(['tool_result', 'function_call_output', 'custom_tool_call_output'])

// How hashBlock reads a Block, told once by blockOf from its type, and the partKind of each.
const TEXT_BLOCK = 0
const REASONING_BLOCK = 1
const CALL_BLOCK = 2
const RESULT_BLOCK = 3
const BLOCK_KINDS: readonly PartKind[] = ['content', 'skip', 'call', 'content']

/**
 * A content block of a lazily read body whose `type` is a string, read from its bytes in one pass: the members
 * hashBlock reads of its type (text; name and input or arguments; content or output and is_error), undefined when absent.
 */
class Block {
  constructor(
    readonly span: JsonSpan,
    /** TEXT_BLOCK, REASONING_BLOCK, CALL_BLOCK or RESULT_BLOCK: its type's branch of hashPart. */
    readonly how: number,
    readonly first: unknown,
    readonly second: unknown,
  ) {}
}

// Every block's BLOCK_MEMBERS are read into this one array (readPart runs to its end without a pause), emptied after
// each: a Block keeps the two it needs, not an array of its own.
const blockMembers: unknown[] = new Array(BLOCK_MEMBERS.length).fill(undefined)

/**
 * A part as a shape reads it, made ready for partKind and hashPart: an object still in a body's bytes (a JsonSpan) as
 * a Block when its type is a string and hashPart reads it by its members, else parsed; a string's JsonText kept.
 */
export function readPart(part: unknown): unknown {
  if (!(part instanceof JsonSpan)) return part
  if (!part.isObject) return part.decode()
  part.members(BLOCK_MEMBERS, BLOCK_UNDECODED, blockMembers)
  const block = blockOf(part, blockMembers)
  for (let n = 0; n < blockMembers.length; n++) blockMembers[n] = undefined
  return block ?? part.decode()
}

/** The Block of a block whose BLOCK_MEMBERS are `members`; null when hashPart reads it otherwise (parsed). */
function blockOf(span: JsonSpan, members: readonly unknown[]): Block | null {
  const type = members[TYPE]
  if (typeof type !== 'string') return null
  if (TEXT_TYPES.has(type)) return new Block(span, TEXT_BLOCK, members[TEXT], undefined)
  if (REASONING_TYPES.has(type)) return new Block(span, REASONING_BLOCK, undefined, undefined)
  if (type === 'function_call') return new Block(span, CALL_BLOCK, members[NAME], members[ARGUMENTS])
  if (TYPED_CALLS.has(type)) return new Block(span, CALL_BLOCK, members[NAME], members[INPUT])
  // A result's type is read after the checks of `toolUse` and `functionCall`: a block with either is read parsed.
  if (!TYPED_RESULTS.has(type) || isRecord(plain(members[TOOL_USE])) || isRecord(plain(members[FUNCTION_CALL]))) return null
  return type === 'tool_result' ? new Block(span, RESULT_BLOCK, members[CONTENT], members[IS_ERROR]) : new Block(span, RESULT_BLOCK, members[OUTPUT], undefined)
}

/** A member of a Block as JSON.parse gives it. */
const plain = (value: unknown): unknown => (value instanceof JsonSpan || value instanceof JsonText ? value.decode() : value)

/** Feeds a member of a Block as `digest.value` feeds it parsed: a string from its bytes. */
function feed(digest: Digest, value: unknown): void {
  if (value instanceof JsonText) digest.jsonText(value)
  else digest.value(plain(value))
}

/** hashPart of a Block: what it hashes of the block parsed, read from its members. */
function hashBlock(digest: Digest, block: Block): void {
  const { how } = block
  if (how === TEXT_BLOCK) {
    digest.add('text')
    feed(digest, block.first)
  } else if (how === CALL_BLOCK) {
    call(digest, block.first, block.second)
  } else if (how === RESULT_BLOCK) {
    result(digest, block.first, block.second)
  } else {
    // Reasoning, which partKind skips: hashed as hashPart hashes it parsed.
    hashPart(digest, block.span.decode())
  }
}

/** Whether a part is a tool call (the model's action), content, or carries nothing to hash (reasoning). */
export function partKind(part: unknown): PartKind {
  if (part instanceof JsonText) return 'content'
  if (part instanceof Block) return BLOCK_KINDS[part.how] as PartKind
  if (!isRecord(part)) return part === null || part === undefined ? 'skip' : 'content'
  if (typeof part.type === 'string') return typeKind(part.type)
  if (part.toolUse !== undefined || part.functionCall !== undefined) return 'call'
  // Bedrock reasoning blocks, Gemini thought summaries and bare cache points change nothing the model did.
  if (part.reasoningContent !== undefined || part.thought === true) return 'skip'
  // A Converse content block sets exactly one member, so a cache point block carries nothing else.
  if (part.cachePoint !== undefined) return 'skip'
  return 'content'
}

/** partKind of a block whose `type` is this string. */
function typeKind(type: string): PartKind {
  if (REASONING_TYPES.has(type)) return 'skip'
  if (CALL_TYPES.has(type) || type.endsWith('_call')) return 'call'
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
  if (part instanceof Block) {
    hashBlock(digest, part)
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

/** A tool call: its name and arguments, parsed or (of a Block) still in the body's bytes. */
function call(digest: Digest, name: unknown, args: unknown): void {
  digest.add('call')
  feed(digest, name)
  // Arguments arrive as a JSON string (OpenAI) or an object (Anthropic, Gemini, Bedrock): both hash as given.
  feed(digest, args)
}

function result(digest: Digest, content: unknown, flag: unknown): void {
  digest.add('result')
  if (Array.isArray(content)) {
    digest.add(`[${content.length}`)
    const count = Math.min(content.length, MAX_PARTS)
    for (let i = 0; i < count; i++) if (partKind(content[i]) !== 'skip') hashPart(digest, content[i])
  } else if (content instanceof JsonSpan && !content.isObject) {
    // An array still in the body's bytes: its elements read as parts, as the parsed array's are.
    const parts: unknown[] = []
    const length = content.elements(MAX_PARTS, parts)
    digest.add(`[${length}`)
    for (let i = 0; i < parts.length; i++) {
      const part = readPart(parts[i])
      if (partKind(part) !== 'skip') hashPart(digest, part)
    }
  } else {
    feed(digest, content)
  }
  digest.value(flag)
}
