import { arrayElements, elementsOf, type Elements } from '../../http/json-elements.js'
import type { LoopItem, LoopRole, LoopShape, LoopTranscript } from '../types.js'
import { isRecord, itemParts, memberParts } from './read.js'

/**
 * `messages: [{role, content}]` with instructions beside it: OpenAI and Mistral chat (`tool_calls`, `tool`
 * messages), Anthropic Messages (`tool_use`/`tool_result` blocks, `system`), Bedrock Converse (`toolUse`/
 * `toolResult` blocks, `system`) and Bedrock InvokeModel bodies of Claude, Nova and Mistral models.
 */

// A message's members that readMessage reads, and the bit of those whose string comes undecoded: its content, which
// the digest reads from its bytes (parts.ts). Tool calls come parsed: read as Blocks from their bytes they cost as much
// time and more heap (a members array, a Block and spans per call) than JSON.parse of their ~100 bytes. (Read as a Block
// of `function`'s name and arguments, undecoded: +8.5 % callgrind instructions a 33 KB chat fingerprint, +1 KB heap.)
const MESSAGE_MEMBERS = ['role', 'content', 'tool_calls', 'function_call', 'refusal', 'name']
const UNDECODED_CONTENT = 0b10
// Reused by every message read (readMessage runs to its end without a pause), emptied after each.
const members: unknown[] = new Array(MESSAGE_MEMBERS.length).fill(undefined)

/** Message `index` of `items`, its content read from its bytes when the message is of a lazily read body. */
function readMessage(items: Elements, index: number): LoopItem | null {
  if (!items.spanned) {
    const value = items.value(index)
    return isRecord(value) ? message(value.role, value.content, value.tool_calls, value.function_call, value.refusal, value.name) : null
  }
  if (!items.members(index, MESSAGE_MEMBERS, UNDECODED_CONTENT, members)) return null
  const item = message(members[0], members[1], members[2], members[3], members[4], members[5])
  for (let n = 0; n < members.length; n++) members[n] = undefined
  return item
}

/** A message of these members (each undefined when absent). */
function message(role: unknown, content: unknown, toolCalls: unknown, functionCall: unknown, refusal: unknown, name: unknown): LoopItem {
  const tag = typeof role === 'string' ? role : 'user'
  const parts = itemParts(content)
  if (Array.isArray(toolCalls)) for (const call of toolCalls) parts.push(call)
  if (isRecord(functionCall)) parts.push({ type: 'function_call', name: functionCall.name, arguments: functionCall.arguments })
  if (typeof refusal === 'string') parts.push(refusal)
  // `name` tells agents of one multi-agent chat apart.
  return { role: tag === 'assistant' ? 'output' : 'input', tag: typeof name === 'string' ? `${tag}:${name}` : tag, parts }
}

/** readMessage's role, from the message's `role` alone. */
function messageRole(items: Elements, index: number): LoopRole | null {
  if (items.typeOf(index) !== 'object') return null
  return items.member(index, 'role') === 'assistant' ? 'output' : 'input'
}

export const messagesShape: LoopShape = {
  read(body): LoopTranscript | null {
    const items = elementsOf(body, 'messages')
    if (items === null) return null
    return { system: memberParts(body, 'system'), thread: undefined, items, role: messageRole, item: readMessage }
  },
}

const readPrompt = (items: Elements, index: number): LoopItem => ({ role: 'input', tag: 'prompt', parts: [items.value(index)] })
const promptRole = (): LoopRole => 'input'

/** A bare prompt string (Bedrock InvokeModel for Llama, Titan, Cohere…): only exact repeats are visible. */
export const promptShape: LoopShape = {
  read(body): LoopTranscript | null {
    const prompt = typeof body.prompt === 'string' ? body.prompt : body.inputText
    if (typeof prompt !== 'string') return null
    return { system: memberParts(body, 'system'), thread: undefined, items: arrayElements([prompt]), role: promptRole, item: readPrompt }
  },
}

/** Bedrock InvokeModel: a model-native body, a `messages` list or a bare prompt. */
export const invokeShape: LoopShape = {
  read: (body) => messagesShape.read(body) ?? promptShape.read(body),
}
