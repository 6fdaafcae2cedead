import type { Elements } from '../http/json-elements.js'
import type { Json } from '../providers/body.js'

/** The loop guard's view of one request: which conversation it belongs to and which step it takes. */
export interface LoopFingerprint {
  /** 16 hex chars: the conversation's opening (instructions + first user turn); the scope when there is no session. */
  conversation: string
  /** 16 hex chars: the conversation's newest exchanges (not its opening); a repeated step yields the same value. */
  step: string
}

/** 'output' is what the model produced (assistant turns, tool calls); 'input' is what the client added. */
export type LoopRole = 'input' | 'output'

/** One item of a conversation as a wire shape reads it; null for items carrying no content (reasoning). */
export interface LoopItem {
  role: LoopRole
  /** The wire role or item type ('user', 'tool', 'system', 'function_call_output'…): told apart in the hash. */
  tag: string
  /** The item's parts, each read by `hashPart` (strings, content blocks, tool calls, tool results). */
  parts: readonly unknown[]
}

/** A conversation as sent: oldest item first. */
export interface LoopTranscript {
  /** Parts of the instructions outside the item list (Anthropic/Bedrock `system`, Gemini `systemInstruction`, Responses `instructions`). */
  system: readonly unknown[]
  /** A server-side conversation id the body continues (Responses `conversation`), hashed into the opening; else undefined. */
  thread: unknown
  /** The items, read one at a time: of a lazily read body, from their bytes (http/json-elements.ts). */
  items: Elements
  /** `item(items, index)?.role ?? null`, read without reading the whole item: its type and a member or two. */
  role(items: Elements, index: number): LoopRole | null
  /**
   * Reads item `index` of `items`; null means the item is ignored (reasoning, unknown garbage). A string part may come
   * as a JsonText (http/json-elements.ts), a content block as read by parts.ts `readPart`: read from its bytes by hashPart.
   */
  item(items: Elements, index: number): LoopItem | null
}

/**
 * A request wire format the loop guard can read (OpenAI chat, Responses, Anthropic/Bedrock messages,
 * Gemini contents, a bare prompt). Adapters pick one per route; the guard never sees a provider id.
 */
export interface LoopShape {
  /** The conversation in a request body, or null when the body holds none (a malformed or non-chat body). */
  read(body: Json): LoopTranscript | null
}
