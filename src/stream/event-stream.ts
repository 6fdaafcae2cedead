/**
 * The AWS event-stream binary framing (`application/vnd.amazon.eventstream`): each message is a
 * 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), typed headers, a payload
 * and a CRC32 of everything before it. All integers are big-endian.
 */

type EventStreamHeaderValue = boolean | number | bigint | string | Buffer | Date

export interface EventStreamMessage {
  headers: Record<string, EventStreamHeaderValue>
  payload: Buffer
}

/** Regroups event-stream bytes at message boundaries, like the SSE framer does for text streams. */
interface EventStreamFramer {
  /**
   * Consumes bytes; returns the bytes of every message completed so far (possibly empty), unchanged.
   * After corruption every byte is returned as soon as it arrives: framing can no longer be trusted.
   */
  push(chunk: Buffer): Buffer
  /** Yields each complete message's bytes once it has been reported (see SseFramer.frames). */
  frames(chunk: Buffer): Generator<Buffer, void, undefined>
  /** Returns the bytes of an unfinished trailing message. */
  flush(): Buffer
  /** Bytes passed through after a checksum or length failure; 0 while the stream is sound. */
  corruptBytes(): number
}

const PRELUDE_BYTES = 12
const CHECKSUM_BYTES = 4
const MIN_MESSAGE_BYTES = PRELUDE_BYTES + CHECKSUM_BYTES
// The service limits: a message is at most 16 MiB and its headers at most 128 KiB.
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024
const MAX_HEADERS_BYTES = 128 * 1024
const EMPTY = Buffer.alloc(0)

// node:zlib is loaded on the first checksum, not with this module: every proxy loads the Bedrock adapter, which
// imports this file, and most never see an event stream (~0.5 MiB resident for the process's life otherwise).
let zlib: typeof import('node:zlib') | null = null

/** CRC-32 (IEEE 802.3), the checksum of the event-stream prelude and message. */
export function crc32(bytes: Uint8Array): number {
  zlib ??= process.getBuiltinModule('node:zlib')
  return zlib.crc32(bytes)
}

/**
 * A framer that calls `onMessage` for every message whose prelude and message checksums hold.
 * The first failed checksum or impossible length marks the stream corrupt: no further message is
 * parsed and the remaining bytes pass through unchanged (the client's decoder then fails on them).
 */
export function createEventStreamFramer(onMessage: (message: EventStreamMessage) => void): EventStreamFramer {
  // Bytes of the unfinished message, as received: joined once the prelude or the whole message is here,
  // so a large message costs linear time.
  let parts: Buffer[] = []
  let pendingBytes = 0
  // Length of the message being received, from its prelude; 0 until the prelude is here.
  let needed = 0
  let corrupt = 0
  let broken = false

  function joined(): Buffer {
    const data = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
    parts = data.length > 0 ? [data] : []
    return data
  }

  function breakAt(data: Buffer): void {
    broken = true
    corrupt += data.length
    parts = []
    pendingBytes = 0
  }

  /** Yields each checksummed message as soon as it is complete and reported; a broken stream yields its bytes as they come. */
  function* frames(chunk: Buffer): Generator<Buffer, void, undefined> {
    if (broken) {
      corrupt += chunk.length
      if (chunk.length > 0) yield chunk
      return
    }
    if (chunk.length > 0) {
      parts.push(chunk)
      pendingBytes += chunk.length
    }
    while (pendingBytes >= Math.max(PRELUDE_BYTES, needed)) {
      const data = joined()
      const total = data.readUInt32BE(0)
      const headersLength = data.readUInt32BE(4)
      const preludeValid =
        crc32(data.subarray(0, 8)) === data.readUInt32BE(8) &&
        total >= MIN_MESSAGE_BYTES &&
        total <= MAX_MESSAGE_BYTES &&
        headersLength <= MAX_HEADERS_BYTES &&
        headersLength <= total - MIN_MESSAGE_BYTES
      if (!preludeValid) {
        breakAt(data)
        yield data
        return
      }
      needed = total
      if (data.length < total) return
      const frame = data.subarray(0, total)
      const message = frame.readUInt32BE(total - CHECKSUM_BYTES) === crc32(frame.subarray(0, total - CHECKSUM_BYTES)) ? decodeFrame(frame, headersLength) : null
      if (message === null) {
        breakAt(data)
        yield data
        return
      }
      parts = total < data.length ? [data.subarray(total)] : []
      pendingBytes = data.length - total
      needed = 0
      onMessage(message)
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
      const rest = joined()
      parts = []
      pendingBytes = 0
      needed = 0
      return rest
    },
    corruptBytes: () => corrupt,
  }
}

