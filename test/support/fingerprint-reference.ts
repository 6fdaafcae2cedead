import type { Json } from '../../src/providers/body.js'
import { Digest } from '../../src/loop/digest.js'
import { hashPart, MAX_PARTS, partKind } from '../../src/loop/parts.js'

/**
 * The loop fingerprint as it was read before issue 12's transcript readers: every item parsed, then classified.
 * The differential tests hold fingerprintRequest, on a parsed and on a lazily read body, to this digest.
 */

interface Item {
  role: 'input' | 'output'
  tag: string
  parts: readonly unknown[]
}
interface Transcript {
  system: readonly unknown[]
  thread: unknown
  items: readonly unknown[]
  item(value: unknown): Item | null
}
export type ReferenceShape = (body: Json) => Transcript | null

const STEP_EXCHANGES = 2
const OPENING_ITEMS = 16
const STEP_ITEMS = 64
const MAX_NODES = 4096
const OPENING_CHARS = 32 * 1024
const STEP_CHARS = 96 * 1024

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

function itemParts(content: unknown): unknown[] {
  if (Array.isArray(content)) return content.length <= MAX_PARTS ? [...content] : content.slice(0, MAX_PARTS)
  return content === undefined || content === null ? [] : [content]
}

function readMessage(value: unknown): Item | null {
  if (!isRecord(value)) return null
  const role = typeof value.role === 'string' ? value.role : 'user'
  const parts = itemParts(value.content)
  if (Array.isArray(value.tool_calls)) for (const call of value.tool_calls) parts.push(call)
  if (isRecord(value.function_call)) parts.push({ type: 'function_call', name: value.function_call.name, arguments: value.function_call.arguments })
  if (typeof value.refusal === 'string') parts.push(value.refusal)
  const tag = typeof value.name === 'string' ? `${role}:${value.name}` : role
  return { role: role === 'assistant' ? 'output' : 'input', tag, parts }
}

const messages: ReferenceShape = (body) =>
  Array.isArray(body.messages) ? { system: itemParts(body.system), thread: undefined, items: body.messages, item: readMessage } : null

const prompt: ReferenceShape = (body) => {
  const text = typeof body.prompt === 'string' ? body.prompt : body.inputText
  if (typeof text !== 'string') return null
  return { system: itemParts(body.system), thread: undefined, items: [text], item: (value) => ({ role: 'input', tag: 'prompt', parts: [value] }) }
}

function readResponsesItem(value: unknown): Item | null {
  if (typeof value === 'string') return { role: 'input', tag: 'user', parts: [value] }
  if (!isRecord(value)) return null
  const type = typeof value.type === 'string' ? value.type : 'message'
  if (type === 'message') {
    const role = typeof value.role === 'string' ? value.role : 'user'
    return { role: role === 'assistant' ? 'output' : 'input', tag: role, parts: itemParts(value.content) }
  }
  if (type === 'reasoning') return null
  if (type === 'item_reference') return { role: 'input', tag: type, parts: [{ reference: value.id }] }
  return { role: type.endsWith('_call') ? 'output' : 'input', tag: type, parts: [value] }
}

const responses: ReferenceShape = (body) => {
  const input = body.input
  if (typeof input !== 'string' && !Array.isArray(input)) return null
  const conversation = isRecord(body.conversation) ? body.conversation.id : body.conversation
  return { system: itemParts(body.instructions), thread: conversation, items: typeof input === 'string' ? [input] : input, item: readResponsesItem }
}

function readContent(value: unknown): Item | null {
  if (!isRecord(value)) return null
  const role = typeof value.role === 'string' ? value.role : 'user'
  return { role: role === 'model' ? 'output' : 'input', tag: role, parts: itemParts(value.parts) }
}

const gemini: ReferenceShape = (body) => {
  const contents = isRecord(body.contents) ? [body.contents] : body.contents
  if (!Array.isArray(contents)) return null
  const system = body.systemInstruction ?? body.system_instruction
  return { system: itemParts(isRecord(system) ? system.parts : system), thread: body.cachedContent ?? body.cached_content, items: contents, item: readContent }
}

/** The reference reader of each name of LOOP_SHAPES. */
export const REFERENCE_SHAPES: Readonly<Record<string, ReferenceShape>> = {
  messages,
  prompt,
  invoke: (body) => messages(body) ?? prompt(body),
  responses,
  gemini,
}

const digest = new Digest(0, 0)

/** `{ conversation, step }` of `body` read by `shape`, or null, as fingerprintRequest gave them before issue 12. */
export function referenceFingerprint(shape: ReferenceShape, body: Json): { conversation: string; step: string } | null {
  const transcript = shape(body)
  if (transcript === null || transcript.items.length === 0) return null
  digest.start(MAX_NODES, OPENING_CHARS)
  hashParts('input', 'system', transcript.system, false)
  digest.add('thread')
  digest.value(transcript.thread)
  const { items } = transcript
  for (let i = 0; i < Math.min(items.length, OPENING_ITEMS); i++) {
    const item = transcript.item(items[i])
    if (item === null) continue
    if (item.role === 'output') break
    hashParts(item.role, item.tag, item.parts, false)
  }
  const conversation = digest.hex()
  digest.start(MAX_NODES, STEP_CHARS)
  const newest: Item[] = []
  let turns = 0
  let inOutput = false
  const stop = Math.max(-1, items.length - 1 - 4 * STEP_ITEMS)
  for (let i = items.length - 1; i > stop && newest.length < STEP_ITEMS; i--) {
    const item = transcript.item(items[i])
    if (item === null) continue
    if (item.role === 'output') {
      if (!inOutput) turns++
      inOutput = true
    } else {
      if (inOutput && turns === STEP_EXCHANGES) break
      inOutput = false
    }
    newest.push(item)
  }
  for (let i = newest.length - 1; i >= 0; ) {
    const first = newest[i] as Item
    if (first.role === 'input') {
      hashParts(first.role, first.tag, first.parts, false)
      i--
      continue
    }
    let end = i
    let calls = false
    while (end >= 0 && (newest[end] as Item).role === 'output') {
      calls ||= (newest[end] as Item).parts.some((part) => partKind(part) === 'call')
      end--
    }
    for (let j = i; j > end; j--) {
      const item = newest[j] as Item
      if (!calls || item.parts.some((part) => partKind(part) === 'call')) hashParts(item.role, item.tag, item.parts, calls)
    }
    i = end
  }
  return { conversation, step: digest.hex() }
}

function hashParts(role: Item['role'], tag: string, parts: readonly unknown[], callsOnly: boolean): void {
  digest.add(role === 'output' ? 'out' : 'in')
  digest.add(tag)
  for (const part of parts) {
    const kind = partKind(part)
    if (kind === 'skip' || (callsOnly && kind !== 'call')) continue
    hashPart(digest, part)
  }
}
