import type { LoopShape } from '../types.js'
import { geminiShape } from './gemini.js'
import { invokeShape, messagesShape, promptShape } from './messages.js'
import { responsesShape } from './responses.js'

/** Every wire shape by a name that crosses to the counting worker, which fingerprints big bodies itself. */
export const LOOP_SHAPES: Readonly<Record<string, LoopShape>> = {
  messages: messagesShape,
  prompt: promptShape,
  invoke: invokeShape,
  responses: responsesShape,
  gemini: geminiShape,
}

/** The name `LOOP_SHAPES` knows `shape` by; null for a shape it does not list. */
export function loopShapeName(shape: LoopShape): string | null {
  for (const [name, known] of Object.entries(LOOP_SHAPES)) if (known === shape) return name
  return null
}
