import type { LoopItem, LoopShape, LoopTranscript } from '../types.js'
import { isRecord, itemParts } from './read.js'

/** Gemini `contents: [{role: 'user'|'model', parts}]` with `systemInstruction`; a cached context opens the thread. */

function readContent(value: unknown): LoopItem | null {
  if (!isRecord(value)) return null
  const role = typeof value.role === 'string' ? value.role : 'user'
  return { role: role === 'model' ? 'output' : 'input', tag: role, parts: itemParts(value.parts) }
}

export const geminiShape: LoopShape = {
  read(body): LoopTranscript | null {
    const contents = isRecord(body.contents) ? [body.contents] : body.contents
    if (!Array.isArray(contents)) return null
    const system = body.systemInstruction ?? body.system_instruction
    return { system: itemParts(isRecord(system) ? system.parts : system), thread: body.cachedContent ?? body.cached_content, items: contents, item: readContent }
  },
}
