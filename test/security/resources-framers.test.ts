import { afterEach, describe, expect, it, vi } from 'vitest'
import { createEventStreamFramer, encodeEventStreamMessage } from '../../src/stream/event-stream.js'
import { createJsonArrayFramer } from '../../src/stream/json-array.js'
import { createSseFramer } from '../../src/stream/sse.js'

// Issue 13, finding 8: the stream framers kept an unfinished event without limit and copied all of it again
// on every chunk (quadratic). An event is capped at 16 MiB, and a long event is copied about once.
const MiB = 1024 * 1024
const CHUNK = 16 * 1024

interface Framer {
  push(chunk: Buffer): Buffer
  flush(): Buffer
}

const framers: Array<[string, () => Framer, (bytes: number) => { head: Buffer; fill: number; tail: Buffer }]> = [
  ['SSE', () => createSseFramer(() => undefined), () => ({ head: Buffer.from('data: "'), fill: 0x61, tail: Buffer.from('"\n\n') })],
  ['JSON array', () => createJsonArrayFramer(() => undefined), () => ({ head: Buffer.from('[{"t":"'), fill: 0x61, tail: Buffer.from('"}]') })],
]

/** Feeds `head`, then `size` bytes of `fill` in CHUNK pieces, then `tail`; returns what came out. */
function feed(framer: Framer, head: Buffer, fill: number, size: number, tail: Buffer): Buffer {
  const out: Buffer[] = [framer.push(head)]
  const piece = Buffer.alloc(CHUNK, fill)
  for (let sent = 0; sent < size; sent += CHUNK) out.push(framer.push(piece))
  out.push(framer.push(tail), framer.flush())
  return Buffer.concat(out)
}

/** Bytes Buffer.concat produced while `run` ran. */
function copiedBy(run: () => void): number {
  let copied = 0
  const original = Buffer.concat.bind(Buffer)
  const spy = vi.spyOn(Buffer, 'concat').mockImplementation((list: readonly Uint8Array[], total?: number) => {
    const joined = original(list, total)
    copied += joined.length
    return joined
  })
  try {
    run()
  } finally {
    spy.mockRestore()
  }
  return copied
}

afterEach(() => vi.restoreAllMocks())

describe('a long event is copied about once, not once per chunk', () => {
  it.each(framers)('%s: an 8 MiB event in 16 KiB chunks', (_name, create, shape) => {
    const { head, fill, tail } = shape(8 * MiB)
    let out: Buffer = Buffer.alloc(0)
    // The test's own final concat in `feed` counts too: at most ~3 copies of the event in all.
    const copied = copiedBy(() => (out = feed(create(), head, fill, 8 * MiB, tail)))
    expect(out.length).toBe(head.length + 8 * MiB + tail.length)
    expect(copied).toBeLessThan(4 * 8 * MiB)
  })

  it('event stream: an 8 MiB message in 16 KiB chunks', () => {
    const message = encodeEventStreamMessage({ ':message-type': 'event', ':event-type': 'chunk' }, Buffer.alloc(8 * MiB, 0x61))
    const framer = createEventStreamFramer(() => undefined)
    let frames = 0
    const copied = copiedBy(() => {
      for (let at = 0; at < message.length; at += CHUNK) if (framer.push(message.subarray(at, at + CHUNK)).length > 0) frames++
    })
    expect(frames).toBe(1)
    expect(framer.corruptBytes()).toBe(0)
    expect(copied).toBeLessThan(2 * message.length)
  })
})

describe('an event past 16 MiB ends the stream', () => {
  it.each(framers)('%s: an unterminated event throws once it passes the limit', (_name, create, shape) => {
    const { head, fill } = shape(0)
    const framer = create()
    framer.push(head)
    const piece = Buffer.alloc(64 * 1024, fill)
    let pushed = head.length
    expect(() => {
      for (; pushed < 32 * MiB; pushed += piece.length) framer.push(piece)
    }).toThrow(/limit/)
    expect(pushed).toBeGreaterThan(16 * MiB - piece.length)
    expect(pushed).toBeLessThanOrEqual(16 * MiB + piece.length)
  })

  it.each(framers)('%s: an event of just under 16 MiB still passes whole', (_name, create, shape) => {
    const size = 16 * MiB - 64 * 1024
    const { head, fill, tail } = shape(size)
    const out = feed(create(), head, fill, size, tail)
    expect(out.length).toBe(head.length + size + tail.length)
  })
})
