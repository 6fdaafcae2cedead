/**
 * Splits a streamed JSON array (`[{…}\n,\r\n{…}\n]`, as Google APIs stream without `alt=sse`) into
 * frames that each end with a complete element (or with the array's closing `]`), and hands every
 * complete element's text to `onElement`. Bytes are returned exactly as received, only regrouped, so a
 * meter can forward whole elements and never cut one in half. A body that does not start with `[` is
 * passed through as it comes (`onOpaque` sees those bytes).
 */
export interface JsonArrayFramer {
  /** Consumes bytes; returns the bytes of every frame completed so far (possibly empty). */
  push(chunk: Buffer): Buffer
  /** Returns the bytes of an unfinished trailing frame (and parses a trailing scalar element). */
  flush(): Buffer
  /** Where a reader stands after the first `bytes` bytes of the returned frames: what may follow. */
  stateAt(bytes: number): JsonArrayState
}

/**
 * `before`: no `[` yet; `open`: inside the array before its first element; `element`: right after an
 * element; `closed`: after the closing `]`; `opaque`: the body is not a JSON array.
 */
export type JsonArrayState = 'before' | 'open' | 'element' | 'closed' | 'opaque'

type Phase = 'before' | 'between' | 'container' | 'string' | 'scalar' | 'after' | 'opaque'

const EMPTY = Buffer.alloc(0)
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09
}

export function createJsonArrayFramer(onElement: (text: string) => void, onOpaque?: (bytes: Buffer) => void): JsonArrayFramer {
  let pending: Buffer = EMPTY
  // Absolute stream offset of pending[0].
  let base = 0
  let phase: Phase = 'before'
  let depth = 0
  let inString = false
  let escaped = false
  let elementStart = 0
  // Absolute offsets just past the `[`, the first element and the `]`; -1 until seen.
  let openedAt = -1
  let firstElementAt = -1
  let closedAt = -1

  /** Scans data[from..] and returns the index of the last byte of the last complete frame, or -1. */
  function scan(data: Buffer, from: number): number {
    let boundary = -1
    const endElement = (last: number): void => {
      onElement(data.toString('utf8', elementStart - base, last + 1))
      if (firstElementAt < 0) firstElementAt = base + last + 1
      boundary = last
      phase = 'between'
    }
    for (let i = from; i < data.length; i++) {
      const byte = data[i] as number
      switch (phase) {
        case 'before':
          if (byte === OPEN_BRACKET) {
            phase = 'between'
            openedAt = base + i + 1
          } else if (!isSpace(byte)) {
            phase = 'opaque'
          }
          break
        case 'between':
          if (isSpace(byte) || byte === COMMA) break
          if (byte === CLOSE_BRACKET) {
            phase = 'after'
            closedAt = base + i + 1
            break
          }
          elementStart = base + i
          if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
            phase = 'container'
            depth = 1
          } else {
            phase = byte === QUOTE ? 'string' : 'scalar'
          }
          break
        case 'container':
          if (inString) {
            if (escaped) escaped = false
            else if (byte === BACKSLASH) escaped = true
            else if (byte === QUOTE) inString = false
          } else if (byte === QUOTE) {
            inString = true
          } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
            depth++
          } else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && --depth === 0) {
            endElement(i)
          }
          break
        case 'string':
          if (escaped) escaped = false
          else if (byte === BACKSLASH) escaped = true
          else if (byte === QUOTE) endElement(i)
          break
        case 'scalar':
          // A number or literal ends where its delimiter starts; the delimiter is read again between elements.
          if (isSpace(byte) || byte === COMMA || byte === CLOSE_BRACKET) {
            endElement(i - 1)
            i--
          }
          break
        case 'after':
        case 'opaque':
          break
      }
    }
    // Nothing can follow the array or an opaque body that a frame would have to wait for.
    return phase === 'after' || phase === 'opaque' ? data.length - 1 : boundary
  }

  return {
    push(chunk) {
      const start = pending.length
      const data = start === 0 ? chunk : Buffer.concat([pending, chunk])
      const boundary = scan(data, start)
      if (boundary < 0) {
        pending = data
        return EMPTY
      }
      const complete = data.subarray(0, boundary + 1)
      pending = boundary + 1 < data.length ? Buffer.from(data.subarray(boundary + 1)) : EMPTY
      base += boundary + 1
      if (phase === 'opaque') onOpaque?.(complete)
      return complete
    },
    flush() {
      const rest = pending
      if (phase === 'scalar' && rest.length > 0) {
        // A scalar element that the end of the body terminates.
        onElement(rest.toString('utf8', elementStart - base))
        if (firstElementAt < 0) firstElementAt = base + rest.length
        phase = 'between'
      }
      pending = EMPTY
      base += rest.length
      return rest
    },
    stateAt(bytes) {
      if (phase === 'opaque') return 'opaque'
      if (closedAt >= 0 && bytes >= closedAt) return 'closed'
      if (firstElementAt >= 0 && bytes >= firstElementAt) return 'element'
      if (openedAt >= 0 && bytes >= openedAt) return 'open'
      return 'before'
    },
  }
}
