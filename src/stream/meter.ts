import type { Micros } from '../money.js'
import { ShutdownList, type ShutdownSlot } from '../http/shutdown-list.js'
import type { ErrorInfo, StreamParser } from '../providers/types.js'
import type { SourceReader, StreamSource } from './source.js'

/** How a metered stream ended. */
type StreamOutcome = 'completed' | 'cutoff' | 'client_closed' | 'upstream_failed' | 'shutdown'

/** The client side of a stream: Node's ServerResponse or Http2ServerResponse. */
export interface StreamSink {
  write(chunk: Buffer): boolean
  end(chunk?: Buffer): unknown
  on(event: 'close', listener: () => void): unknown
  once(event: 'close' | 'drain', listener: () => void): unknown
  off(event: 'close' | 'drain', listener: () => void): unknown
  readonly writableEnded: boolean
  readonly destroyed: boolean
}

export interface MeterOptions {
  parser: StreamParser
  /** The upstream body, pushed to the meter (a relayed stream's, from its dispatch handler). */
  upstream: StreamSource
  client: StreamSink
  /** What the reservation holds now (it grows with each extension). */
  reservedMicros(): Micros
  /** What the stream has cost so far, from reported usage or the parser's estimate. */
  costMicros(): Micros
  /** What the stream has cost so far or more, cheaper to know (never below `costMicros()`); asked first. */
  costBoundMicros(): Micros
  /** Grows the reservation by at least `needMicros`; resolves null when granted, else the error to cut with. */
  extend(needMicros: Micros): Promise<ErrorInfo | null>
  /** The provider-format frame that ends a cut stream, unless the parser builds its own (`StreamParser.cutoffFrame`). */
  cutoffFrame(error: ErrorInfo): Buffer
  /** The error a client sees when the upstream breaks mid-stream (built only when needed). */
  upstreamFailure: () => ErrorInfo
  /** Stops the stream when the server stops: it is cut with `stopError` like a budget cutoff. */
  stop?: StreamStop
  stopError?: () => ErrorInfo
}

/** Stops every open stream at once (the server's shutdown): one listener on its signal for all of them. */
export type StreamStop = ShutdownList<Stoppable>

/** An open stream as a StreamStop holds it. */
interface Stoppable {
  stop(): void
}

/** A StreamStop fired by `signal`: a stream joins a list instead of listening on the signal. */
export function createStreamStop(signal: AbortSignal): StreamStop {
  return new ShutdownList<Stoppable>(signal, stopStream)
}

const stopStream = (stream: Stoppable): void => stream.stop()

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
  return new Promise((resolve) => new StreamMeter(options, resolve).start())
}

/**
 * One metered stream's state. An object with methods rather than a nest of closures: every open stream holds
 * one, so it holds its listeners and nothing more.
 */
class StreamMeter implements SourceReader, Stoppable {
  private readonly parser: StreamParser
  private readonly upstream: StreamSource
  private readonly client: StreamSink
  private clientClosed: boolean
  private stopped = false
  // Its place in the server's list of streams to stop, while open.
  private stopSlot: ShutdownSlot = -1
  // Bytes of whole frames written to the client, so a parser can end its format after exactly those.
  private forwardedBytes = 0
  // Frames of the current read not yet forwarded (the parser's rest once the upstream ended).
  private frames: Iterator<Buffer> | null = null
  // An extension or a drain is awaited: the upstream is paused and its end or failure waits for it.
  private waiting = false
  private ended = false
  private flushed = false
  private failed = false
  private thrown: unknown
  private done = false

  constructor(
    private readonly options: MeterOptions,
    private readonly resolve: (result: MeterResult) => void,
  ) {
    this.parser = options.parser
    this.upstream = options.upstream
    this.client = options.client
    this.clientClosed = options.client.destroyed
  }

  private readonly onClientClose = (): void => {
    if (this.client.writableEnded) return
    this.clientClosed = true
    this.upstream.destroy()
  }

  /** The server stops: the upstream is released, and the stream ends as a shutdown. */
  stop(): void {
    this.stopped = true
    this.upstream.destroy()
  }

  // Reads are pushed rather than taken through an async iterator: a read whose frames need neither an
  // extension nor a drain is forwarded in the turn it arrives, without a promise per read or per frame.
  data(chunk: Buffer): void {
    const { parser } = this
    try {
      this.frames = parser.frames ? parser.frames(chunk)[Symbol.iterator]() : [parser.push(chunk)].values()
    } catch (error) {
      // A push-only framer reads the chunk here (Gemini's JSON array past its event cap): an upstream failure,
      // never an exception thrown into the upstream's own event emitter.
      this.fail(error)
      return
    }
    this.pump()
  }

