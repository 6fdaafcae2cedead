import { elementsOf, JsonSpan } from '../../http/json-elements.js'
import type { Json } from '../../providers/body.js'
import { MAX_PARTS, readPart } from '../parts.js'

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * The parts of a `content` value: an array's first MAX_PARTS elements, or the value itself (a string). Of one still in
 * a body's bytes (a JsonSpan), its elements are read from them (readPart).
 */
export function itemParts(content: unknown): unknown[] {
  if (Array.isArray(content)) return content.length <= MAX_PARTS ? [...content] : content.slice(0, MAX_PARTS)
  if (content instanceof JsonSpan) {
    if (content.isObject) return [readPart(content)]
    const parts: unknown[] = []
    content.elements(MAX_PARTS, parts)
    for (let i = 0; i < parts.length; i++) parts[i] = readPart(parts[i])
    return parts
  }
  return content === undefined || content === null ? [] : [content]
}

/** itemParts of `body[key]`; of a lazily read array member, only its first MAX_PARTS elements are read, from the bytes. */
export function memberParts(body: Json, key: string): unknown[] {
  const elements = elementsOf(body, key)
  if (elements === null) return itemParts(body[key])
  const parts = new Array<unknown>(Math.min(elements.length, MAX_PARTS))
  for (let i = 0; i < parts.length; i++) parts[i] = readPart(elements.undecoded(i))
  return parts
}
