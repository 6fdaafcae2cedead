import { arrayElements, elementsOf, type Elements } from '../../http/json-elements.js'
import type { LoopItem, LoopRole, LoopShape, LoopTranscript } from '../types.js'
import { isRecord, itemParts } from './read.js'

/** Gemini `contents: [{role: 'user'|'model', parts}]` with `systemInstruction`; a cached context opens the thread. */

function readContent(value: unknown): LoopItem | null {
  if (!isRecord(value)) return null
  const role = typeof value.role === 'string' ? value.role : 'user'
  return { role: role === 'model' ? 'output' : 'input', tag: role, parts: itemParts(value.parts) }
}

/** readContent's role, from the content's `role` alone. */
function contentRole(items: Elements, index: number): LoopRole | null {
  if (items.typeOf(index) !== 'object') return null
  return items.member(index, 'role') === 'model' ? 'output' : 'input'
}

const readContentAt = (items: Elements, index: number): LoopItem | null => readContent(items.value(index))

export const geminiShape: LoopShape = {
  read(body): LoopTranscript | null {
    let items = elementsOf(body, 'contents')
    if (items === null) {
      if (!isRecord(body.contents)) return null
      items = arrayElements([body.contents])
    }
    const system = body.systemInstruction ?? body.system_instruction
    return { system: itemParts(isRecord(system) ? system.parts : system), thread: body.cachedContent ?? body.cached_content, items, role: contentRole, item: readContentAt }
  },
}
