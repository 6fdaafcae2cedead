import { arrayElements, elementsOf, type Elements } from '../../http/json-elements.js'
import type { LoopItem, LoopRole, LoopShape, LoopTranscript } from '../types.js'
import { isRecord, itemParts, memberParts } from './read.js'

/**
 * OpenAI Responses API `input`: a string, or items — messages by role, `*_call` items the model made
 * (function, custom, shell, computer…), `*_output` items answering them, and reasoning (ignored).
 */

/** The role of an item of `type` (a message's: by `role`); null for reasoning, which is ignored. */
function itemRole(type: string, role: unknown): LoopRole | null {
  if (type === 'message') return role === 'assistant' ? 'output' : 'input'
  if (type === 'reasoning') return null
  return type.endsWith('_call') ? 'output' : 'input'
}

function readItem(value: unknown): LoopItem | null {
  if (typeof value === 'string') return { role: 'input', tag: 'user', parts: [value] }
  if (!isRecord(value)) return null
  const type = typeof value.type === 'string' ? value.type : 'message'
  const role = itemRole(type, value.role)
  if (role === null) return null
  if (type === 'message') return { role, tag: typeof value.role === 'string' ? value.role : 'user', parts: itemParts(value.content) }
  // An item reference is nothing but the id of stored content: its id is the content.
  if (type === 'item_reference') return { role, tag: type, parts: [{ reference: value.id }] }
  return { role, tag: type, parts: [value] }
}

/** readItem's role, from the item's `type` and `role` alone. */
function readRole(items: Elements, index: number): LoopRole | null {
  const kind = items.typeOf(index)
  if (kind === 'string') return 'input'
  if (kind !== 'object') return null
  const type = items.member(index, 'type')
  if (typeof type === 'string' && type !== 'message') return itemRole(type, undefined)
  return itemRole('message', items.member(index, 'role'))
}

const readItemAt = (items: Elements, index: number): LoopItem | null => readItem(items.value(index))

export const responsesShape: LoopShape = {
  read(body): LoopTranscript | null {
    let items = elementsOf(body, 'input')
    if (items === null) {
      if (typeof body.input !== 'string') return null
      items = arrayElements([body.input])
    }
    const conversation = isRecord(body.conversation) ? body.conversation.id : body.conversation
    return { system: memberParts(body, 'instructions'), thread: conversation, items, role: readRole, item: readItemAt }
  },
}
