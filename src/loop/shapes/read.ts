import { MAX_PARTS } from '../parts.js'

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The parts of a `content` value: an array's first MAX_PARTS elements, or the value itself (a string). */
export function itemParts(content: unknown): unknown[] {
  if (Array.isArray(content)) return content.length <= MAX_PARTS ? [...content] : content.slice(0, MAX_PARTS)
  return content === undefined || content === null ? [] : [content]
}
