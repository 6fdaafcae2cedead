import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { createTestKey } from '../support/e2e.js'
import { startProxy, type TestProxy } from '../support/proxy.js'

// When a stream's response headers leave the proxy: with the first event when the provider sent them
// together, at once when the provider sends its headers alone and makes the client wait for the first event.

// The provider's first event comes this long after its headers; the headers must reach the client in under
// half of it. 1 s, not 400 ms: on a loaded machine a first request through a cold proxy took 200 ms (a flake),
// while a proxy that held the headers for the first event still fails by 500 ms.
const HEADERS_ALONE_MS = 1_000
const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-test', choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`
const usage = `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-test', choices: [], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } })}\n\n`

/** An OpenAI-format upstream: `/together` sends headers and the first event in one write, `/alone` its headers, then the events later. */
function startUpstream(): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const rest = () => res.end(`${chunk({ content: ' tok' })}${usage}data: [DONE]\n\n`)
      if (req.headers['x-test-mode'] === 'alone') {
        res.flushHeaders()
        setTimeout(() => {
          res.write(chunk({ role: 'assistant', content: '' }))
          rest()
        }, HEADERS_ALONE_MS)
      } else {
        res.write(chunk({ role: 'assistant', content: '' }))
        setTimeout(rest, 50)
      }
    })
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })))
}

describe('stream response headers', () => {
  let upstream: { server: http.Server; url: string }
  let proxy: TestProxy
  let key: string

  beforeAll(async () => {
    upstream = await startUpstream()
    proxy = await startProxy({ LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_OPENAI_API_KEY: 'sk-upstream-test' })
    key = (await createTestKey(proxy, 'headers', ['openai'], { daily: 1_000_000 })).key
  })
  afterAll(async () => {
    await proxy?.close()
    await new Promise((resolve) => upstream?.server.close(resolve))
  })
  afterEach(() => vi.restoreAllMocks())

  const send = (mode: 'together' | 'alone') =>
    request(`${proxy.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-test-mode': mode },
      body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } }),
    })

  it('headers that came with the first event leave with it, in the same socket write', async () => {
    const proxyPort = Number(new URL(proxy.url).port)
    // Every write the proxy makes to a client socket, in order (HTTP/1 goes through _write or _writev).
    const writes: string[] = []
    const text = (data: unknown): string => (Buffer.isBuffer(data) || typeof data === 'string' ? data.toString() : '')
    const record = (socket: net.Socket, payload: string): void => {
      if (socket.localPort === proxyPort) writes.push(payload)
    }
    const proto = net.Socket.prototype as unknown as Record<string, (...args: unknown[]) => unknown>
    const write = proto._write as (...args: unknown[]) => unknown
    const writev = proto._writev as (...args: unknown[]) => unknown
    vi.spyOn(proto, '_write').mockImplementation(function (this: net.Socket, ...args: unknown[]) {
      record(this, text(args[0]))
      return write.apply(this, args)
    })
    vi.spyOn(proto, '_writev').mockImplementation(function (this: net.Socket, ...args: unknown[]) {
      record(this, (args[0] as Array<{ chunk: unknown }>).map((c) => text(c.chunk)).join(''))
      return writev.apply(this, args)
    })
    const response = await send('together')
    const body = await response.body.text()
    expect(response.statusCode).toBe(200)
    expect(body).toContain('data: [DONE]')
    const first = writes.find((w) => w.startsWith('HTTP/1.1 200'))
    expect(first).toBeDefined()
    expect(first).toContain('"role":"assistant"')
  })

  it('headers an upstream sends alone reach the client at once, long before the first event', async () => {
    const started = performance.now()
    const response = await send('alone')
    const headersAfter = performance.now() - started
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toBe('text/event-stream')
    expect(headersAfter).toBeLessThan(HEADERS_ALONE_MS / 2)
    const body = await response.body.text()
    expect(performance.now() - started).toBeGreaterThanOrEqual(HEADERS_ALONE_MS)
    expect(body).toContain('"role":"assistant"')
    expect(body).toContain('data: [DONE]')
  })
})
