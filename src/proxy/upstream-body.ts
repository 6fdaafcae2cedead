import { Readable } from 'node:stream'
import { prematureClose, type SourceReader, type StreamSource } from '../stream/source.js'

/** Who lets an upstream go once its body is released. */
export interface UpstreamRelease {
  /** Aborts the upstream with `error` (or with its own, when null) unless it completed. */
  release(error: Error | null): void
}

// What is buffered before undici pauses the socket: as much as undici's own body stream holds.
const HIGH_WATER_MARK = 64 * 1024

/**
 * An upstream answer's body as undici's dispatch handler receives it, read one of two ways: as a Readable made
 * on first use (`readable()`: every answer but a relayed stream), or pushed straight to one reader (`read()`:
 * a relayed stream's meter, without a Readable's buffering and its turn per chunk). Either way the socket is
 * paused once HIGH_WATER_MARK bytes wait for a paused reader.
 */
export class UpstreamBody implements StreamSource {
  private stream: Readable | null = null
  private reader: SourceReader | null = null
  // Chunks received before the reader came or while it is paused.
  private queue: Buffer[] = []
  private queued = 0
  private paused = false
  // undici's socket was paused (a chunk was refused) and waits for the queue to be taken.
  private held = false
  private complete = false
  private delivered = false
  private released = false
  private failure: Error | null = null

  /** `resumeUpstream` resumes undici's paused socket; `owner` lets the upstream go. */
  constructor(
    private readonly resumeUpstream: () => void,
    private readonly owner: UpstreamRelease,
  ) {}

  get bufferedBytes(): number {
    return this.queued
  }

  /** The body as a Readable whose destruction before its end aborts the request; made once. */
  readable(): Readable {
    if (this.stream !== null) return this.stream
    const owner = this.owner
    const stream = new Readable({
      highWaterMark: HIGH_WATER_MARK,
      read: this.resumeUpstream,
      destroy(error, callback) {
        owner.release(error)
        // Destroyed before its reader attached (it awaits the headers first): the events wait a turn for it.
        if (this.readableFlowing === null) setImmediate(callback, error)
        else callback(error)
      },
    })
    this.stream = stream
    for (const chunk of this.queue) stream.push(chunk)
    this.queue = []
    this.queued = 0
    if (this.failure !== null) stream.on('error', ignore).destroy(this.failure)
    else if (this.complete) stream.push(null)
    return stream
  }

  /** From undici: one chunk. False asks undici to pause the socket. */
  push(chunk: Buffer): boolean {
    if (this.stream !== null) return this.stream.push(chunk)
    if (this.released) return false
    if (this.reader !== null && !this.paused && this.queued === 0) {
      this.reader.data(chunk)
      return true
    }
    // The first chunk in a list of one (a small answer is one chunk): a push onto an empty list makes room for sixteen.
    if (this.queue.length === 0) this.queue = [chunk]
    else this.queue.push(chunk)
    this.queued += chunk.length
    if (this.queued < HIGH_WATER_MARK) return true
    this.held = true
    return false
  }

  /** From undici: the body ended. */
  end(): void {
    this.complete = true
    if (this.stream !== null) return void this.stream.push(null)
    if (this.reader !== null && !this.paused && this.queued === 0) this.deliverEnd()
  }

  /** From undici, or from the request's abort: the body broke. Its reader hears it on the next tick. */
  fail(error: Error): void {
    if (this.stream !== null) return void this.stream.on('error', ignore).destroy(error)
    if (this.released) return
    this.drop(error)
    this.failure = error
    if (this.reader !== null) this.tellFailure(this.reader)
  }

  read(reader: SourceReader): void {
    this.reader = reader
    if (this.released) return this.tellFailure(reader)
    this.flow(reader)
  }

  pause(): void {
    this.paused = true
  }

  resume(): void {
    if (!this.paused || this.reader === null) return
    this.paused = false
    this.flow(this.reader)
  }

  destroy(): void {
    if (this.released) return
    this.drop(null)
    if (this.reader !== null) this.tellFailure(this.reader)
  }

  /** Delivers the queue until the reader pauses; once it is taken, the socket resumes and the end follows. */
  private flow(reader: SourceReader): void {
    while (!this.paused && !this.released && this.queue.length > 0) {
      const chunk = this.queue.shift()!
      this.queued -= chunk.length
      reader.data(chunk)
    }
    if (this.paused || this.released) return
    if (this.held) {
      this.held = false
      this.resumeUpstream()
    }
    if (this.complete) this.deliverEnd()
  }

  private deliverEnd(): void {
    if (this.delivered) return
    this.delivered = true
    this.reader!.end()
  }

  private drop(error: Error | null): void {
    this.released = true
    this.queue = []
    this.queued = 0
    this.owner.release(error)
  }

  /** A release before the delivered end: the failure, or a premature close, on the next tick. */
  private tellFailure(reader: SourceReader): void {
    if (this.delivered) return
    this.delivered = true
    process.nextTick(() => reader.error(this.failure ?? prematureClose()))
  }
}

const ignore = (): void => undefined
