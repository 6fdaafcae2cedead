import { MAX_EVENT_BYTES, UpstreamTooLargeError } from './limits.js'

/**
 * Splits a Server-Sent Events byte stream at event boundaries (a blank line after CR, LF or CRLF
 * line ends) and parses each completed event as the WHATWG rules read it. Bytes are returned exactly
 * as received, only regrouped, so a meter can forward whole events and never cut one in half.
 */

/**
 * Called once per dispatched event (one with at least one `data` field): its data lines joined by LF, and its
 * `event` field (undefined when absent or empty). `id`, `retry` and comments change nothing a meter reads.
 */
type SseEventHandler = (data: string, type: string | undefined) => void

export interface SseFramer {
  /** Consumes bytes; returns the bytes of every event completed so far (possibly empty). */
  push(chunk: Buffer): Buffer
  /**
   * Consumes bytes and yields each completed event's bytes one at a time, parsing an event just
   * before it is yielded; events not yet pulled stay pending (and unparsed) until the next call.
   * The iterator is the framer itself (no generator per read): iterate it before the next call.
   */
  frames(chunk: Buffer): IterableIterator<Buffer>
  /** Returns bytes of an unfinished trailing event (and parses it if it is complete data). */
  flush(): Buffer
}

const LF = 0x0a
const CR = 0x0d
const COLON = 0x3a
const SPACE = 0x20
const EMPTY = Buffer.alloc(0)
// The end of a read's frames, one object for every read (an iterator result is read, never kept).
const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined })
// An unfinished trailing event may end mid-character: decoded as a stream, that character is held back.
const STREAMING = { stream: true }

/**
 * Dispatches the events of `text`, whole lines ended by CR, LF or CRLF: a blank line ends an event, and one
 * without a data field dispatches nothing. A field is the line up to its first colon, its value the rest
 * without one leading space; a line without a colon is a field with an empty value; a line starting with a
 * colon is a comment. Text after the last line end is not a line and is ignored.
 */
export function parseSseEvents(text: string, onEvent: SseEventHandler): void {
  let data = ''
  let dataLines = 0
  let type: string | undefined
  // Without a CR (the usual stream) lines end at LF only, found by the engine's search.
  const crlf = text.indexOf('\r') !== -1
  let start = 0
  for (;;) {
    let end = text.indexOf('\n', start)
    if (crlf) {
      const cr = text.indexOf('\r', start)
      if (cr !== -1 && (end === -1 || cr < end)) end = cr
    }
    if (end === -1) return
    if (end === start) {
      if (dataLines > 0) onEvent(data, type)
      data = ''
      dataLines = 0
      type = undefined
    } else if (text.charCodeAt(start) !== COLON) {
      let colon = text.indexOf(':', start)
      if (colon === -1 || colon > end) colon = end
      const valueStart = colon === end ? end : text.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1
      const nameLength = colon - start
      if (nameLength === 4 && text.startsWith('data', start)) {
        const value = text.slice(valueStart, end)
        data = dataLines === 0 ? value : `${data}\n${value}`
        dataLines++
      } else if (nameLength === 5 && text.startsWith('event', start)) {
        type = valueStart < end ? text.slice(valueStart, end) : undefined
      }
    }
    start = text.charCodeAt(end) === CR && text.charCodeAt(end + 1) === LF ? end + 2 : end + 1
  }
}

/**
 * `maxEventBytes` caps one event: an upstream that sends more without ending it makes `push`/`frames`
 * throw UpstreamTooLargeError. Unfinished bytes are kept as the chunks they came in and joined once, when
 * their event completes, so a long event costs linear time.
 */
export function createSseFramer(onEvent: SseEventHandler, maxEventBytes = MAX_EVENT_BYTES): SseFramer {
  return new EventFramer(onEvent, maxEventBytes)
}

/** An object with methods rather than closures over shared state: every open stream holds one. */
class EventFramer implements SseFramer, IterableIterator<Buffer> {
  // Whether anything was decoded yet: a byte order mark is dropped only at the stream's start.
  private started = false
  // Bytes of the unfinished event: the reads before the last one, scanned without finding its end (empty unless
  // an event spans reads: no array store per stream or per read), and the last one.
  private earlier: Buffer[] = []
  private last: Buffer | null = null
  private pendingBytes = 0
  // Scan state carried across calls: how far the last part was scanned without finding a boundary,
  // characters on the current line, and whether the last byte was a CR (its LF may follow later).
  private scanned = 0
  private lineLength = 0
  private afterCr = false
  // The last part is a read as it came, starting an event: it may be one whole event (see wholeEvent).
  private fresh = false

  constructor(
    private readonly onEvent: SseEventHandler,
    private readonly maxEventBytes: number,
  ) {}

