import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Agent, request as httpRequest } from 'node:http'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import { loadConfig } from '../../src/config.js'
import { createLogger } from '../../src/logger.js'
import { createMetrics } from '../../src/metrics.js'
import { loadPricing } from '../../src/pricing/table.js'
import { createInflight } from '../../src/proxy/inflight.js'
import { blankKept, kept, keepShapes } from '../../src/proxy/keep-shapes.js'
import { createUpstreamClient, type UpstreamClient } from '../../src/proxy/upstream.js'
import { createAdapters } from '../../src/providers/registry.js'
import { startFaultUpstream, type FaultUpstream } from '../support/fault-upstream.js'
import { TEST_PRICING_PATH, waitReady } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// The examples the proxy keeps through its idle release (src/proxy/keep-shapes.ts) must live through the
// memory-reducing collection it runs, and hold no body and none of the client's keys. The proxy is built in process
// so WeakRefs can watch what it kept and what it must let go.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void
setFlagsFromString('--allow-natives-syntax')
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- V8's intrinsic: whether two objects share a hidden class.
const sameHiddenClass = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean
const UndiciRequest = createRequire(import.meta.url)('undici/lib/core/request.js') as new (...args: never[]) => object

let redis: TestRedis
let upstream: FaultUpstream
let client: RedisClient
let http: UpstreamClient
let app: ReturnType<typeof buildApp>
let url: string
const inflight = createInflight()
const shutdown = new AbortController()
// Each request's Fastify request and reply, as the route saw them.
const requests: Array<WeakRef<object>> = []
const replies: Array<WeakRef<object>> = []
// Each metered request's bytes as the client sent them, and as the proxy sent them upstream.
const raws: Array<WeakRef<object>> = []
const sents: Array<WeakRef<object>> = []

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFaultUpstream()
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    LOOPERS_PRICING_PATH: TEST_PRICING_PATH,
    LOG_LEVEL: 'warn',
    REDIS_URL: redis.url,
    LOOPERS_OPENAI_BASE_URL: upstream.url,
  })
  client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: config.redis!.commandTimeoutMs })
  await waitReady(client)
  const adapters = createAdapters(config)
  const openai = adapters.openai
  adapters.openai = {
    ...openai,
    boundInputTokens(route, body, raw, tokensPerMedia, scan) {
      raws.push(new WeakRef(raw))
      return openai.boundInputTokens(route, body, raw, tokensPerMedia, scan)
    },
  }
  http = createUpstreamClient({ connectTimeoutMs: config.upstream.connectTimeoutMs, timeoutMs: config.upstream.timeoutMs })
  app = buildApp({
    config,
    logger: createLogger(config.logLevel),
    store: createBudgetStore(client, { sessionTtlSeconds: config.sessionTtlSeconds }),
    keys: createKeyAdmin(client),
    pricing: loadPricing({ filePath: config.pricingPath }),
    adapters,
    upstream: {
      send(request, signal, method) {
        sents.push(new WeakRef(request.body))
        return http.send(request, signal, method)
      },
      close: () => http.close(),
    },
    metrics: createMetrics({ perKey: false }),
    inflight,
    shutdown: shutdown.signal,
  })
  app.addHook('onRequest', (request, reply, done) => {
    requests.push(new WeakRef(request))
    replies.push(new WeakRef(reply))
    done()
  })
  url = await app.listen({ host: config.listen.host, port: config.listen.port })
  keepShapes(true, inflight)
})

afterAll(async () => {
  keepShapes(false)
  shutdown.abort()
  await app?.close()
  await http?.close()
  client?.disconnect()
  await upstream?.close()
  await redis?.stop()
})

/** The idle release's collection, in a later turn (WeakRef targets read in this job live to its end). */
async function lastResortCollection(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
  await new Promise((resolve) => setImmediate(resolve))
}

