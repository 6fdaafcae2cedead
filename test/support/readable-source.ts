import type { Readable } from 'node:stream'
import { prematureClose, type StreamSource } from '../../src/stream/source.js'

/** A Readable as a StreamSource, with its events' timing. */
export function readableSource(stream: Readable): StreamSource {
  // The end or the first error was told: nothing more is.
  let told = false
  let onData: ((chunk: Buffer) => void) | null = null
  let onEnd: (() => void) | null = null
  return {
    read(reader) {
      const fail = (error: unknown): void => {
        if (told) return
        told = true
        reader.error(error)
      }
      onData = (chunk) => reader.data(chunk)
      onEnd = () => {
        told = true
        reader.end()
      }
      // The error listener stays after the end: an error emitted later must not become an uncaught one.
      stream.on('error', fail)
      stream.on('data', onData)
      stream.on('end', onEnd)
      // Closed before its end: destroyed by a reader that left, or by a broken transport.
      stream.on('close', () => fail(prematureClose()))
    },
    pause: () => void stream.pause(),
    resume() {
      if (stream.isPaused()) stream.resume()
    },
    // What the stream still emits once released is not read.
    destroy() {
      if (onData !== null) stream.off('data', onData)
      if (onEnd !== null) stream.off('end', onEnd)
      stream.destroy()
    },
    get bufferedBytes() {
      return stream.readableLength
    },
  }
}
