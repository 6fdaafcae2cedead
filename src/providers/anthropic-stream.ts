/**
 * Anthropic Messages streams: what a stream's events report (usage) and generate (text the counter meters).
 */
import { createSseFramer } from '../stream/sse.js'
import { StringSlot } from '../stream/string-slot.js'
import type { OutputCounter } from '../tokens/output-counter.js'
import { isObject, readCount, type Json } from './body.js'
import type { StreamParser, Usage } from './types.js'

// Each content block costs delimiter tokens no delta shows (thinking blocks and tool calls are wrapped).
const BLOCK_OVERHEAD_TOKENS = 16
const TEXT_BLOCK_OVERHEAD_TOKENS = 2

/** Copies the input counters a usage object reports; absent or null fields stay unset. */
function readInputUsage(target: Usage, usage: Json): void {
  // `input_tokens` already excludes cache reads and writes, which Anthropic prices apart.
  const input = readCount(usage, 'input_tokens')
  const cacheRead = readCount(usage, 'cache_read_input_tokens')
  const cacheWrite = readCount(usage, 'cache_creation_input_tokens')
  if (input !== undefined) target.inputTokens = input
  if (cacheRead !== undefined) target.cachedInputTokens = cacheRead
  if (cacheWrite !== undefined) target.cacheWriteTokens = cacheWrite
}

/** Usage of a complete Message; null when it has none. */
export function messageUsage(usage: unknown): Usage | null {
  if (!isObject(usage)) return null
  const result: Usage = { outputTokens: readCount(usage, 'output_tokens') ?? 0 }
  readInputUsage(result, usage)
  return result
}

/** Counts generated text (an o200k estimate × the pricing table's factor) and keeps the usage the stream reported. */
class MessagesStreamState {
  usage: Usage = {}
  failed = false

  constructor(readonly counter: OutputCounter) {}

  add(value: unknown): void {
    this.counter.add(value)
  }

  /** A block opens: text, thinking and tool names may already carry generated text (tool results do not). */
  blockStart(block: unknown): void {
    this.counter.addTokens(isObject(block) && block.type === 'text' ? TEXT_BLOCK_OVERHEAD_TOKENS : BLOCK_OVERHEAD_TOKENS)
    if (!isObject(block)) return
    this.add(block.text)
    this.add(block.thinking)
    // redacted_thinking: billed thinking shown only encrypted; the counter cannot know it, its bytes bound it.
    if (typeof block.data === 'string') this.counter.addTokens(Buffer.byteLength(block.data))
    if (typeof block.type === 'string' && block.type.endsWith('tool_use')) {
      this.add(block.name)
      if (isObject(block.input) && Object.keys(block.input).length > 0) this.add(JSON.stringify(block.input))
    }
  }

  delta(delta: unknown): void {
    if (!isObject(delta)) return
    switch (delta.type) {
      case 'text_delta':
        return this.add(delta.text)
      case 'thinking_delta':
        return this.add(delta.thinking)
      case 'input_json_delta':
        return this.add(delta.partial_json)
      case 'citations_delta':
        // Not billed as output by Anthropic; counted anyway, an upper bound may overshoot.
        return this.add(isObject(delta.citation) ? delta.citation.cited_text : undefined)
      case 'signature_delta':
        return // an integrity signature over the thinking, not generated tokens
      default:
        // A delta type this proxy does not know yet (e.g. beta `compaction_delta`): count every string in it.
        for (const [field, value] of Object.entries(delta)) if (field !== 'type') this.add(value)
    }
  }

  /** `message_delta` usage is cumulative; counters it omits or nulls keep their value. */
  messageDelta(usage: unknown): void {
    if (!isObject(usage)) return
    readInputUsage(this.usage, usage)
    const output = readCount(usage, 'output_tokens')
    if (output !== undefined) this.usage.outputTokens = output
  }
}

/** Reads one parsed Messages stream event (`event`: its SSE event field) into `state`. */
function readMessagesEvent(data: Json, event: string | undefined, state: MessagesStreamState): void {
  switch (typeof data.type === 'string' ? data.type : event) {
    case 'message_start':
      if (isObject(data.message) && isObject(data.message.usage)) readInputUsage(state.usage, data.message.usage)
      return
    case 'content_block_start':
      return state.blockStart(data.content_block)
    case 'content_block_delta':
      return state.delta(data.delta)
    case 'message_delta':
      return state.messageDelta(data.usage)
    case 'error':
      state.failed = true
      return
    default:
      return // ping, content_block_stop, message_stop
  }
}

/**
 * Reads a Messages stream's events into its state. A text delta that is the last parsed event with other text
 * (nearly every event: same type, block index) is read through a slot, without JSON.parse: its full reading
 * would do nothing but count that text, as the slot's probe showed.
 */
class MessagesEventReader {
  private readonly slot = new StringSlot()
  // The SSE event type of the events the slot reads.
  private slotEvent: string | undefined = undefined

  constructor(private readonly state: MessagesStreamState) {}

  read(text: string, event: string | undefined): void {
    const { state, slot } = this
    if (event === 'error') state.failed = true
    const slotted = event === this.slotEvent ? slot.read(text) : undefined
    if (slotted !== undefined) return state.add(slotted)
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch {
      return
    }
    if (!isObject(data)) return
    readMessagesEvent(data, event, state)
    this.learn(text, event)
  }

  private learn(text: string, event: string | undefined): void {
    const context = this.slot.learnChecked(text, '"text":"', (data, counter) => {
      if (event === 'error' || !isObject(data)) return false
      const record = new MessagesStreamState(counter)
      readMessagesEvent(data, event, record)
      return !record.failed && Object.keys(record.usage).length === 0
    })
    if (context !== null) this.slotEvent = event
  }
}

/**
 * Parser for Messages streams. Input usage comes first, in `message_start`; its `output_tokens` is a
 * placeholder, so output stays unreported (the counter meters it) until `message_delta` gives the total.
 */
export function createMessagesStreamParser(counter: OutputCounter): StreamParser {
  const state = new MessagesStreamState(counter)
  const events = new MessagesEventReader(state)
  const framer = createSseFramer((text, event) => events.read(text, event))
  return {
    push: (chunk) => framer.push(chunk),
    frames: (chunk) => framer.frames(chunk),
    flush: () => framer.flush(),
    reported: () => state.usage,
    // `message_delta` reports the total; until then the counter's estimate stands.
    outputTokens: () => state.usage.outputTokens ?? state.counter.tokens(),
    // The meter's check before each frame, without tokenizing what waits (never below outputTokens).
    outputBound: () => state.usage.outputTokens ?? state.counter.bound(),
  }
}
