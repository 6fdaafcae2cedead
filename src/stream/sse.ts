import { createParser, type EventSourceMessage } from 'eventsource-parser'

/**
 * Splits a Server-Sent Events byte stream at event boundaries (a blank line after CR, LF or CRLF
 * line ends) and parses the completed events with eventsource-parser. Bytes are returned exactly as
 * received, only regrouped, so a meter can forward whole events and never cut one in half.
 */
export interface SseFramer {
  /** Consumes bytes; returns the bytes of every event completed so far (possibly empty). */
  push(chunk: Buffer): Buffer
  /**
   * Consumes bytes and yields each completed event's bytes one at a time, parsing an event just
   * before it is yielded; events not yet pulled stay pending (and unparsed) until the next call.
   */
  frames(chunk: Buffer): Generator<Buffer, void, undefined>
  /** Returns bytes of an unfinished trailing event (and parses it if it is complete data). */
  flush(): Buffer
}

const LF = 0x0a
const CR = 0x0d
const EMPTY = Buffer.alloc(0)

export function createSseFramer(onEvent: (event: EventSourceMessage) => void): SseFramer {
  const parser = createParser({ onEvent })
  const decoder = new TextDecoder()
  let pending: Buffer = EMPTY
  // Scan state carried across calls: how far `pending` was scanned without finding a boundary,
  // characters on the current line, and whether the last byte was a CR (its LF may follow later).
  let scanned = 0
  let lineLength = 0
  let afterCr = false

  function emit(bytes: Buffer): void {
    if (bytes.length > 0) parser.feed(decoder.decode(bytes, { stream: true }))
  }

  /** Index of the last byte of the first complete event in `pending`, or -1. */
  function nextBoundary(): number {
    for (let i = scanned; i < pending.length; i++) {
      const byte = pending[i]
      if (byte === LF) {
        if (afterCr) {
          // The LF of a CRLF pair: the line already ended at the CR.
          afterCr = false
          continue
        }
        if (lineLength === 0) return i
        lineLength = 0
      } else if (byte === CR) {
        if (lineLength === 0) {
          // A blank line: take its LF too when it is already here, else remember to skip it.
          if (pending[i + 1] === LF) return i + 1
          afterCr = true
          return i
        }
        lineLength = 0
        afterCr = true
      } else {
        lineLength++
        afterCr = false
      }
    }
    scanned = pending.length
    return -1
  }

  function* frames(chunk: Buffer): Generator<Buffer, void, undefined> {
    if (chunk.length > 0) pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    for (;;) {
      const boundary = nextBoundary()
      if (boundary < 0) return
      const frame = pending.subarray(0, boundary + 1)
      pending = boundary + 1 < pending.length ? pending.subarray(boundary + 1) : EMPTY
      scanned = 0
      lineLength = 0
      emit(frame)
      // A trailing CR may be half of a CRLF, so the parser would wait for the next byte before
      // dispatching; the event is complete, so end the line now (a later LF is then an empty line).
      if (frame[frame.length - 1] === CR) parser.feed('\n')
      yield frame
    }
  }

  return {
    push(chunk) {
      const complete = [...frames(chunk)]
      return complete.length === 1 ? (complete[0] as Buffer) : complete.length === 0 ? EMPTY : Buffer.concat(complete)
    },
    frames,
    flush() {
      const rest = pending
      pending = EMPTY
      scanned = 0
      emit(rest)
      // A final event without its blank line is still dispatched by a trailing line end.
      if (rest.length > 0) parser.feed('\n\n')
      return rest
    },
  }
}