  /**
   * Parses a whole event. It ends at a line end (ASCII), so it never leaves a character half decoded and
   * decodes alone exactly as a TextDecoder fed the stream in order would decode it, without its cost.
   */
  private emit(bytes: Buffer): void {
    const text = this.decode(bytes)
    this.started = true
    parseSseEvents(text, this.onEvent)
  }

  private decode(bytes: Buffer): string {
    const bom = !this.started && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
    return bytes.toString('utf8', bom ? 3 : 0)
  }

  /**
   * The text of `part` when it is exactly one whole event with LF line ends, the usual read: its one blank
   * line is its end. Found in the decoded text (which parsing needs anyway) rather than byte by byte. Else null.
   */
  private wholeEvent(part: Buffer): string | null {
    const size = part.length
    if (this.afterCr || size < 2 || size > this.maxEventBytes || part[size - 1] !== LF || part[size - 2] !== LF) return null
    const text = this.decode(part)
    if (text.charCodeAt(0) === LF || text.indexOf('\r') !== -1 || text.indexOf('\n\n') !== text.length - 2) return null
    return text
  }

  /** Index in `part` of the last byte of the first complete event, or -1. */
  private nextBoundary(part: Buffer): number {
    for (let i = this.scanned; i < part.length; i++) {
      const byte = part[i]
      if (byte === LF) {
        if (this.afterCr) {
          // The LF of a CRLF pair: the line already ended at the CR.
          this.afterCr = false
          continue
        }
        if (this.lineLength === 0) return i
        this.lineLength = 0
      } else if (byte === CR) {
        if (this.lineLength === 0) {
          // A blank line: take its LF too when it is already here, else remember to skip it.
          if (part[i + 1] === LF) return i + 1
          this.afterCr = true
          return i
        }
        this.lineLength = 0
        this.afterCr = true
      } else {
        this.lineLength++
        this.afterCr = false
      }
    }
    this.scanned = part.length
    return -1
  }

  frames(chunk: Buffer): IterableIterator<Buffer> {
    if (chunk.length > 0) {
      if (this.last !== null) this.earlier.push(this.last)
      this.last = chunk
      this.fresh = this.earlier.length === 0
      this.pendingBytes += chunk.length
      this.scanned = 0
    }
    return this
  }

  [Symbol.iterator](): IterableIterator<Buffer> {
    return this
  }

  /** The next completed event's bytes, parsed just before they are returned. */
  next(): IteratorResult<Buffer, undefined> {
    const { last, maxEventBytes } = this
    if (last === null) return DONE
    if (this.fresh) {
      // Tried once per read: a read of several events is then scanned byte by byte, never decoded twice.
      this.fresh = false
      const text = this.wholeEvent(last)
      if (text !== null) {
        this.last = null
        this.pendingBytes = 0
        this.started = true
        parseSseEvents(text, this.onEvent)
        return { done: false, value: last }
      }
    }
    const boundary = this.nextBoundary(last)
    if (boundary < 0) {
      if (this.pendingBytes > maxEventBytes) throw new UpstreamTooLargeError('an upstream stream event', maxEventBytes)
      return DONE
    }
    // The common read holds exactly one whole event: it is the frame itself, nothing is copied or sliced.
    const whole = boundary + 1 === last.length
    const head = whole ? last : last.subarray(0, boundary + 1)
    const frame = this.earlier.length === 0 ? head : Buffer.concat([...this.earlier, head])
    if (frame.length > maxEventBytes) throw new UpstreamTooLargeError('an upstream stream event', maxEventBytes)
    if (this.earlier.length > 0) this.earlier = []
    if (whole) {
      this.last = null
      this.pendingBytes = 0
    } else {
      const rest = last.subarray(boundary + 1)
      this.last = rest
      this.pendingBytes = rest.length
    }
    this.scanned = 0
    this.lineLength = 0
    // A frame ending in a lone CR is complete (a later LF is then an empty line, which dispatches nothing).
    this.emit(frame)
    return { done: false, value: frame }
  }

  push(chunk: Buffer): Buffer {
    const complete = [...this.frames(chunk)]
    return complete.length === 1 ? (complete[0] as Buffer) : complete.length === 0 ? EMPTY : Buffer.concat(complete)
  }

  flush(): Buffer {
    const { earlier, last } = this
    // Earlier parts wait only before a last one.
    const rest = earlier.length > 0 ? Buffer.concat([...earlier, last as Buffer]) : (last ?? EMPTY)
    if (earlier.length > 0) this.earlier = []
    this.last = null
    this.pendingBytes = 0
    this.scanned = 0
    this.fresh = false
    // A final event without its blank line is still dispatched: the line ends are added to the text.
    if (rest.length > 0) parseSseEvents(`${new TextDecoder('utf-8', { ignoreBOM: this.started }).decode(rest, STREAMING)}\n\n`, this.onEvent)
    this.started = true
    return rest
  }
}
