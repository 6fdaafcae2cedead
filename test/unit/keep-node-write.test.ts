import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { randomUUID } from 'node:crypto'
import { getHeapSnapshot, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent } from 'undici'
import { createUpstreamSocketKeeper, createWritevExample } from '../../src/proxy/keep-node-write.js'
import { blankKept, kept, keepShapes } from '../../src/proxy/keep-shapes.js'

// The example must have the hidden class of the array Node's socket write path makes for a corked write (else the
// optimized code embedding that class is still thrown away at each quiet period) and hold nothing.
setFlagsFromString('--allow-natives-syntax')
setFlagsFromString('--expose-gc')
const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: unknown, b: unknown) => boolean
const gc = runInNewContext('gc') as (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void

let server: Server
let socket: Socket

beforeAll(async () => {
  server = createServer((peer) => peer.resume())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  socket = connect(port, '127.0.0.1')
  await new Promise<void>((resolve) => socket.once('connect', resolve))
})

afterAll(async () => {
  keepShapes(false)
  socket.destroy()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

/**
 * Whether a string in this process's heap contains the text `encoded` holds in base64: decoded only once the snapshot
 * is taken, so the search itself is not found.
 */
async function heapHolds(encoded: string): Promise<boolean> {
  const snapshot = getHeapSnapshot()
  const text = Buffer.from(encoded, 'base64').toString()
  let tail = ''
  for await (const chunk of snapshot) {
    const piece = tail + (chunk as Buffer).toString('latin1')
    if (piece.includes(text)) {
      snapshot.destroy()
      return true
    }
    tail = piece.slice(-text.length)
  }
  return false
}

/** The array a corked write of `chunks` hands the socket's `_writev` (Node's own, called through). */
async function writevArray(chunks: Array<Buffer | string>): Promise<WeakRef<object>> {
  let seen: object | null = null
  const own = socket._writev!.bind(socket)
  socket._writev = (data, callback) => {
    seen = data
    own(data, callback)
  }
  try {
    await new Promise<void>((resolve) => {
      socket.cork()
      for (const chunk of chunks) socket.write(chunk)
      socket.write('', () => resolve())
      socket.uncork()
    })
  } finally {
    delete (socket as Partial<Socket>)._writev
  }
  expect(seen).not.toBeNull()
  return new WeakRef(seen!)
}

describe('createWritevExample', () => {
  it.each([
    ['buffers', [Buffer.from('sk-secret-1'), Buffer.from('sk-secret-2')]],
    ['strings and buffers', ['sk-secret-1', Buffer.from('sk-secret-2')]],
  ])("has the hidden class of a socket's corked write of %s", async (_, chunks) => {
    const written = await writevArray(chunks)
    expect(sameMap(createWritevExample(), written.deref())).toBe(true)
  })

  it('holds no element, only the member Node adds', () => {
    const example = createWritevExample()
    expect(Reflect.ownKeys(example)).toEqual(['length', 'allBuffers'])
    expect((example as unknown[]).length).toBe(0)
  })
})

describe("keep-shapes' writev example", () => {
  it('is made at blankKept, keeps its hidden class through a memory-reducing collection, holds none of what was written, and goes when keeping stops', async () => {
    keepShapes(true)
    const written = await writevArray([Buffer.from('sk-secret-3'), Buffer.from('sk-secret-4')])
    blankKept()
    const example = kept.writev
    expect(sameMap(example, written.deref())).toBe(true)
    await new Promise((resolve) => setImmediate(resolve))
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    expect(written.deref()).toBeUndefined()
    blankKept()
    expect(kept.writev).toBe(example)
    const after = await writevArray([Buffer.from('a'), Buffer.from('b')])
    expect(sameMap(kept.writev, after.deref())).toBe(true)
    keepShapes(false)
    expect(kept.writev).toBeNull()
  })
})

describe('createUpstreamSocketKeeper', () => {
  let upstream: HttpServer
  let origin: string
  const keeper = createUpstreamSocketKeeper()

  beforeAll(async () => {
    // Every answer closes its connection, as a quiet period's keep-alive timeout does.
    upstream = createHttpServer((request, response) => {
      request.resume()
      request.on('end', () => response.writeHead(200, { connection: 'close', 'x-secret': 'sk-upstream-header' }).end('sk-upstream-answer'))
    })
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
    origin = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`
  })

  afterAll(async () => {
    keeper.watch(false)
    await new Promise<void>((resolve) => upstream.close(() => resolve()))
  })

  // Made at run time and held only in base64, so no source text or test variable holds it.
  const credential = Buffer.from(`sk-${randomUUID()}`).toString('base64')

  /** One call through undici's Agent, as ./upstream.ts makes them; WeakRefs to the body sent and the chunks read. */
  async function call(agent: Agent): Promise<Array<WeakRef<object>>> {
    const body = Buffer.from('{"key":"sk-client-secret"}')
    const refs: Array<WeakRef<object>> = [new WeakRef(body)]
    const answer = await agent.request({ origin, path: '/v1/chat', method: 'POST', headers: { authorization: `Bearer ${Buffer.from(credential, 'base64').toString()}` }, body })
    for await (const chunk of answer.body) refs.push(new WeakRef(chunk as Buffer))
    return refs
  }

  /** Until undici's socket to the upstream has closed. */
  async function closedSoon(): Promise<object | null> {
    for (let tries = 0; tries < 100 && keeper.closed() === null; tries++) await new Promise((resolve) => setTimeout(resolve, 10))
    return keeper.closed()
  }

  it('gives the last closed upstream socket, holding none of what it sent or read', async () => {
    keeper.watch(true)
    const agent = new Agent()
    // What the socket itself read, besides what undici made of it.
    const read: Array<WeakRef<object>> = []
    const onConnected = (message: unknown): void => {
      ;(message as { socket: Socket }).socket.on('data', (data: Buffer) => read.push(new WeakRef(data)))
    }
    subscribe('undici:client:connected', onConnected)
    const refs = await call(agent).finally(() => unsubscribe('undici:client:connected', onConnected))
    expect(read.length).toBeGreaterThan(0)
    refs.push(...read)
    const socket = (await closedSoon()) as Socket | null
    expect(socket).not.toBeNull()
    expect(socket!.destroyed).toBe(true)
    await new Promise((resolve) => setImmediate(resolve))
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    expect(refs.map((ref) => ref.deref())).toEqual(refs.map(() => undefined))
    expect(keeper.closed()).toBe(socket)
    // Nothing at all holds the credential sent in the header undici wrote (a string: no WeakRef can watch it).
    expect(await heapHolds(credential)).toBe(false)
    await agent.close()
  })

  it('gives no socket still open, nor one of Node\'s own fetch, and lets go when watching stops', async () => {
    keeper.watch(false)
    keeper.watch(true)
    const agent = new Agent()
    let opened: object | null = null
    const onConnected = (message: unknown): void => {
      opened = (message as { socket: object }).socket
    }
    subscribe('undici:client:connected', onConnected)
    try {
      // Kept alive: the answer does not close this one.
      const live = createHttpServer((request, response) => request.resume().on('end', () => response.end('ok')))
      await new Promise<void>((resolve) => live.listen(0, '127.0.0.1', resolve))
      const answer = await agent.request({ origin: `http://127.0.0.1:${(live.address() as { port: number }).port}`, path: '/', method: 'GET' })
      await answer.body.text()
      expect(opened).not.toBeNull()
      expect(keeper.closed()).toBeNull()
      await agent.close()
      live.close()
      expect(await closedSoon()).toBe(opened)
      keeper.watch(false)
      expect(keeper.closed()).toBeNull()
      keeper.watch(true)
      opened = null
      await (await fetch(`${origin}/`)).text()
      expect(opened).not.toBeNull()
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect((opened as unknown as Socket).destroyed).toBe(true)
      expect(keeper.closed()).toBeNull()
    } finally {
      unsubscribe('undici:client:connected', onConnected)
    }
  })
})
