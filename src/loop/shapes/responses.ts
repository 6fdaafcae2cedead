import { arrayElements, elementsOf, type Elements } from '../../http/json-elements.js'
import { readPart } from '../parts.js'
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

// An item's members readItemAt reads from a lazily read body's bytes, and the bit of its content, left undecoded.
const ITEM_MEMBERS = ['type', 'role', 'content']
const UNDECODED_CONTENT = 0b100
// Reused by every item read (readItemAt runs to its end without a pause), emptied after each.
const members: unknown[] = new Array(ITEM_MEMBERS.length).fill(undefined)

/** readItem of item `index`, read from its bytes when the item is of a lazily read body: a call or output item as a part. */
function readItemAt(items: Elements, index: number): LoopItem | null {
  if (!items.spanned) return readItem(items.value(index))
  const kind = items.typeOf(index)
  if (kind === 'string') return { role: 'input', tag: 'user', parts: [items.undecoded(index)] }
  if (kind !== 'object') return null
  items.members(index, ITEM_MEMBERS, UNDECODED_CONTENT, members)
  const [declared, tag, content] = members
  for (let n = 0; n < members.length; n++) members[n] = undefined
  const type = typeof declared === 'string' ? declared : 'message'
  const role = itemRole(type, tag)
  if (role === null) return null
  if (type === 'message') return { role, tag: typeof tag === 'string' ? tag : 'user', parts: itemParts(content) }
  if (type === 'item_reference') return readItem(items.value(index))
  return { role, tag: type, parts: [readPart(items.undecoded(index))] }
}

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
