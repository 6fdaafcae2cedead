import { MAX_EVENT_BYTES, UpstreamTooLargeError } from './limits.js'

/**
 * Splits a streamed JSON array (`[{…}\n,\r\n{…}\n]`, as Google APIs stream without `alt=sse`) into
 * frames that each end with a complete element (or with the array's closing `]`), and hands every
 * complete element's text to `onElement`. Bytes are returned exactly as received, only regrouped, so a
 * meter can forward whole elements and never cut one in half. A body that does not start with `[` is
 * passed through as it comes (`onOpaque` sees those bytes).
 */
interface JsonArrayFramer {
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

/**
 * `maxEventBytes` caps one element and the unfinished bytes after the last frame: past it `push` throws
 * UpstreamTooLargeError. Unfinished bytes are kept as the chunks they came in and joined once, when their
 * frame completes, so a long element costs linear time.
 */
export function createJsonArrayFramer(
  onElement: (text: string) => void,
  onOpaque?: (bytes: Buffer) => void,
  maxEventBytes = MAX_EVENT_BYTES,
): JsonArrayFramer {
  // Bytes not yet returned, as received; `base` is the absolute stream offset of the first of them.
  let parts: Buffer[] = []
  let pendingBytes = 0
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

  /** The pending bytes at absolute offsets [from, to), joined; found from the newest part back. */
  function bytesBetween(from: number, to: number): Buffer {
    let index = parts.length
    let start = base + pendingBytes
    while (index > 0 && start > from) start -= (parts[--index] as Buffer).length
    const pieces: Buffer[] = []
    for (let at = start; index < parts.length && at < to; index++) {
      const part = parts[index] as Buffer
      const lo = Math.max(0, from - at)
      const hi = Math.min(part.length, to - at)
      if (hi > lo) pieces.push(part.subarray(lo, hi))
      at += part.length
    }
    return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces)
  }

  /** Scans `chunk`, which starts at absolute offset `offset`; returns the absolute offset of the last byte of the last complete frame, or -1. */
  function scan(chunk: Buffer, offset: number): number {
    let boundary = -1
    const endElement = (last: number): void => {
      const end = offset + last + 1
      if (end - elementStart > maxEventBytes) throw new UpstreamTooLargeError('an upstream stream element', maxEventBytes)
      onElement(bytesBetween(elementStart, end).toString('utf8'))
      if (firstElementAt < 0) firstElementAt = end
      boundary = end - 1
      phase = 'between'
    }
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number
      switch (phase) {
        case 'before':
          if (byte === OPEN_BRACKET) {
            phase = 'between'
            openedAt = offset + i + 1
          } else if (!isSpace(byte)) {
            phase = 'opaque'
          }
          break
        case 'between':
          if (isSpace(byte) || byte === COMMA) break
          if (byte === CLOSE_BRACKET) {
            phase = 'after'
            closedAt = offset + i + 1
            break
          }
          elementStart = offset + i
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
    return phase === 'after' || phase === 'opaque' ? offset + chunk.length - 1 : boundary
  }

  return {
    push(chunk) {
      const offset = base + pendingBytes
      if (chunk.length > 0) {
        parts.push(chunk)
        pendingBytes += chunk.length
      }
      const end = scan(chunk, offset) + 1
      if (end <= base) {
        if (pendingBytes > maxEventBytes) throw new UpstreamTooLargeError('an upstream stream element', maxEventBytes)
        return EMPTY
      }
      const complete = bytesBetween(base, end)
      const rest = bytesBetween(end, base + pendingBytes)
      parts = rest.length > 0 ? [rest] : []
      pendingBytes = rest.length
      base = end
      if (phase === 'opaque') onOpaque?.(complete)
      return complete
    },
    flush() {
      const rest = bytesBetween(base, base + pendingBytes)
      if (phase === 'scalar' && rest.length > 0) {
        // A scalar element that the end of the body terminates.
        onElement(rest.toString('utf8', elementStart - base))
        if (firstElementAt < 0) firstElementAt = base + rest.length
        phase = 'between'
      }
      parts = []
      pendingBytes = 0
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
