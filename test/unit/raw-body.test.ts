import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { BIG_BODY_BYTES, readRawBody, sha256InSlices } from '../../src/http/raw-body.js'
import { signRequest } from '../../src/providers/sigv4.js'
import { countLoopTurns } from '../support/event-loop-turns.js'

/** A request body stream sending `body` in 64 KiB chunks, with `content-length` when given. */
function payload(body: Buffer, contentLength?: number): IncomingMessage {
  const stream = new PassThrough()
  Object.assign(stream, { headers: contentLength === undefined ? {} : { 'content-length': String(contentLength) } })
  setImmediate(() => {
    for (let from = 0; from < body.length; from += 65_536) stream.write(body.subarray(from, from + 65_536))
    stream.end()
  })
  return stream as unknown as IncomingMessage
}

const big = Buffer.alloc(3 * BIG_BODY_BYTES + 123, 'abcdefgh')

describe('raw request bodies', () => {
  it('reads a small body into an ordinary buffer and a big one into shared memory, with or without a length', async () => {
    const small = Buffer.from('{"model":"m"}')
    const read = await readRawBody(payload(small, small.length), 1 << 30)
    expect(read.equals(small)).toBe(true)
    expect(read.buffer).not.toBeInstanceOf(SharedArrayBuffer)
    for (const length of [big.length, undefined]) {
      const body = await readRawBody(payload(big, length), 1 << 30)
      expect(body.equals(big)).toBe(true)
      expect(body.buffer).toBeInstanceOf(SharedArrayBuffer)
    }
  })

  it('refuses a body above the limit and one that does not match its declared length, as Fastify does', async () => {
    await expect(readRawBody(payload(big, big.length), big.length - 1)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
    await expect(readRawBody(payload(big), big.length - 1)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
    await expect(readRawBody(payload(big, big.length + 10), 1 << 30)).rejects.toMatchObject({ code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' })
    await expect(readRawBody(payload(big, big.length - 10), 1 << 30)).rejects.toMatchObject({ code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' })
  })

  it('hashes a big body in slices to the same SHA-256, and a signature over that hash is the one over the body', async () => {
    const stopCounting = countLoopTurns()
    const hash = await sha256InSlices(big)
    const ticks = stopCounting()
    expect(hash).toBe(createHash('sha256').update(big).digest('hex'))
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(big.length / (1 << 17)) - 1)
    const request = { method: 'POST', path: '/model/m/converse', query: '', headers: { host: 'bedrock-runtime.us-east-1.amazonaws.com' }, body: big }
    const options = { credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' }, region: 'us-east-1', service: 'bedrock', date: new Date(0), contentSha256: true }
    expect(signRequest({ ...request, bodySha256: hash }, options)).toEqual(signRequest(request, options))
  })
})
