import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createUpstreamClient, RELEASED_BODY_BYTES, UpstreamAbort } from '../../src/proxy/upstream.js'

// An upstream on a local port: /headers answers at once with repeated and odd headers; /hang never answers.
let server: Server
let base: string
const hanging = new Set<() => void>()
const received: string[] = []
const closed: string[] = []
// What /record received: its headers and body.
const recorded: Array<{ headers: IncomingHttpHeaders; body: Buffer }> = []
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/record') {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        recorded.push({ headers: req.headers, body: Buffer.concat(chunks) })
        res.end('{}')
      })
      return
    }
    req.resume()
    received.push(req.url ?? '')
    if (req.url === '/hang') {
      hanging.add(() => res.destroy())
      req.socket.once('close', () => closed.push(req.url ?? ''))
      return
    }
    res.writeHead(200, [['Content-Type', 'application/json'], ['X-RateLimit-Remaining', '7'], ['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2'], ['__proto__', 'plain']].flat())
    res.end('{}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  for (const end of hanging) end()
  await new Promise((resolve) => server.close(resolve))
})
const request = (path: string) => ({ url: `${base}${path}`, headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') })

describe('upstream client', () => {
  it('gives response headers as undici does: lower-case names, repeated ones in an array, no prototype games', async () => {
    const client = createUpstreamClient({ connectTimeoutMs: 1_000, timeoutMs: 5_000 })
    try {
      const response = await client.send(request('/headers'), new UpstreamAbort())
      response.body.resume()
      expect(response.status).toBe(200)
      expect(response.headers['content-type']).toBe('application/json')
      expect(response.headers['x-ratelimit-remaining']).toBe('7')
      expect(response.headers['set-cookie']).toEqual(['a=1', 'b=2'])
      expect(Object.getOwnPropertyDescriptor(response.headers, '__proto__')?.value).toBe('plain')
    } finally {
      await client.close()
    }
  })

  it('aborts a request still waiting for its answer when its UpstreamAbort fires, and closes the upstream connection', async () => {
    const client = createUpstreamClient({ connectTimeoutMs: 1_000, timeoutMs: 5_000 })
    try {
      const signal = new UpstreamAbort()
      const sent = client.send(request('/hang'), signal)
      await new Promise((resolve) => setTimeout(resolve, 100))
      signal.abort()
      await expect(sent).rejects.toMatchObject({ name: 'AbortError' })
      await expect.poll(() => closed.includes('/hang')).toBe(true)
      expect(signal.onabort).toBeNull()
    } finally {
      await client.close()
    }
  })

  it('never sends a request whose UpstreamAbort fired before it was sent', async () => {
    const client = createUpstreamClient({ connectTimeoutMs: 1_000, timeoutMs: 5_000 })
    try {
      const before = received.length
      const signal = new UpstreamAbort()
      signal.abort()
      await expect(client.send(request('/hang'), signal)).rejects.toMatchObject({ name: 'AbortError' })
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(received.length).toBe(before)
    } finally {
      await client.close()
    }
  })

  it.each([
    ['below', RELEASED_BODY_BYTES - 1, false],
    ['at', RELEASED_BODY_BYTES, true],
    ['above', 100 * 1024, true],
  ])('sends a body %s the released size as it is, with its length (%i bytes), and takes it from the request: %s', async (_, size, taken) => {
    const client = createUpstreamClient({ connectTimeoutMs: 1_000, timeoutMs: 5_000 })
    try {
      const body = Buffer.alloc(size, 'é')
      const sent = { url: `${base}/record`, headers: { 'content-type': 'application/json', 'content-length': String(size) }, body }
      const response = await client.send(sent, new UpstreamAbort())
      response.body.resume()
      expect(response.status).toBe(200)
      const { headers, body: received } = recorded.at(-1)!
      expect(headers['content-length']).toBe(String(size))
      expect(headers['transfer-encoding']).toBeUndefined()
      expect(received.equals(body)).toBe(true)
      // Taken: the caller's request object no longer holds the bytes undici was handed.
      expect(sent.body.length).toBe(taken ? 0 : size)
    } finally {
      await client.close()
    }
  })
})
