import type { Readable } from 'node:stream'
import type { Micros } from '../money.js'
import type { ErrorInfo, StreamParser } from '../providers/types.js'

/** How a metered stream ended. */
export type StreamOutcome = 'completed' | 'cutoff' | 'client_closed' | 'upstream_failed' | 'shutdown'

/** The client side of a stream: Node's ServerResponse or Http2ServerResponse. */
export interface StreamSink {
  write(chunk: Buffer): boolean
  end(chunk?: Buffer): unknown
  once(event: 'close' | 'drain', listener: () => void): unknown
  off(event: 'close' | 'drain', listener: () => void): unknown
  readonly writableEnded: boolean
  readonly destroyed: boolean
}

export interface MeterOptions {
  parser: StreamParser
  upstream: Readable
  client: StreamSink
  /** What the reservation holds now (it grows with each extension). */
  reservedMicros(): Micros
  /** What the stream has cost so far, from reported usage or the parser's estimate. */
  costMicros(): Micros
  /** Grows the reservation by at least `needMicros`; resolves null when granted, else the error to cut with. */
  extend(needMicros: Micros): Promise<ErrorInfo | null>
  /** The provider-format frame that ends a cut stream, unless the parser builds its own (`StreamParser.cutoffFrame`). */
  cutoffFrame(error: ErrorInfo): Buffer
  /** The error a client sees when the upstream breaks mid-stream (built only when needed). */
  upstreamFailure: () => ErrorInfo
  /** Fires when the server stops: the stream is cut with `stopError` like a budget cutoff. */
  stopSignal?: AbortSignal
  stopError?: () => ErrorInfo
}

export interface MeterResult {
  outcome: StreamOutcome
  /** The error the stream was ended with (cutoff or upstream failure). */
  error: ErrorInfo | null
  /** What the upstream side threw, when it broke (a transport error, or a framer's UpstreamTooLargeError). */
  thrown?: unknown
}

/**
 * Forwards an upstream stream to the client whole frame by whole frame, bytes unchanged. Before a
 * frame that would pass the reservation is forwarded, the reservation is extended; when that is
 * refused the stream ends with a cutoff frame and the upstream is destroyed. A client that goes
 * away destroys the upstream at once. Resolves exactly once, after the upstream is released.
 */
export function meterStream(options: MeterOptions): Promise<MeterResult> {
  const { parser, upstream, client } = options
  let clientClosed = client.destroyed
  let stopped = false
  // Bytes of whole frames written to the client, so a parser can end its format after exactly those.
  let forwardedBytes = 0
  // Frames of the current read not yet forwarded (the parser's rest once the upstream ended).
  let frames: Iterator<Buffer> | null = null
  // An extension or a drain is awaited: the upstream is paused and its end or failure waits for it.
  let waiting = false
  let ended = false
  let flushed = false
  let failed = false
  let thrown: unknown
  let done = false
  let resolveResult: (result: MeterResult) => void = () => undefined
  const result = new Promise<MeterResult>((resolve) => {
    resolveResult = resolve
  })

  const onClientClose = (): void => {
    if (client.writableEnded) return
    clientClosed = true
    upstream.destroy()
  }
  const onStop = (): void => {
    stopped = true
    upstream.destroy()
  }
  // Reads arrive as events rather than through an async iterator: a read whose frames need neither an
  // extension nor a drain is forwarded in the turn it arrives, without a promise per read or per frame.
  const onData = (chunk: Buffer): void => {
    try {
      frames = parser.frames ? parser.frames(chunk)[Symbol.iterator]() : [parser.push(chunk)].values()
    } catch (error) {
      // A push-only framer reads the chunk here (Gemini's JSON array past its event cap): an upstream failure,
      // never an exception thrown into the upstream's own event emitter.
      fail(error)
      return
    }
    pump()
  }
  const onEnd = (): void => {
    ended = true
    if (!waiting) pump()
  }
  const onError = (error: unknown): void => fail(error)
  // Closed before its end: destroyed by a client that left, by a stop, or by a broken transport.
  const onClose = (): void => {
    if (!ended) fail(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }))
  }

  client.once('close', onClientClose)
  if (options.stopSignal?.aborted) onStop()
  options.stopSignal?.addEventListener('abort', onStop, { once: true })
  // The error listener stays after the end: an error emitted later must not become an uncaught one.
  upstream.on('error', onError)
  upstream.on('data', onData)
  upstream.once('end', onEnd)
  upstream.once('close', onClose)
  return result

  /** Forwards pending frames until one needs an extension or a drain; at the upstream's end flushes and ends. */
  function pump(): void {
    try {
      for (;;) {
        if (clientClosed) return finish({ outcome: 'client_closed', error: null })
        const next = frames?.next()
        if (next === undefined || next.done === true) {
          frames = null
          if (failed) return finish(failure())
          if (!ended) {
            if (upstream.isPaused()) upstream.resume()
            return
          }
          if (flushed) {
            client.end()
            return finish({ outcome: 'completed', error: null })
          }
          flushed = true
          frames = [parser.flush()].values()
          continue
        }
        const ready = next.value
        if (ready.length === 0) continue
        const cost = options.costMicros()
        const reserved = options.reservedMicros()
        if (cost > reserved) return wait(options.extend(cost - reserved), ready)
        if (!write(ready)) return wait(drained(client).then(() => null), null)
      }
    } catch (error) {
      fail(error)
    }
  }

  /** Awaits an extension (then forwards `frame` if granted) or a drain, then goes on with the pending frames. */
  function wait(pending: Promise<ErrorInfo | null>, frame: Buffer | null): void {
    waiting = true
    upstream.pause()
    pending.then(
      (refusal) => {
        waiting = false
        if (clientClosed) return finish({ outcome: 'client_closed', error: null })
        if (refusal !== null) return finish(cut(refusal, 'cutoff'))
        if (frame !== null && !write(frame)) return wait(drained(client).then(() => null), null)
        pump()
      },
      (error: unknown) => {
        waiting = false
        fail(error)
      },
    )
  }

  function write(frame: Buffer): boolean {
    if (clientClosed) return true
    forwardedBytes += frame.length
    return client.write(frame)
  }

  /** The upstream broke (or its framer threw): handled at once, or when the awaited extension or drain is done. */
  function fail(error: unknown): void {
    if (failed || done) return
    failed = true
    thrown = error
    if (!waiting) finish(failure())
  }

  function failure(): MeterResult {
    if (clientClosed) return { outcome: 'client_closed', error: null, thrown }
    if (stopped && options.stopError) return { ...cut(options.stopError(), 'shutdown'), thrown }
    return { ...cut(options.upstreamFailure(), 'upstream_failed'), thrown }
  }

  function cut(error: ErrorInfo, outcome: StreamOutcome): MeterResult {
    upstream.destroy()
    if (!client.writableEnded && !client.destroyed) client.end(parser.cutoffFrame?.(error, forwardedBytes) ?? options.cutoffFrame(error))
    return { outcome, error }
  }

  /** Releases the listeners and the upstream, then resolves: exactly once. */
  function finish(outcome: MeterResult): void {
    if (done) return
    done = true
    client.off('close', onClientClose)
    options.stopSignal?.removeEventListener('abort', onStop)
    upstream.off('data', onData)
    upstream.off('end', onEnd)
    upstream.off('close', onClose)
    if (!upstream.destroyed) upstream.destroy()
    resolveResult(outcome)
  }
}

/** Resolves when the client can take more bytes, or when it has gone away. */
function drained(client: StreamSink): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      client.off('drain', done)
      client.off('close', done)
      resolve()
    }
    client.once('drain', done)
    client.once('close', done)
  })
}
