import type { FastifyReply, FastifyRequest } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { messagesShape } from '../../src/loop/shapes/messages.js'
import { blankJson, blankKept, kept, keepBody, keepCall, keepCommand, keepHeaders, keepPicked, keepRequest, keepSent, keepShapes, keepUsage } from '../../src/proxy/keep-shapes.js'
import { readParsedBody } from '../../src/proxy/request-body.js'

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

  it('keeps a request whose path carries a key or a session, or whose URL has a query, and blanks them at blankKept', () => {
    keepShapes(true)
    const cases = [
      { url: '/lp-secret/openai/v1/chat/completions', params: { '*': 'lp-secret/openai/v1/chat/completions' }, query: {}, target: { pathKey: 'lp-secret', pathSession: null, provider: 'openai', path: '/v1/chat/completions', query: '' } },
      {
        url: '/session/u-4242/budget/2/openai/v1/chat/completions',
        params: { '*': 'session/u-4242/budget/2/openai/v1/chat/completions' },
        query: {},
        target: { pathKey: null, pathSession: { id: 'u-4242', budget: '2', maxSteps: null }, provider: 'openai', path: '/v1/chat/completions', query: '' },
      },
      {
        url: '/gemini/v1beta/models/gemini-pro:generateContent?key=lp-secret&alt=sse',
        params: { '*': 'gemini/v1beta/models/gemini-pro:generateContent' },
        query: { key: 'lp-secret', alt: ['web-search'] },
        target: { pathKey: null, pathSession: null, provider: 'gemini', path: '/v1beta/models/gemini-pro:generateContent', query: 'key=lp-secret&alt=sse' },
      },
    ]
    for (const { url, params, query, target } of cases) {
      const request = { body: undefined, raw: { ...http1({ host: 'proxy', 'x-goog-api-key': 'lp-secret' }), url }, params, query, loopersKey: { keyHash: 'u-4242', target } } as unknown as FastifyRequest
      keepRequest(request, reply, {})
      expect(kept.request).toBe(request)
      blankKept()
      expect(kept.request).toBe(request)
      expect(request.raw.url).toBe('')
      expect(Object.keys(request.query as object)).toEqual(Object.keys(query))
      expect(Object.values(request.query as object).flat().every((value) => value === '')).toBe(true)
      // Fastify's params blanked when the path carried a key or session; else the provider's path (the model's name,
      // as the summary keeps it) stays.
      expect(request.params).toEqual({ '*': target.pathKey === null && target.pathSession === null ? params['*'] : '' })
      // The gate's entry swapped for a blank one of the same members; a value null stays null.
      expect(request.loopersKey).toEqual({
        keyHash: '',
        target: {
          pathKey: target.pathKey === null ? null : '',
          pathSession: target.pathSession === null ? null : { id: '', budget: '', maxSteps: null },
          provider: target.provider,
          path: '',
          query: '',
        },
      })
      for (const secret of SECRETS) expect(text({ request: { ...request }, raw: request.raw })).not.toContain(secret)
    }
  })

  it('keeps no request the key gate did not accept (its URL was not read as a target)', () => {
    keepShapes(true)
    const request = { body: undefined, raw: http1({ host: 'proxy' }), params: { '*': 'lp-secret/x' }, query: {}, loopersKey: null } as unknown as FastifyRequest
    keepRequest(request, reply, {})
    expect(kept.request).toBeNull()
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
    keepCommand(commandLike())
    expect(Object.values(kept).every((example) => example === null)).toBe(true)
    inflight.count = 1
    keepRequest(request, reply, {})
    expect(kept.request).toBeNull()
    keepCall(call, {})
    keepSent({})
    keepCommand(commandLike())
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
      const command = commandLike()
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

/** A script command as keepCommand is given one: it makes its blank copy at blankKept. */
function commandLike(): { blankCopy(): object } {
  return { blankCopy: () => ({}) }
}

// What a client sent, in a body and headers: none of it may be in a kept example once blankKept ran.
const SECRETS = ['Say hello to Ada.', 'sk-up-secret', 'lp-secret', 'gpt-secret-model', 'u-4242', 'search_web', 'web-search']
const BODY = JSON.stringify({
  model: 'gpt-secret-model',
  max_tokens: 16,
  temperature: 0.7,
  seed: 2 ** 40,
  stream: false,
  user: 'u-4242',
  messages: [
    { role: 'system', content: 'Say hello to Ada.' },
    { role: 'user', content: [{ type: 'text', text: 'Say hello to Ada.' }] },
    { role: 'user', content: 'Say hello to Ada.' },
  ],
  tools: [{ type: 'function', function: { name: 'search_web', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }],
  stop: ['web-search', 'web-search'],
})

/** Every string `value` reaches through its own properties (a Buffer's bytes as text): what a kept example could leak. */
function text(value: unknown, seen = new Set<unknown>()): string {
  if (typeof value === 'string') return value
  if (typeof value !== 'object' || value === null || seen.has(value)) return ''
  seen.add(value)
  if (Buffer.isBuffer(value)) return value.toString('latin1')
  let all = ''
  for (const key of Reflect.ownKeys(value)) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key)
    all += `${String(key)} ${text(descriptor?.value, seen)}\n`
  }
  return all
}

describe('blankJson', () => {
  it('keeps the structure and none of the content: strings empty, small integers 0, other numbers 0.5, one of each array element shape', () => {
    expect(blankJson(JSON.parse(BODY))).toEqual({
      model: '',
      max_tokens: 0,
      temperature: 0.5,
      seed: 0.5,
      stream: false,
      user: '',
      messages: [
        { role: '', content: '' },
        { role: '', content: [{ type: '', text: '' }] },
      ],
      tools: [{ type: '', function: { name: '', parameters: { type: '', properties: { q: { type: '' } } } } }],
      stop: [''],
    })
    expect(blankJson([1, -0, 2 ** 31, -(2 ** 31), null, true, [[]]])).toEqual([0, 0.5, null, true, [[]]])
  })
})

describe('the blank copies kept at blankKept', () => {
  it('keeps a small body as a blank copy, with the members the adapter added and the loop guard\'s reading of it, and lets the body go', () => {
    keepShapes(true)
    const body = readParsedBody(Buffer.from(BODY), messagesShape)
    if (body instanceof Promise) throw new Error('a small body is read at once')
    body.json.stream_options = { include_usage: true }
    // Kept by readParsedBody; copied (and the body let go) only at blankKept.
    expect(kept.body).toBeNull()
    blankKept()
    const copy = kept.body as { body: { json: Record<string, unknown>; raw: Buffer }; transcript: { items: { length: number } }; item: { parts: unknown[] } }
    expect(copy.body).not.toBe(body)
    expect(copy.body.raw.length).toBe(0)
    expect(Object.keys(copy.body.json)).toEqual([...Object.keys(JSON.parse(BODY)), 'stream_options'])
    expect(copy.body.json.stream_options).toEqual({ include_usage: true })
    expect(copy.transcript.items.length).toBe(2)
    expect(copy.item.parts).toEqual([''])
    for (const secret of SECRETS) expect(text(kept)).not.toContain(secret)
    // Copied once: the next release has nothing new to copy and keeps the copy.
    blankKept()
    expect(kept.body).toBe(copy)
  })

  it('keeps a body or headers only with at most their own request in flight, or one in 1,024 under load', () => {
    const inflight = { count: 2 }
    keepShapes(true, inflight)
    let copies = 0
    const source = { blankCopy: () => ({ copy: ++copies }) }
    keepBody(source)
    keepHeaders({ authorization: 'Bearer sk-up-secret' })
    blankKept()
    expect(kept.body).toBeNull()
    expect(kept.headers).toBeNull()
    for (let i = 0; i < 1023; i++) keepBody(source)
    blankKept()
    expect(kept.body).toEqual({ copy: 1 })
    inflight.count = 1
    keepBody(source)
    keepHeaders({ authorization: 'Bearer sk-up-secret' })
    blankKept()
    expect(kept.body).toEqual({ copy: 2 })
    expect(kept.headers).toEqual({ authorization: '' })
  })

  it('keeps the upstream headers with every value empty, copied at blankKept (nothing made on the request path)', () => {
    keepShapes(true)
    const headers = { 'content-type': 'application/json', 'accept-encoding': 'identity', authorization: 'Bearer sk-up-secret', 'x-client': 'lp-secret' }
    keepHeaders(headers)
    expect(kept.headers).toBeNull()
    blankKept()
    expect(kept.headers).not.toBe(headers)
    expect(kept.headers).toEqual({ 'content-type': '', 'accept-encoding': '', authorization: '', 'x-client': '' })
  })

  it('keeps the usage read from an answer and, at blankKept, the object a charge reads it through', () => {
    keepShapes(true)
    const usage = { outputTokens: 5, inputTokens: 7, cachedInputTokens: 0 }
    keepUsage(usage)
    keepUsage(null)
    expect(kept.usage).toBe(usage)
    blankKept()
    expect(kept.charged).toEqual({ inputTokens: 7, outputTokens: 5, cachedInputTokens: 0 })
    // withPlannedInput's literal (../pricing/cost.ts), as ./forward.ts charges through it: its members in its order.
    expect(Object.keys(kept.charged as object)).toEqual(['inputTokens', 'cachedInputTokens', 'cacheWriteTokens', 'outputTokens'])
  })

  it('keeps the members usage was read from as a blank copy made at blankKept, built as json-pick builds them', () => {
    // Given while off: not kept, not copied once keeping is on.
    keepPicked({ usage: { completion_tokens: 1 } })
    keepShapes(true)
    blankKept()
    expect(kept.picked).toBeNull()
    const picked = { usage: { prompt_tokens: 12, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 0 }, model: 'gpt-secret-model' } }
    expect(keepPicked(picked)).toBe(picked)
    expect(keepPicked(null)).toBeNull()
    expect(kept.picked).toBeNull()
    blankKept()
    expect(kept.picked).not.toBe(picked)
    expect(kept.picked).toEqual({ usage: { prompt_tokens: 0, completion_tokens: 0, prompt_tokens_details: { cached_tokens: 0 }, model: '' } })
    expect(text(kept.picked)).not.toContain('gpt-secret-model')
    // Copied once: the next release keeps the copy.
    const copy = kept.picked
    blankKept()
    expect(kept.picked).toBe(copy)
  })

  it('makes a C++ Buffer, an AsyncResource and a nextTick entry at blankKept, holding no client data', async () => {
    keepShapes(true)
    blankKept()
    expect(Buffer.isBuffer(kept.chunk)).toBe(true)
    expect(kept.resource).not.toBeNull()
    await new Promise<void>((resolve) => process.nextTick(resolve))
    expect(kept.tick).toMatchObject({ args: undefined })
    for (const secret of SECRETS) expect(text({ chunk: kept.chunk, tick: kept.tick })).not.toContain(secret)
  })

  it('keeps none of them while off, and lets all of them go when turned off', async () => {
    const body = readParsedBody(Buffer.from(BODY), messagesShape)
    keepHeaders({ authorization: 'Bearer sk-up-secret' })
    keepUsage({ outputTokens: 1 })
    keepPicked({ usage: { completion_tokens: 1 } })
    blankKept()
    await new Promise<void>((resolve) => process.nextTick(resolve))
    expect(body).not.toBeInstanceOf(Promise)
    expect(Object.values(kept).every((example) => example === null)).toBe(true)
    keepShapes(true)
    readParsedBody(Buffer.from(BODY), messagesShape)
    keepHeaders({ authorization: 'Bearer sk-up-secret' })
    keepUsage({ outputTokens: 1 })
    keepPicked({ usage: { completion_tokens: 1 } })
    blankKept()
    await new Promise<void>((resolve) => process.nextTick(resolve))
    expect(Object.values(kept).filter((example) => example !== null).length).toBe(11)
    keepShapes(false)
    expect(Object.values(kept).every((example) => example === null)).toBe(true)
    // A body kept before turning off is not copied at the next blankKept.
    keepShapes(true)
    readParsedBody(Buffer.from(BODY), messagesShape)
    keepPicked({ usage: { completion_tokens: 1 } })
    keepShapes(false)
    keepShapes(true)
    blankKept()
    expect(kept.body).toBeNull()
    expect(kept.picked).toBeNull()
  })
})