  end(): void {
    this.ended = true
    if (!this.waiting) this.pump()
  }

  // A broken transport, or a release before the end (by a client that left, or by a stop): a premature close.
  error(error: unknown): void {
    this.fail(error)
  }

  start(): void {
    const { options } = this
    // `on`, not `once`: it fires at most once and finish() removes it; `once` would add a wrapper.
    this.client.on('close', this.onClientClose)
    if (options.stop?.stopped) this.stop()
    else if (options.stop !== undefined) this.stopSlot = options.stop.add(this)
    this.upstream.read(this)
  }

  /** Forwards pending frames until one needs an extension or a drain; at the upstream's end flushes and ends. */
  private pump(): void {
    const { options, upstream } = this
    try {
      for (;;) {
        if (this.clientClosed) return this.finish({ outcome: 'client_closed', error: null })
        const next = this.frames?.next()
        if (next === undefined || next.done === true) {
          this.frames = null
          if (this.failed) return this.finish(this.failure())
          if (!this.ended) return upstream.resume()
          if (this.flushed) {
            this.client.end()
            return this.finish({ outcome: 'completed', error: null })
          }
          this.flushed = true
          this.frames = [this.parser.flush()].values()
          continue
        }
        const ready = next.value
        if (ready.length === 0) continue
        const reserved = options.reservedMicros()
        // The exact cost only when the bound passes the hold: the decision is the exact cost's either way.
        if (options.costBoundMicros() > reserved) {
          const cost = options.costMicros()
          if (cost > reserved) return this.wait(options.extend(cost - reserved), ready)
        }
        if (!this.write(ready)) return this.wait(drained(this.client), null)
      }
    } catch (error) {
      this.fail(error)
    }
  }

  /** Awaits an extension (then forwards `frame` if granted) or a drain, then goes on with the pending frames. */
  private wait(pending: Promise<ErrorInfo | null>, frame: Buffer | null): void {
    this.waiting = true
    this.upstream.pause()
    pending.then(
      (refusal) => {
        this.waiting = false
        if (this.clientClosed) return this.finish({ outcome: 'client_closed', error: null })
        if (refusal !== null) return this.finish(this.cut(refusal, 'cutoff'))
        if (frame !== null && !this.write(frame)) return this.wait(drained(this.client), null)
        this.pump()
      },
      (error: unknown) => {
        this.waiting = false
        this.fail(error)
      },
    )
  }

  private write(frame: Buffer): boolean {
    if (this.clientClosed) return true
    this.forwardedBytes += frame.length
    return this.client.write(frame)
  }

  /** The upstream broke (or its framer threw): handled at once, or when the awaited extension or drain is done. */
  private fail(error: unknown): void {
    if (this.failed || this.done) return
    this.failed = true
    this.thrown = error
    if (!this.waiting) this.finish(this.failure())
  }

  private failure(): MeterResult {
    const { options, thrown } = this
    if (this.clientClosed) return { outcome: 'client_closed', error: null, thrown }
    if (this.stopped && options.stopError) return { ...this.cut(options.stopError(), 'shutdown'), thrown }
    return { ...this.cut(options.upstreamFailure(), 'upstream_failed'), thrown }
  }

  private cut(error: ErrorInfo, outcome: StreamOutcome): MeterResult {
    const { client } = this
    this.upstream.destroy()
    if (!client.writableEnded && !client.destroyed) {
      client.end(this.parser.cutoffFrame?.(error, this.forwardedBytes) ?? this.options.cutoffFrame(error))
    }
    return { outcome, error }
  }

  /** Releases the listeners and the upstream, then resolves: exactly once. */
  private finish(outcome: MeterResult): void {
    if (this.done) return
    this.done = true
    this.client.off('close', this.onClientClose)
    if (this.stopSlot !== -1) this.options.stop?.remove(this.stopSlot, this)
    this.stopSlot = -1
    this.upstream.destroy()
    this.resolve(outcome)
  }
}

/** Resolves (with no refusal) when the client can take more bytes, or when it has gone away. */
function drained(client: StreamSink): Promise<null> {
  return new Promise((resolve) => {
    const done = (): void => {
      client.off('drain', done)
      client.off('close', done)
      resolve(null)
    }
    client.once('drain', done)
    client.once('close', done)
  })
}
