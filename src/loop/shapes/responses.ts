import type { LoopItem, LoopShape, LoopTranscript } from '../types.js'
import { isRecord, itemParts } from './read.js'

/**
 * OpenAI Responses API `input`: a string, or items — messages by role, `*_call` items the model made
 * (function, custom, shell, computer…), `*_output` items answering them, and reasoning (ignored).
 */

function readItem(value: unknown): LoopItem | null {
  if (typeof value === 'string') return { role: 'input', tag: 'user', parts: [value] }
  if (!isRecord(value)) return null
  const type = typeof value.type === 'string' ? value.type : 'message'
  if (type === 'message') {
    const role = typeof value.role === 'string' ? value.role : 'user'
    return { role: role === 'assistant' ? 'output' : 'input', tag: role, parts: itemParts(value.content) }
  }
  if (type === 'reasoning') return null
  // An item reference is nothing but the id of stored content: its id is the content.
  if (type === 'item_reference') return { role: 'input', tag: type, parts: [{ reference: value.id }] }
  return { role: type.endsWith('_call') ? 'output' : 'input', tag: type, parts: [value] }
}

export const responsesShape: LoopShape = {
  read(body): LoopTranscript | null {
    const input = body.input
    if (typeof input !== 'string' && !Array.isArray(input)) return null
    const conversation = isRecord(body.conversation) ? body.conversation.id : body.conversation
    return { system: itemParts(body.instructions), thread: conversation, items: typeof input === 'string' ? [input] : input, item: readItem }
  },
}
