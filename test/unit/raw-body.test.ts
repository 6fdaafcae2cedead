import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
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

  it('takes a body that came in one chunk owning its memory as that chunk, and copies one that is a view of a larger buffer', async () => {
    // Issue 12: a client that writes its headers and its body apart has its body read in one chunk (an HTTP/1 parser's own
    // copy): concatenating it wrote a fresh buffer for nothing. A chunk that shares its memory (an HTTP/2 frame buffer's view) is copied.
    const chunk = Buffer.alloc(40_000, 'abc')
    const owned = await readRawBody(payload(chunk, chunk.length), 1 << 30)
    expect(owned.buffer).toBe(chunk.buffer)
    expect(owned.equals(chunk)).toBe(true)
    const frames = Buffer.alloc(50_000, 'xyz')
    const view = frames.subarray(100, 40_100)
    const copied = await readRawBody(payload(view, view.length), 1 << 30)
    expect(copied.buffer).not.toBe(frames.buffer)
    expect(copied.equals(view)).toBe(true)
    const unsized = await readRawBody(payload(chunk), 1 << 30)
    expect(unsized.buffer).toBe(chunk.buffer)
  })

  it('reads a body written after its headers as sent: in one chunk, the HTTP/1 parser\'s own, or in several', async () => {
    const bodies = [`{"pad":"${'x'.repeat(8_000)}"}`, `{"pad":"${'y'.repeat(200_000)}"}`]
    const read: { body: Buffer; pushed: Buffer[] }[] = []
    const server = createServer((request, response) => {
      // The chunks the parser hands the request, as they come.
      const pushed: Buffer[] = []
      const push = request.push.bind(request)
      request.push = (chunk: Buffer | null) => {
        if (chunk !== null) pushed.push(chunk)
        return push(chunk)
      }
      void readRawBody(request, 1 << 30).then((body) => {
        read.push({ body, pushed })
        response.end('ok')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as AddressInfo
      for (const body of bodies) {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(`POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`)
          setTimeout(() => socket.end(body), 20)
        })
        socket.resume()
        await new Promise((resolve) => socket.once('close', resolve))
      }
      expect(read.map(({ body }) => body.toString())).toEqual(bodies)
      // The small one came in one chunk and is that chunk: its memory, not a copy.
      expect(read[0]?.pushed.length).toBe(1)
      expect(read[0]?.body.buffer).toBe(read[0]?.pushed[0]?.buffer)
      expect(read[1]?.pushed.length).toBeGreaterThan(1)
    } finally {
      server.close()
    }
  })

  it('refuses a body above the limit and one that does not match its declared length, as Fastify does', async () => {
    await expect(readRawBody(payload(big, big.length), big.length - 1)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
    await expect(readRawBody(payload(big), big.length - 1)).rejects.toMatchObject({ code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
    await expect(readRawBody(payload(big, big.length + 10), 1 << 30)).rejects.toMatchObject({ code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' })
    await expect(readRawBody(payload(big, big.length - 10), 1 << 30)).rejects.toMatchObject({ code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' })
  })

  it('takes a small HTTP/1 body that came with its headers at once, and the request still ends and closes', async () => {
    const bodies = ['{"model":"m","messages":[]}', `{"pad":"${'x'.repeat(40_000)}"}`]
    const read: { body: Buffer; ended: Promise<boolean> }[] = []
    const server = createServer((request, response) => {
      const ended = new Promise<boolean>((resolve) => request.once('close', () => resolve(request.readableEnded)))
      // Read a microtask later, as Fastify does after its async hooks: the body is buffered, its end not yet seen.
      void Promise.resolve().then(() => {
        void readRawBody(request, 1 << 30).then((body) => {
          read.push({ body, ended })
          response.end('ok')
        })
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as AddressInfo
      // Both requests in one write: each body is already buffered whole when it is read.
      const wire = bodies.map((body) => `POST / HTTP/1.1\r\nhost: x\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`).join('')
      const socket = connect(port, '127.0.0.1', () => socket.end(wire))
      socket.resume()
      await new Promise((resolve) => socket.once('close', resolve))
      expect(read.map(({ body }) => body.toString())).toEqual(bodies)
      expect(await Promise.all(read.map(({ ended }) => ended))).toEqual([true, true])
    } finally {
      server.close()
    }
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
