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

/** The error a stream's reader hears when the stream is released before its end (Node's own code for it). */
export function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })
}
