import { createRequire } from 'node:module'
import { Socket } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'

// The process's first stream destroyed with an error (undici closing an idle upstream connection at its keep-alive
// timeout) changed a prototype that ~40 optimized socket and parser functions depend on, and threw them once a run
// (bench/thread-work.mjs). keep-shapes destroys one socket so, through undici's own destroy, before any request.
const undiciUtil = createRequire(import.meta.url)('undici/lib/core/util.js') as { destroy: (stream: unknown, err: Error) => void }

afterEach(() => vi.restoreAllMocks())

describe('keep-shapes at start-up', () => {
  it("destroys one socket with an undici error through undici's destroy, once a process", async () => {
    const destroy = vi.spyOn(undiciUtil, 'destroy')
    const { keepShapes } = await import('../../src/proxy/keep-shapes.js')
    keepShapes(true)
    keepShapes(false)
    keepShapes(true)
    keepShapes(false)
    expect(destroy).toHaveBeenCalledTimes(1)
    const [socket, error] = destroy.mock.calls[0]!
    expect(socket).toBeInstanceOf(Socket)
    expect((socket as Socket).destroyed).toBe(true)
    expect(error).toMatchObject({ code: 'UND_ERR_INFO', name: 'InformationalError' })
    // Its error was handled: nothing reached the process.
    await new Promise((resolve) => setImmediate(resolve))
  })
})
