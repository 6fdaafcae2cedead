import type { FastifyReply, FastifyRequest } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { blankKept, kept, keepCall, keepCommand, keepRequest, keepSent, keepShapes } from '../../src/proxy/keep-shapes.js'

// What the pipeline hands over when a request is done; only the fields keep-shapes.ts reads.
function finished(raw: object, target: object = { pathKey: null, pathSession: null, query: '' }): FastifyRequest {
  return { body: undefined, raw, loopersKey: { keyHash: 'h', target } } as unknown as FastifyRequest
}

/** An HTTP/1.1 request's IncomingMessage as Node builds it: headers behind an accessor it may be given. */
function http1(headers: Record<string, string>): object {
  let current = headers
  return {
    httpVersionMajor: 1,
    url: '/openai/v1/chat/completions',
    rawHeaders: Object.entries(headers).flat(),
    get headers() {
      return current
    },
    set headers(value) {
      current = value
    },
  }
}

const reply = {} as FastifyReply

afterEach(() => keepShapes(false))

describe('keepRequest and blankKept', () => {
  it('keeps an HTTP/1.1 request, then swaps its headers for empty ones of the same keys and drops its header lines and URL', () => {
    keepShapes(true)
    const request = finished(http1({ host: 'proxy', authorization: 'Bearer lp-secret' }))
    keepRequest(request, reply, {})
    expect(kept.request).toBe(request)
    blankKept()
    expect(kept.request).toBe(request)
    expect(request.raw.headers).toEqual({ host: '', authorization: '' })
    expect(request.raw.rawHeaders).toEqual([])
    expect(request.raw.url).toBe('')
  })

  it('keeps no request whose path carries a key or a session, or whose URL has a query', () => {
    keepShapes(true)
    for (const target of [
      { pathKey: 'lp-secret', pathSession: null, query: '' },
      { pathKey: null, pathSession: { id: 's' }, query: '' },
      { pathKey: null, pathSession: null, query: 'key=secret' },
    ]) {
      keepRequest(finished(http1({ host: 'proxy' }), target), reply, {})
      expect(kept.request).toBeNull()
    }
  })

  it('keeps no HTTP/2 request (its headers have no setter), and drops a kept request whose fields cannot be swapped rather than throw', () => {
    keepShapes(true)
    const h2 = { httpVersionMajor: 2, url: '/openai/v1/chat/completions', rawHeaders: [], get headers() { return { authorization: 'Bearer lp-secret' } } }
    keepRequest(finished(h2), reply, {})
    expect(kept.request).toBeNull()
    kept.request = finished({ ...h2, httpVersionMajor: 1, get headers() { return { authorization: 'Bearer lp-secret' } } })
    kept.reply = reply
    expect(() => blankKept()).not.toThrow()
    expect(kept.request).toBeNull()
    expect(kept.reply).toBeNull()
  })

  it('keeps nothing while off', () => {
    keepRequest(finished(http1({ host: 'proxy' })), reply, {})
    expect(kept.request).toBeNull()
  })

  it('keeps a request only when none is left in flight, and a call, SentOnce or command only with at most one', () => {
    const inflight = { count: 2 }
    keepShapes(true, inflight)
    const request = finished(http1({ host: 'proxy' }))
    const call = {}
    keepRequest(request, reply, {})
    keepCall(call, {})
    keepSent({})
    keepCommand({})
    expect(Object.values(kept).every((example) => example === null)).toBe(true)
    inflight.count = 1
    keepRequest(request, reply, {})
    expect(kept.request).toBeNull()
    keepCall(call, {})
    keepSent({})
    keepCommand({})
    expect(kept.call).toBe(call)
    expect(kept.sent).not.toBeNull()
    expect(kept.command).not.toBeNull()
    inflight.count = 0
    keepRequest(request, reply, {})
    expect(kept.request).toBe(request)
  })

  it('under a load that never falls to one in flight, keeps one call, SentOnce and command in 1,024', () => {
    keepShapes(true, { count: 3 })
    const stored = { call: 0, sent: 0, command: 0 }
    for (let i = 0; i < 4 * 1024; i++) {
      const call = {}
      const sent = {}
      const command = {}
      keepCall(call, null)
      keepSent(sent)
      keepCommand(command)
      if (kept.call === call) stored.call++
      if (kept.sent === sent) stored.sent++
      if (kept.command === command) stored.command++
    }
    expect(stored).toEqual({ call: 4, sent: 4, command: 4 })
  })
})