async function send(key: string, content: string, stream = false): Promise<Response> {
  const response = await fetch(`${url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-loopers-provider-key': 'sk-up-secret' },
    body: JSON.stringify({ model: 'gpt-test', max_tokens: 16, stream, messages: [{ role: 'user', content }] }),
  })
  expect(response.status).toBe(200)
  return response
}

async function chat(key: string, content: string): Promise<void> {
  await (await send(key, content)).arrayBuffer()
  // The answer comes before the settlement, and the pipeline keeps its examples after it.
  await inflight.drained()
}

/** A request whose body is sent upstream as a SentOnce, answered whole; resolves once it left the pipeline. */
async function chat2(key: string): Promise<void> {
  const before = inflight.count
  await (await send(key, 'word '.repeat(5_000))).arrayBuffer()
  await until(() => inflight.count === before)
}

/** Resolves once `done` holds, polled each few milliseconds (a request's settlement ends after its answer). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 1_000 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  expect(done()).toBe(true)
}

/** Every string `value` reaches through own data properties, a Buffer's bytes as text. */
function reachableText(value: unknown, seen = new Set<unknown>()): string {
  if (typeof value === 'string') return value
  if (typeof value !== 'object' || value === null || seen.has(value)) return ''
  seen.add(value)
  if (Buffer.isBuffer(value)) return value.toString('latin1')
  let all = ''
  for (const name of Reflect.ownKeys(value)) all += `${String(name)} ${reachableText(Object.getOwnPropertyDescriptor(value, name)?.value, seen)}\n`
  return all
}

describe('the examples kept through the idle release', () => {
  it('live through a last-resort collection, without the body of a large request or the client keys', async () => {
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('keep-shapes', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    await chat(key, 'Say hello.')
    // Several MiB: the body is handed to undici in slices, and parsed and scanned in the worker or in slices.
    await chat(key, 'word '.repeat(800_000))
    expect(raws.length).toBe(2)
    expect(sents.length).toBe(2)
    const last = { request: requests.at(-1)!, reply: replies.at(-1)! }
    // The large request is the one kept (its body let go by then).
    expect(kept.request).toBe(last.request.deref())
    const examples = Object.values(kept).filter((example) => example !== null)
    // Request, reply, summary, the upstream call and its answer, the script command; the timers come with the release.
    expect(examples.length).toBeGreaterThanOrEqual(6)
    const exampleRefs = examples.map((example) => new WeakRef(example as object))
    blankKept()
    expect(kept.immediate).not.toBeNull()
    expect(kept.timeout).not.toBeNull()
    await lastResortCollection()

    expect(last.request.deref()).toBeDefined()
    expect(last.reply.deref()).toBeDefined()
    expect(exampleRefs.every((ref) => ref.deref() !== undefined)).toBe(true)
    // Neither request's bytes, as sent or as forwarded, outlive it.
    expect([...raws, ...sents].map((ref) => ref.deref() === undefined)).toEqual([true, true, true, true])
    // The kept request keeps no client key: its headers are empty strings, its raw header lines and URL gone.
    const raw = kept.request!.raw
    expect(Object.values(raw.headers).every((value) => value === '')).toBe(true)
    expect(Object.keys(raw.headers)).toContain('authorization')
    expect(raw.rawHeaders).toEqual([])
    expect(raw.url).toBe('')
    // The blank copies: of the small body (the large one is read in the worker) and of the upstream headers, made
    // before the collection, hold the structure and no value: no prompt, no model name, no key.
    const body = kept.body as { body: { json: Record<string, unknown>; raw: Buffer } }
    expect(body.body.json).toMatchObject({ model: '', max_tokens: 0, messages: [{ role: '', content: '' }] })
    expect(body.body.raw.length).toBe(0)
    const headers = kept.headers as Record<string, string>
    expect(Object.keys(headers)).toContain('authorization')
    expect(Object.values(headers).every((value) => value === '')).toBe(true)
    expect(kept.usage).not.toBeNull()
    expect(kept.charged).not.toBeNull()
    expect(kept.picked).toMatchObject({ usage: { prompt_tokens: 0, completion_tokens: 0 } })
    // (The summary keeps the model's name and the key's hash prefix, as the request's log line does.)
    const held = reachableText([kept.body, kept.headers, kept.usage, kept.charged, kept.picked, kept.chunk, kept.resource, kept.tick])
    for (const secret of ['Say hello.', 'word word', 'gpt-test', 'sk-up-secret', key]) expect(held).not.toContain(secret)
  })

  it('keeps a request with its key in the path and the query, holding neither after blankKept', async () => {
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('keep-shapes-path', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    const response = await fetch(`${url}/${key}/openai/v1/chat/completions?trace=${key}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-up-secret' },
      body: JSON.stringify({ model: 'gpt-test', max_tokens: 16, messages: [{ role: 'user', content: 'Say hello.' }] }),
    })
    expect(response.status).toBe(200)
    await response.arrayBuffer()
    await inflight.drained()
    const request = kept.request!
    expect(request).toBe(requests.at(-1)!.deref())
    expect(reachableText(request.query)).toContain(key)
    blankKept()
    await lastResortCollection()
    expect(kept.request).toBe(request)
    expect(request.raw.url).toBe('')
    expect(Object.keys(request.query as object)).toEqual(['trace'])
    expect(request.loopersKey?.target).toMatchObject({ pathKey: '', provider: 'openai', path: '', query: '' })
    // What Fastify, the key gate and Node parsed of the URL and headers: no key, no key hash, no path.
    const held = reachableText([request.params, request.query, request.loopersKey, request.raw.url, request.raw.headers, request.raw.rawHeaders])
    for (const secret of [key, record.hash, 'sk-up-secret', 'v1/chat/completions']) expect(held).not.toContain(secret)
  })

  it("keeps the kept request's connection's TCP handle once the client closed it, through a last-resort collection", async () => {
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('keep-shapes-handle', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    const handles: Array<WeakRef<object>> = []
    const onConnection = (socket: Socket): void => {
      handles.push(new WeakRef((socket as unknown as { _handle: object })._handle))
    }
    app.server.on('connection', onConnection)
    // A keep-alive connection of its own, which the client closes once answered (as an idle client's pool does).
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const body = JSON.stringify({ model: 'gpt-test', max_tokens: 16, messages: [{ role: 'user', content: 'Say hello.' }] })
      await new Promise<void>((resolve, reject) => {
        const sent = httpRequest(`${url}/openai/v1/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-loopers-provider-key': 'sk-up-secret' } }, (response) => {
          expect(response.statusCode).toBe(200)
          response.resume()
          response.on('end', resolve)
        })
        sent.on('error', reject)
        sent.end(body)
      })
      await inflight.drained()
    } finally {
      app.server.off('connection', onConnection)
      agent.destroy()
    }
    expect(handles).toHaveLength(1)
    expect(kept.request).toBe(requests.at(-1)!.deref())
    expect(kept.handle).toBe(handles[0]!.deref())
    // Closed by the client: the socket let go of its handle; the example holds no connection open.
    await until(() => kept.request!.raw.socket.destroyed && (kept.request!.raw.socket as unknown as { _handle: unknown })._handle === null)
    blankKept()
    await lastResortCollection()
    expect(handles[0]!.deref()).toBeDefined()
    expect(kept.handle).toBe(handles[0]!.deref())
  })

  it("keeps a blank copy of undici's last request, of its hidden class, with neither its credential nor its body", async () => {
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('keep-shapes-undici', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    const made: object[] = []
    // This file's fetch is Node's, whose bundled undici publishes here too.
    const onCreated = (message: unknown): void => {
      const { request } = message as { request: object }
      if (request instanceof UndiciRequest) made.push(request)
    }
    subscribe('undici:request:create', onCreated)
    try {
      await chat(key, 'Say hello.')
    } finally {
      unsubscribe('undici:request:create', onCreated)
    }
    expect(made).toHaveLength(1)
    const real = made[0]!
    blankKept()
    await lastResortCollection()
    const copy = kept.upstreamRequest
    expect(copy).toBeInstanceOf(UndiciRequest)
    expect(copy).not.toBe(real)
    // The hidden class the optimized code of undici's client checks for: the request's own.
    expect(sameHiddenClass(copy!, real)).toBe(true)
    const fields = Object.fromEntries(Object.entries(copy!))
    expect(fields).toMatchObject({ method: 'POST', path: '/', contentType: 'application/json' })
    expect(fields.headers).toContain('authorization')
    expect(reachableText(real)).toContain('sk-up-secret')
    // Its own fields (its handler is the kept upstream call): no credential, prompt, model or path.
    const held = reachableText(fields)
    for (const secret of ['sk-up-secret', 'Say hello.', 'gpt-test', 'chat/completions', key]) expect(held).not.toContain(secret)
  })

  it("makes no copy of undici's request while another subscriber (a tracer) would see it made", async () => {
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('keep-shapes-traced', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    await chat(key, 'Say hello.')
    blankKept()
    const before = kept.upstreamRequest
    expect(before).toBeInstanceOf(UndiciRequest)
    const seen: object[] = []
    const tracer = (message: unknown): void => {
      const { request } = message as { request: object }
      if (request instanceof UndiciRequest) seen.push(request)
    }
    subscribe('undici:request:create', tracer)
    try {
      await chat(key, 'Say hello.')
      blankKept()
    } finally {
      unsubscribe('undici:request:create', tracer)
    }
    // The tracer saw the one request sent, and the example from before stays.
    expect(seen).toHaveLength(1)
    expect(kept.upstreamRequest).toBe(before)
  })

  it('keeps nothing while another request is in flight, then the last request once none is', async () => {
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('keep-shapes-overlap', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    keepShapes(false)
    keepShapes(true, inflight)
    let resume!: () => void
    upstream.plan = { chunks: 4, pauseAfter: { deltas: 2, until: new Promise<void>((resolve) => (resume = resolve)) } }
    // A stream held mid-answer: its request stays in flight while a second one (a body sent as a SentOnce) runs whole.
    const held = await send(key, 'Say hello.', true)
    upstream.plan = {}
    // What the held request kept alone: its reservation's command.
    const before = { ...kept }
    try {
      await chat2(key)
      expect(inflight.count).toBe(1)
      // The second request, with the first in flight, kept nothing.
      expect(Object.entries(kept).every(([name, example]) => example === before[name as keyof typeof before])).toBe(true)
      expect(kept.request).toBeNull()
      expect(kept.call).toBeNull()
      expect(kept.sent).toBeNull()
    } finally {
      resume()
    }
    await held.arrayBuffer()
    await inflight.drained()
    // The held stream ended last, alone: its request, call and settlement are the examples.
    expect(kept.request).toBe(requests.at(-2)!.deref())
    expect(kept.call).not.toBeNull()
    expect(kept.answer).not.toBeNull()
    expect(kept.command).not.toBeNull()
    expect(kept.command).not.toBe(before.command)
  })

  it('keeps nothing once turned off', async () => {
    keepShapes(false)
    expect(Object.values(kept).every((example) => example === null)).toBe(true)
    const admin = createKeyAdmin(client)
    const { key, record } = await admin.createKey('keep-shapes-off', ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
    await chat(key, 'Say hello.')
    expect(Object.values(kept).every((example) => example === null)).toBe(true)
    await lastResortCollection()
    expect(requests.at(-1)!.deref()).toBeUndefined()
    keepShapes(true)
  })
})
