import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { errorCodes } from 'fastify'
import { hasRoom, SHARE_SLICE_BYTES, spend, take } from './turn-share.js'

/**
 * Bodies at least this large are big: read into shared memory and parsed in the counting worker
 * (src/proxy/request-body.ts), so no step proportional to their size runs on the event loop.
 */
export const BIG_BODY_BYTES = 1024 * 1024

/**
 * A small HTTP/1 body that came with its headers (an SDK's usual request), taken at once: it is buffered whole
 * by now, and its declared length is where its message ends. Null for any other body (readRawBody reads it).
 */
export function takeBufferedBody(payload: IncomingMessage, limit: number): Buffer | null {
  const declared = Number(payload.headers['content-length'])
  if (!(declared > 0 && declared <= limit && declared < BIG_BODY_BYTES && payload.httpVersionMajor === 1)) return null
  // One read (of a stream not flowing yet, which returns all it holds), not a resume, a data and an end event.
  if (payload.readableFlowing === true || payload.readableLength !== declared) return null
  const chunk = payload.read() as Buffer | string
  // Flowing, the stream still ends and closes as one read to its end does.
  payload.resume()
  return typeof chunk === 'string' ? Buffer.from(chunk) : chunk
}

/**
 * Reads a request body whole, as Fastify's own buffer parser does (the same limit and content-length
 * checks and errors), except that a body of BIG_BODY_BYTES or more lands in a SharedArrayBuffer: chunk by
 * chunk as it arrives when its length is declared, else copied in slices at the end. No single concat
 * of 10 MiB holds the event loop, and the counting worker then reads the body without a copy. A big body
 * is read within the turn share (./turn-share.ts): once a turn's share is spent, its reading pauses until
 * a turn with room, so many big uploads at once cost a turn no more than one. A smaller body that came in
 * one chunk owning its memory is that chunk, not a copy.
 */
export async function readRawBody(payload: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(payload.headers['content-length'])
  if (declared > limit) throw new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()
  const buffered = takeBufferedBody(payload, limit)
  if (buffered !== null) return buffered
  // Pages of a fresh shared buffer are touched (zeroed) as chunks are copied in: the cost is spread too.
  const shared = declared >= BIG_BODY_BYTES ? Buffer.from(new SharedArrayBuffer(declared)) : null
  const chunks: Buffer[] = []
  let size = 0
  await new Promise<void>((resolve, reject) => {
    const finish = (error: (Error & { statusCode?: number }) | null | undefined): void => {
      payload.removeListener('data', onData)
      payload.removeListener('end', finish)
      payload.removeListener('error', finish)
      if (error == null) {
        if (!Number.isNaN(declared) && size !== declared) reject(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH())
        else resolve()
        return
      }
      if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400
      reject(error)
    }
    const onData = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      if (size + bytes.length > limit) return finish(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE())
      if (shared === null) chunks.push(bytes)
      else if (size + bytes.length > shared.length) return finish(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH())
      else bytes.copy(shared, size)
      size += bytes.length
      if (shared === null && size < BIG_BODY_BYTES) return
      // A fast client fills many reads in one turn of the loop: read on only while the turn's share has room.
      spend(bytes.length)
      if (!hasRoom()) {
        payload.pause()
        void take().then(() => payload.resume())
      }
    }
    payload.on('data', onData)
    payload.on('end', finish)
    payload.on('error', finish)
    payload.resume()
  })
  if (shared !== null) return shared
  // A body that came in one chunk after its headers (a client that writes them apart) is that chunk when it owns its
  // memory (an HTTP/1 parser's copy; an HTTP/2 chunk is a view of a frame buffer): no fresh buffer written cold.
  const only = chunks.length === 1 ? (chunks[0] as Buffer) : null
  if (only !== null && only.byteOffset === 0 && only.buffer.byteLength === size) return only
  if (size < BIG_BODY_BYTES) return Buffer.concat(chunks, size)
  return copyToShared(chunks, size)
}

/**
 * `chunks` (`size` bytes in all) copied into one SharedArrayBuffer, SHARE_SLICE_BYTES at a time within the
 * turn share (./turn-share.ts): the counting worker reads it without a copy, and no single copy holds the loop.
 */
export async function copyToShared(chunks: readonly Buffer[], size: number): Promise<Buffer> {
  const body = Buffer.from(new SharedArrayBuffer(size))
  let offset = 0
  for (const chunk of chunks) {
    for (let from = 0; from < chunk.length; from += SHARE_SLICE_BYTES) {
      await take()
      offset += chunk.copy(body, offset, from, Math.min(chunk.length, from + SHARE_SLICE_BYTES))
    }
  }
  return body
}

/** Hex SHA-256 of `body`, hashed SHARE_SLICE_BYTES at a time within the turn share (./turn-share.ts). */
export async function sha256InSlices(body: Buffer): Promise<string> {
  const hash = createHash('sha256')
  for (let from = 0; from < body.length; from += SHARE_SLICE_BYTES) {
    await take()
    hash.update(body.subarray(from, from + SHARE_SLICE_BYTES))
  }
  return hash.digest('hex')
}
