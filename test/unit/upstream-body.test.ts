import { describe, expect, it } from 'vitest'
import { UpstreamBody } from '../../src/proxy/upstream-body.js'
import type { SourceReader } from '../../src/stream/source.js'

/** A body with undici's side recorded: how often the socket was resumed, and what it was released with. */
function body() {
  const upstream = { resumed: 0, released: [] as Array<Error | null> }
  const source = new UpstreamBody(
    () => upstream.resumed++,
    { release: (error) => upstream.released.push(error) },
  )
  return { source, upstream }
}

/** A reader that records every call; `onData` may act on the source inside a read. */
function reader(onData: (chunk: Buffer) => void = () => undefined) {
  const calls: string[] = []
  const read: SourceReader = {
    data(chunk) {
      calls.push(chunk.toString())
      onData(chunk)
    },
    end: () => calls.push('end'),
    error: (error) => calls.push(`error: ${(error as Error).message}`),
  }
  return { read, calls }
}

const tick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve))
const KiB = 1024

describe('upstream body, read straight from the dispatch handler', () => {
  it('hands over what came before the reader first, then each chunk as it comes, then the end', () => {
    const { source, upstream } = body()
    source.push(Buffer.from('a'))
    source.push(Buffer.from('b'))
    expect(source.bufferedBytes).toBe(2)
    const { read, calls } = reader()
    source.read(read)
    expect(source.bufferedBytes).toBe(0)
    source.push(Buffer.from('c'))
    source.end()
    expect(calls).toEqual(['a', 'b', 'c', 'end'])
    // Ended: its release aborts nothing (the handler sees no error) and no close error follows.
    source.destroy()
    expect(upstream.released).toEqual([null])
  })

  it('holds the chunks of a paused reader and pauses the socket at 64 KiB; resume delivers them, the end after them', () => {
    const { source, upstream } = body()
    const { read, calls } = reader()
    source.read(read)
    source.pause()
    expect(source.push(Buffer.alloc(32 * KiB, 'x'))).toBe(true)
    expect(source.push(Buffer.alloc(32 * KiB, 'y'))).toBe(false)
    source.end()
    expect(calls).toEqual([])
    source.resume()
    expect(calls.map((c) => c[0])).toEqual(['x', 'y', 'e'])
    expect(upstream.resumed).toBe(1)
  })

  it('stops delivering when the reader pauses inside a read, and goes on where it stopped', () => {
    const { source } = body()
    for (const c of ['a', 'b', 'c']) source.push(Buffer.from(c))
    const { read, calls } = reader((chunk) => chunk.toString() === 'a' && source.pause())
    source.read(read)
    expect(calls).toEqual(['a'])
    source.resume()
    expect(calls).toEqual(['a', 'b', 'c'])
  })

  it('tells a reader released before the end of a premature close on the next tick, and drops what was held', async () => {
    const { source, upstream } = body()
    const { read, calls } = reader()
    source.read(read)
    source.pause()
    source.push(Buffer.from('held'))
    source.destroy()
    source.push(Buffer.from('late'))
    source.resume()
    expect(calls).toEqual([])
    expect(upstream.released).toEqual([null])
    await tick()
    expect(calls).toEqual(['error: Premature close'])
  })

  it('tells its reader of a broken upstream on the next tick, once, even when it broke before the reader came', async () => {
    const { source, upstream } = body()
    source.push(Buffer.from('a'))
    source.fail(new Error('socket reset'))
    source.fail(new Error('again'))
    const { read, calls } = reader()
    source.read(read)
    expect(calls).toEqual([])
    await tick()
    expect(calls).toEqual(['error: socket reset'])
    expect(upstream.released.map((e) => e?.message)).toEqual(['socket reset'])
  })

  it('is a Readable with the same bytes when read as one, ended or broken as the upstream was', async () => {
    const { source } = body()
    source.push(Buffer.from('a'))
    const stream = source.readable()
    expect(source.readable()).toBe(stream)
    source.push(Buffer.from('b'))
    source.end()
    const chunks: Buffer[] = []
    for await (const chunk of stream) chunks.push(chunk as Buffer)
    expect(Buffer.concat(chunks).toString()).toBe('ab')

    const broken = body().source
    broken.fail(new Error('socket reset'))
    await expect(broken.readable().toArray()).rejects.toThrow('socket reset')
  })
})
