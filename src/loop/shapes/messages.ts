import type { LoopItem, LoopShape, LoopTranscript } from '../types.js'
import { isRecord, itemParts } from './read.js'

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

export const messagesShape: LoopShape = {
  read(body): LoopTranscript | null {
    if (!Array.isArray(body.messages)) return null
    return { system: itemParts(body.system), thread: undefined, items: body.messages, item: readMessage }
  },
}

const readPrompt = (value: unknown): LoopItem => ({ role: 'input', tag: 'prompt', parts: [value] })

/** A bare prompt string (Bedrock InvokeModel for Llama, Titan, Cohere…): only exact repeats are visible. */
export const promptShape: LoopShape = {
  read(body): LoopTranscript | null {
    const prompt = typeof body.prompt === 'string' ? body.prompt : body.inputText
    if (typeof prompt !== 'string') return null
    return { system: itemParts(body.system), thread: undefined, items: [prompt], item: readPrompt }
  },
}

/** Bedrock InvokeModel: a model-native body, a `messages` list or a bare prompt. */
export const invokeShape: LoopShape = {
  read: (body) => messagesShape.read(body) ?? promptShape.read(body),
}
