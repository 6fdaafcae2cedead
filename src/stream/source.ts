import { Readable } from 'node:stream'

/** Takes a stream's reads as they come: any number of `data`, then at most one of `end` or `error`. */
export interface SourceReader {
  data(chunk: Buffer): void
  end(): void
  error(error: unknown): void
}

/**
 * Where a metered stream's bytes come from, pushed to one reader: from the upstream's own callbacks, and
 * from `read` and `resume` (what was buffered). An error reaches the reader on a later tick, never inside a call.
 */
export interface StreamSource {
  /** Starts the reads: what came before goes first. Called once. */
  read(reader: SourceReader): void
  /** No more reads until `resume`; the upstream is paused once a high-water mark is buffered. */
  pause(): void
  /** Delivers what came while paused (then the end, if it came), and goes on. Does nothing unless paused. */
  resume(): void
  /**
   * Releases the upstream (aborted unless it ended) and drops what is buffered. Before the end was delivered,
   * the reader hears a premature-close error on the next tick, as a destroyed Readable's reader does.
   */
  destroy(): void
  /** Bytes received and not yet delivered. */
  readonly bufferedBytes: number
}

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

/** The error a stream's reader hears when the stream is released before its end (Node's own code for it). */
export function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })
}
