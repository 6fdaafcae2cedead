import { createServer, connect, type Server, type Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWritevExample } from '../../src/proxy/keep-node-write.js'
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
