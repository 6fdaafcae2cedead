import { createEventStreamFramer, type EventStreamMessage } from '../stream/event-stream.js'
import { isObject, type Json } from './body.js'
import { anthropicUsage, converseUsage, generatedTexts, invocationMetricsUsage } from './bedrock-native.js'
import type { OutputCounter } from '../tokens/output-counter.js'
import type { StreamParser, Usage } from './types.js'

/**
 * Parsers for Bedrock's event streams. InvokeModelWithResponseStream sends `chunk` events whose
 * payload `{"bytes":"<base64>"}` wraps one model-native JSON chunk; the last chunk carries
 * `amazon-bedrock-invocationMetrics`. ConverseStream sends typed events (`:event-type` messageStart,
 * contentBlockDelta, …, metadata) with usage in `metadata.usage`. Exceptions are frames with
 * `:message-type` `exception`.
 *
 * Generated text is counted by `counter` (o200k × the model family's factor from the pricing table).
 * A checksum failure ends parsing (see createEventStreamFramer): every byte after it counts as one
 * output token, an upper bound the meter can trust.
 * Output counts reported before the end of a stream (Anthropic's `message_start` says 1, AI21's first
 * chunk says 0) are ignored, so the meter counts deltas until a final count arrives.
 */
export function createBedrockStreamParser(kind: 'invoke' | 'converse', counter: OutputCounter): StreamParser {
  let usage: Usage = {}

  function addTexts(node: unknown): void {
    for (const text of generatedTexts(node)) counter.add(text)
  }

  function mergeInput(found: Usage | null): void {
    if (found === null) return
    const { outputTokens: _ignored, ...input } = found
    usage = { ...usage, ...definedFields(input) }
  }

  function mergeFinal(found: Usage | null): void {
    if (found !== null) usage = { ...usage, ...definedFields(found) }
  }

  function onChunk(chunk: Json): void {
    addTexts(chunk)
    if (chunk.type === 'message_start' && isObject(chunk.message)) mergeInput(anthropicUsage(chunk.message.usage))
    else if (chunk.type === 'message_delta') mergeFinal(anthropicUsage(chunk.usage))
    if (isObject(chunk.metadata)) mergeFinal(converseUsage(chunk.metadata.usage))
    if (isObject(chunk.usage) && typeof chunk.usage.prompt_tokens === 'number') mergeInput({ inputTokens: chunk.usage.prompt_tokens })
    if (typeof chunk.prompt_token_count === 'number') mergeInput({ inputTokens: chunk.prompt_token_count })
    // What Bedrock bills, on the last chunk of every family: it replaces anything reported before.
    const metrics = invocationMetricsUsage(chunk['amazon-bedrock-invocationMetrics'])
    if (metrics !== null) usage = metrics
  }

  function onConverseEvent(eventType: string, payload: Json): void {
    if (eventType === 'contentBlockDelta') addTexts(payload.delta)
    else if (eventType === 'contentBlockStart') addTexts(payload.start)
    else if (eventType === 'metadata') mergeFinal(converseUsage(payload.usage))
  }

  function onMessage(message: EventStreamMessage): void {
    if (message.headers[':message-type'] !== 'event') return
    const payload = parseJson(message.payload)
    if (!isObject(payload)) return
    const eventType = String(message.headers[':event-type'] ?? '')
    if (kind === 'converse') {
      onConverseEvent(eventType, payload)
    } else if (eventType === 'chunk' && typeof payload.bytes === 'string') {
      const chunk = parseJson(Buffer.from(payload.bytes, 'base64'))
      if (isObject(chunk)) onChunk(chunk)
    }
  }

  const framer = createEventStreamFramer(onMessage)
  return {
    push: (chunk) => framer.push(chunk),
    frames: (chunk) => framer.frames(chunk),
    flush: () => framer.flush(),
    reported: () => ({ ...usage }),
    // The final usage (metadata, invocation metrics) replaces the count; until then the count stands.
    outputTokens: () => usage.outputTokens ?? counter.tokens() + framer.corruptBytes(),
    // The meter's check before each frame, without tokenizing what waits (never below outputTokens).
    outputBound: () => usage.outputTokens ?? counter.bound() + framer.corruptBytes(),
  }
}

function definedFields(usage: Usage): Usage {
  const out: Usage = {}
  for (const [key, value] of Object.entries(usage) as Array<[keyof Usage, number | undefined]>) if (value !== undefined) out[key] = value
  return out
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch {
    return null
  }
}