/** Headers and payload of one checksummed frame; null when the headers do not parse. */
function decodeFrame(frame: Buffer, headersLength: number): EventStreamMessage | null {
  const headersEnd = PRELUDE_BYTES + headersLength
  const headers = decodeHeaders(frame.subarray(PRELUDE_BYTES, headersEnd))
  if (headers === null) return null
  return { headers, payload: Buffer.from(frame.subarray(headersEnd, frame.length - CHECKSUM_BYTES)) }
}

/** Decodes the header block: name length, name, type tag, value. Null on a malformed block. */
function decodeHeaders(block: Buffer): Record<string, EventStreamHeaderValue> | null {
  const headers: Record<string, EventStreamHeaderValue> = {}
  let at = 0
  try {
    while (at < block.length) {
      const nameLength = block.readUInt8(at)
      const name = block.toString('utf8', at + 1, at + 1 + nameLength)
      at += 1 + nameLength
      const type = block.readUInt8(at++)
      let value: EventStreamHeaderValue
      switch (type) {
        case 0:
        case 1:
          value = type === 0
          break
        case 2:
          value = block.readInt8(at)
          at += 1
          break
        case 3:
          value = block.readInt16BE(at)
          at += 2
          break
        case 4:
          value = block.readInt32BE(at)
          at += 4
          break
        case 5:
          value = block.readBigInt64BE(at)
          at += 8
          break
        case 6:
        case 7: {
          const length = block.readUInt16BE(at)
          if (at + 2 + length > block.length) return null
          const bytes = block.subarray(at + 2, at + 2 + length)
          value = type === 7 ? bytes.toString('utf8') : Buffer.from(bytes)
          at += 2 + length
          break
        }
        case 8:
          value = new Date(Number(block.readBigInt64BE(at)))
          at += 8
          break
        case 9: {
          if (at + 16 > block.length) return null
          const hex = block.toString('hex', at, at + 16)
          value = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
          at += 16
          break
        }
        default:
          return null
      }
      headers[name] = value
    }
  } catch {
    // A read past the end of the block: the lengths inside it lie.
    return null
  }
  return headers
}

/** Encodes one message with string headers (type 7), e.g. an `exception` frame that ends a cut stream. */
export function encodeEventStreamMessage(headers: Record<string, string>, payload: Buffer): Buffer {
  const parts: Buffer[] = []
  for (const [name, value] of Object.entries(headers)) {
    const nameBytes = Buffer.from(name, 'utf8')
    const valueBytes = Buffer.from(value, 'utf8')
    const head = Buffer.alloc(1 + nameBytes.length + 3)
    head.writeUInt8(nameBytes.length, 0)
    nameBytes.copy(head, 1)
    head.writeUInt8(7, 1 + nameBytes.length)
    head.writeUInt16BE(valueBytes.length, 2 + nameBytes.length)
    parts.push(head, valueBytes)
  }
  const headerBlock = Buffer.concat(parts)
  const total = MIN_MESSAGE_BYTES + headerBlock.length + payload.length
  const message = Buffer.alloc(total)
  message.writeUInt32BE(total, 0)
  message.writeUInt32BE(headerBlock.length, 4)
  message.writeUInt32BE(crc32(message.subarray(0, 8)), 8)
  headerBlock.copy(message, PRELUDE_BYTES)
  payload.copy(message, PRELUDE_BYTES + headerBlock.length)
  message.writeUInt32BE(crc32(message.subarray(0, total - CHECKSUM_BYTES)), total - CHECKSUM_BYTES)
  return message
}
