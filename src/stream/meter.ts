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
export async function meterStream(options: MeterOptions): Promise<MeterResult> {
  const { parser, upstream, client } = options
  let clientClosed = client.destroyed
  // Bytes of whole frames written to the client, so a parser can end its format after exactly those.
  let forwardedBytes = 0
  const onClientClose = (): void => {
    if (client.writableEnded) return
    clientClosed = true
    upstream.destroy()
  }
  client.once('close', onClientClose)
  let stopped = false
  const onStop = (): void => {
    stopped = true
    upstream.destroy()
  }
  if (options.stopSignal?.aborted) onStop()
  options.stopSignal?.addEventListener('abort', onStop, { once: true })

  async function forward(bytes: Buffer): Promise<ErrorInfo | null> {
    const cost = options.costMicros()
    const reserved = options.reservedMicros()
    if (cost > reserved) {
      const refusal = await options.extend(cost - reserved)
      if (refusal !== null) return refusal
    }
    if (clientClosed) return null
    const flushed = client.write(bytes)
    forwardedBytes += bytes.length
    if (!flushed) await drained(client)
    return null
  }

  try {
    for await (const chunk of upstream as AsyncIterable<Buffer>) {
      if (clientClosed) return { outcome: 'client_closed', error: null }
      // Frame by frame where the parser can: a read holding several events is cut between them.
      for (const ready of parser.frames ? parser.frames(chunk) : [parser.push(chunk)]) {
        if (ready.length === 0) continue
        const refusal = await forward(ready)
        if (clientClosed) return { outcome: 'client_closed', error: null }
        if (refusal !== null) return cut(refusal, 'cutoff')
      }
    }
    const rest = parser.flush()
    if (rest.length > 0) {
      const refusal = await forward(rest)
      if (clientClosed) return { outcome: 'client_closed', error: null }
      if (refusal !== null) return cut(refusal, 'cutoff')
    }
    client.end()
    return { outcome: 'completed', error: null }
  } catch (thrown) {
    if (clientClosed) return { outcome: 'client_closed', error: null, thrown }
    if (stopped && options.stopError) return { ...cut(options.stopError(), 'shutdown'), thrown }
    return { ...cut(options.upstreamFailure(), 'upstream_failed'), thrown }
  } finally {
    client.off('close', onClientClose)
    options.stopSignal?.removeEventListener('abort', onStop)
    if (!upstream.destroyed) upstream.destroy()
  }

  function cut(error: ErrorInfo, outcome: StreamOutcome): MeterResult {
    upstream.destroy()
    if (!client.writableEnded && !client.destroyed) client.end(parser.cutoffFrame?.(error, forwardedBytes) ?? options.cutoffFrame(error))
    return { outcome, error }
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
