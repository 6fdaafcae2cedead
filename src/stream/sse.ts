import { createParser, type EventSourceMessage } from 'eventsource-parser'

/**
 * Splits a Server-Sent Events byte stream at event boundaries (a blank line after CR, LF or CRLF
 * line ends) and parses the completed events with eventsource-parser. Bytes are returned exactly as
 * received, only regrouped, so a meter can forward whole events and never cut one in half.
 */
export interface SseFramer {
  /** Consumes bytes; returns the bytes of every event completed so far (possibly empty). */
  push(chunk: Buffer): Buffer
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
  // Scan state carried across chunks: characters on the current line, and whether the last byte was CR.
  let lineLength = 0
  let afterCr = false

  function emit(bytes: Buffer): void {
    if (bytes.length > 0) parser.feed(decoder.decode(bytes, { stream: true }))
  }

  return {
    push(chunk) {
      const start = pending.length
      const data = start === 0 ? chunk : Buffer.concat([pending, chunk])
      let boundary = -1
      for (let i = start; i < data.length; i++) {
        const byte = data[i]
        if (byte === LF) {
          if (afterCr) {
            // The LF of a CRLF pair: the line already ended at the CR.
            afterCr = false
            if (boundary === i - 1) boundary = i
            continue
          }
          if (lineLength === 0) boundary = i
          lineLength = 0
        } else if (byte === CR) {
          if (lineLength === 0) boundary = i
          lineLength = 0
          afterCr = true
        } else {
          lineLength++
          afterCr = false
        }
      }
      if (boundary < 0) {
        pending = data
        return EMPTY
      }
      const complete = data.subarray(0, boundary + 1)
      pending = boundary + 1 < data.length ? Buffer.from(data.subarray(boundary + 1)) : EMPTY
      emit(complete)
      return complete
    },
    flush() {
      const rest = pending
      pending = EMPTY
      emit(rest)
      // A final event without its blank line is still dispatched by a trailing line end.
      if (rest.length > 0) parser.feed('\n\n')
      return rest
    },
  }
}
