import { arrayElements, elementsOf, type Elements } from '../../http/json-elements.js'
import type { LoopItem, LoopRole, LoopShape, LoopTranscript } from '../types.js'
import { isRecord, itemParts, memberParts } from './read.js'

/**
 * `messages: [{role, content}]` with instructions beside it: OpenAI and Mistral chat (`tool_calls`, `tool`
 * messages), Anthropic Messages (`tool_use`/`tool_result` blocks, `system`), Bedrock Converse (`toolUse`/
 * `toolResult` blocks, `system`) and Bedrock InvokeModel bodies of Claude, Nova and Mistral models.
 */

function readMessage(value: unknown): LoopItem | null {
  if (!isRecord(value)) return null
  const role = typeof value.role === 'string' ? value.role : 'user'
  const parts = itemParts(value.content)
  if (Array.isArray(value.tool_calls)) for (const call of value.tool_calls) parts.push(call)
  if (isRecord(value.function_call)) parts.push({ type: 'function_call', name: value.function_call.name, arguments: value.function_call.arguments })
  if (typeof value.refusal === 'string') parts.push(value.refusal)
  // `name` tells agents of one multi-agent chat apart.
  const tag = typeof value.name === 'string' ? `${role}:${value.name}` : role
  return { role: role === 'assistant' ? 'output' : 'input', tag, parts }
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

const readPrompt = (value: unknown): LoopItem => ({ role: 'input', tag: 'prompt', parts: [value] })
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
