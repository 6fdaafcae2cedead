import type { Json } from '../providers/body.js'
import { Digest } from './digest.js'
import { hashPart, partKind } from './parts.js'
import type { LoopFingerprint, LoopItem, LoopShape, LoopTranscript } from './types.js'

/**
 * A step is a conversation's newest STEP_EXCHANGES exchanges; an exchange is one model turn
 * and the input that answers it (tool results, the next user message). Two exchanges, not one, so an
 * agent re-running the same check between different edits makes progress, while a loop of any period
 * still repeats its steps.
 */
const STEP_EXCHANGES = 2

// Bounds that keep a 10 MiB body as cheap as a small one: items read from each end, values and characters hashed.
const OPENING_ITEMS = 16
const STEP_ITEMS = 64
const MAX_NODES = 4096
const OPENING_CHARS = 32 * 1024
const STEP_CHARS = 96 * 1024

// One digest and one list of newest items serve every fingerprint in turn (fingerprintRequest runs to its end
// without a pause): none is made per request. Both are emptied once read, so no request's content is kept.
const digest = new Digest(0, 0)
const newest: Array<LoopItem | undefined> = new Array(STEP_ITEMS).fill(undefined)

/**
 * The loop fingerprint of a request whose body has the given wire shape; null when the route has no
 * shape (embeddings, FIM) or the body holds no conversation. Reads only the opening and the newest items.
 */
export function fingerprintRequest(shape: LoopShape | null, body: Json): LoopFingerprint | null {
  const transcript = shape?.read(body) ?? null
  if (transcript === null || transcript.items.length === 0) return null
  const conversation = hashOpening(transcript)
  // The step leaves the opening out: within a session it stays the same when the opening does not
  // (agents that put the time or a scratchpad into their system prompt).
  digest.start(MAX_NODES, STEP_CHARS)
  hashNewest(transcript)
  return { conversation, step: digest.hex() }
}

/** Instructions, the server-side thread, and the first run of input items (the first user turn). */
function hashOpening(transcript: LoopTranscript): string {
  digest.start(MAX_NODES, OPENING_CHARS)
  hashParts('input', 'system', transcript.system, false)
  digest.add('thread')
  digest.value(transcript.thread)
  const { items } = transcript
  const end = Math.min(items.length, OPENING_ITEMS)
  for (let i = 0; i < end; i++) {
    // The first model turn ends the opening: it is classified, never parsed.
    const role = transcript.role(items, i)
    if (role === null) continue
    if (role === 'output') break
    const item = transcript.item(items, i)
    if (item !== null) hashItem(item, false)
  }
  return digest.hex()
}

/** The newest exchanges: items from the end back to the start of the STEP_EXCHANGES-th model turn from the end. */
function hashNewest(transcript: LoopTranscript): void {
  const { items } = transcript
  // newest[0, count): the items taken, newest first.
  let count = 0
  let turns = 0
  let inOutput = false
  const stop = Math.max(-1, items.length - 1 - 4 * STEP_ITEMS)
  for (let i = items.length - 1; i > stop && count < STEP_ITEMS; i--) {
    // An item is parsed once taken: the one that ends the step is classified only.
    const role = transcript.role(items, i)
    if (role === null) continue
    if (role === 'output') {
      if (!inOutput) turns++
      inOutput = true
    } else {
      if (inOutput && turns === STEP_EXCHANGES) break
      inOutput = false
    }
    const item = transcript.item(items, i)
    if (item !== null) newest[count++] = item
  }
  // Oldest first; a model turn is hashed whole so that its tool calls, when it made any, replace its text.
  for (let i = count - 1; i >= 0; ) {
    const first = newest[i] as LoopItem
    if (first.role === 'input') {
      hashItem(first, false)
      i--
      continue
    }
    let end = i
    let calls = false
    while (end >= 0 && (newest[end] as LoopItem).role === 'output') {
      calls ||= (newest[end] as LoopItem).parts.some((part) => partKind(part) === 'call')
      end--
    }
    for (let j = i; j > end; j--) {
      const item = newest[j] as LoopItem
      if (!calls || item.parts.some((part) => partKind(part) === 'call')) hashItem(item, calls)
    }
    i = end
  }
  // A loop, not fill(undefined, 0, count): TurboFan leaves that fill to a C++ builtin, a runtime call every request.
  for (let i = 0; i < count; i++) newest[i] = undefined
}

/**
 * One item: its tag and parts. `callsOnly` keeps only the tool calls of a model turn that made some:
 * the text around a call varies from run to run while the action repeats.
 */
function hashItem(item: LoopItem, callsOnly: boolean): void {
  hashParts(item.role, item.tag, item.parts, callsOnly)
}

/** hashItem of an item given by its members (the instructions are no item of the list). */
function hashParts(role: LoopItem['role'], tag: string, parts: readonly unknown[], callsOnly: boolean): void {
  digest.add(role === 'output' ? 'out' : 'in')
  digest.add(tag)
  for (const part of parts) {
    const kind = partKind(part)
    if (kind === 'skip' || (callsOnly && kind !== 'call')) continue
    hashPart(digest, part)
  }
}
