import { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
// The Agent and the errors alone, not undici's entry point (which loads fetch and all else): ../deep-imports.d.ts.
import Agent from 'undici/lib/dispatcher/agent.js'
import undiciErrors from 'undici/lib/core/errors.js'
import { ProxyError, upstreamTimeout, upstreamUnreachable } from '../errors.js'
import { BIG_BODY_BYTES } from '../http/raw-body.js'
import { SHARE_SLICE_BYTES, take } from '../http/turn-share.js'
import type { UpstreamRequest } from '../providers/types.js'
import type { StreamSource } from '../stream/source.js'
import { keepCall, keepHeaders, keepSent } from './keep-shapes.js'
import { UpstreamBody, type UpstreamRelease } from './upstream-body.js'

/** The answer of an upstream: status, headers, and a body stream that must be consumed or destroyed. */
export interface UpstreamResponse {
  status: number
  /**
   * The header lines as received: name, value, name, value (what ../http/response-headers.ts relays from). A relayed
   * stream empties it once its head is written.
   */
  rawHeaders: Buffer[]
  /** Parsed on first read, as undici's `request()` gives them: lower-case names, a repeated header's values in an array. */
  readonly headers: Record<string, string | string[] | undefined>
  /** The body as a Readable, made on first read. */
  readonly body: Readable
  /** The body pushed straight from the dispatch handler, without a Readable: a relayed stream's. Read one of the two. */
  readonly source: StreamSource
}

/** An UpstreamResponse whose header object is built only when something reads it (most answers never do). */
class Answer implements UpstreamResponse {
  private parsed: Record<string, string | string[]> | null = null

  constructor(
    readonly status: number,
    readonly rawHeaders: Buffer[],
    readonly source: UpstreamBody,
  ) {}

  get headers(): Record<string, string | string[]> {
    return (this.parsed ??= parseHeaders(this.rawHeaders))
  }

  get body(): Readable {
    return this.source.readable()
  }
}

/**
 * The abort signal of one proxied request: `abort()` calls the one hook the upstream call set, no listener list.
 * Listening on an AbortSignal instead costs a proxied request about 3% of its CPU.
 */
export class UpstreamAbort {
  aborted = false
  reason: unknown = undefined
  /** Set by `send` while its call runs; null otherwise. */
  onabort: AbortHook | null = null

  /** Aborts once (later calls do nothing), with an AbortError as AbortController.abort() gives. */
  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = new DOMException('This operation was aborted', 'AbortError')
    this.onabort?.handleEvent()
  }
}

/** What an UpstreamAbort calls when it fires: an EventTarget's listener object, so one object serves both signals. */
interface AbortHook {
  handleEvent(): void
}

/** What aborts an upstream call: an UpstreamAbort (the proxy's requests) or any AbortSignal. */
type UpstreamSignal = UpstreamAbort | AbortSignal

export interface UpstreamClient {
  /**
   * Sends one request. Rejects with ProxyError(upstream_unreachable | upstream_timeout) when the
   * upstream cannot be reached or does not answer in time, or with the abort reason when `signal` fires.
   * It takes a body of RELEASED_BODY_BYTES or more (`request.body` is left empty), so a caller awaiting a
   * stream's end holds no copy of it.
   */
  send(request: UpstreamRequest, signal: UpstreamSignal, method?: 'POST' | 'GET' | 'HEAD'): Promise<UpstreamResponse>
  close(): Promise<void>
}

interface UpstreamOptions {
  connectTimeoutMs: number
  /** Longest wait for response headers and longest silence inside a response body. */
  timeoutMs: number
}

export function createUpstreamClient(options: UpstreamOptions): UpstreamClient {
  const dispatcher = new Agent({
    connect: { timeout: options.connectTimeoutMs },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    keepAliveTimeout: 30_000,
    // No cap on connections per provider: every open stream holds one, and a queued stream would wait
    // for another to finish (minutes, for LLM answers).
    connections: null,
  })
  return {
    // Not async: the call's own promise is the answer, its failures classified where they happen.
    send(request, signal, method = 'POST') {
      try {
        const { origin, path } = urlTarget(request.url)
        const { headers, body } = method === 'POST' ? outgoing(request) : { headers: request.headers, body: null }
        // undici's typings lack the iterable body its documentation and its code take.
        const options = { origin, path, method, headers, body: body as Dispatcher.DispatchOptions['body'] }
        return dispatch(dispatcher, options, signal)
      } catch (error) {
        return Promise.reject(classify(error, signal))
      }
    },
    close: () => dispatcher.close(),
  }
}

/** Where undici sends a URL: its origin, and its path with the query string. */
interface UrlTarget {
  origin: string
  path: string
}

// URLs remembered (a route's few paths and queries; a full map starts over), up to this long each.
const MAX_KNOWN_URLS = 256
const MAX_KNOWN_URL_CHARS = 512
/** URLs sent to lately: parsed once each, as `new URL` reads them. */
const knownUrls = new Map<string, UrlTarget>()

/** The origin and path of `url` as `new URL` reads them; a URL sent to lately is not parsed again. */
function urlTarget(url: string): UrlTarget {
  let target = knownUrls.get(url)
  if (target === undefined) {
    // Parsed once: origin and path come from the same URL object.
    const parsed = new URL(url)
    target = { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` }
    if (url.length <= MAX_KNOWN_URL_CHARS) {
      if (knownUrls.size >= MAX_KNOWN_URLS) knownUrls.clear()
      knownUrls.set(url, target)
    }
  }
  return target
}

/**
 * One request through undici's dispatch API: resolves at the response headers with the body (./upstream-body.ts),
 * whose release before its end aborts the request; `signal` aborts it at any point. undici's `request()` does the
 * same, but it can only listen on an AbortSignal.
 */
function dispatch(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, signal: UpstreamSignal): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal))
      return
    }
    const call = new UpstreamCall(signal, resolve, reject)
    if (signal instanceof UpstreamAbort) signal.onabort = call
    else signal.addEventListener('abort', call, { once: true })
    try {
      dispatcher.dispatch(options, call)
    } catch (error) {
      call.onError(error as Error)
    }
  })
}

/**
 * One upstream call: undici's handler, its signal's listener and its body's owner in one object rather than a
 * closure for each (every open stream holds one).
 */
class UpstreamCall implements Dispatcher.DispatchHandler, AbortHook, UpstreamRelease {
  private abortRequest: ((reason?: Error) => void) | null = null
  // Aborted before undici handed the request a connection: it is aborted as soon as it gets one.
  private cancelled: Error | null = null
  private body: UpstreamBody | null = null
  private answer: Answer | null = null
  private ended = false

  constructor(
    private readonly signal: UpstreamSignal,
    private readonly resolve: (response: UpstreamResponse) => void,
    private readonly reject: (error: unknown) => void,
  ) {}

  /** The signal fired. */
  handleEvent(): void {
    const reason = abortReason(this.signal)
    if (this.body !== null) return this.body.fail(reason)
    if (this.abortRequest !== null) return this.abortRequest(reason)
    this.cancelled = reason
    this.reject(reason)
  }

  onConnect(abortRequest: (reason?: Error) => void): void {
    if (this.cancelled !== null) return abortRequest(this.cancelled)
    this.abortRequest = abortRequest
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx answers (100 Continue, 103 Early Hints) come before the real one.
    if (status < 200) return true
    this.body = new UpstreamBody(resume, this)
    this.answer = new Answer(status, rawHeaders, this.body)
    this.resolve(this.answer)
    return true
  }

  onData(chunk: Buffer): boolean {
    return this.body!.push(chunk)
  }

  onComplete(): void {
    this.ended = true
    // Nothing aborts a completed call: undici's request (its credential, a small body) is let go with it.
    this.abortRequest = null
    this.unwatch()
    keepCall(this, this.answer)
    this.body!.end()
  }

  onError(error: Error): void {
    this.unwatch()
    if (this.body === null) this.reject(classify(error, this.signal))
    else this.body.fail(error)
  }

  /** The body lets the upstream go: aborted unless it completed. */
  release(error: Error | null): void {
    this.unwatch()
    if (!this.ended) this.abortRequest?.(error ?? new Error('the upstream body was closed before its end'))
  }

  private unwatch(): void {
    const { signal } = this
    if (signal instanceof UpstreamAbort) signal.onabort = null
    else signal.removeEventListener('abort', this)
  }
}

function abortReason(signal: UpstreamSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('the request was aborted')
}

/** Response headers as undici's `request()` gives them: lower-case names, a repeated header's values in an array. */
function parseHeaders(raw: Buffer[]): Record<string, string | string[]> {
  // No prototype: a header named `__proto__` is a header like any other.
  const headers: Record<string, string | string[]> = Object.create(null)
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase()
    const value = raw[i + 1]!.toString('latin1')
    const seen = headers[name]
    if (seen === undefined) headers[name] = value
    else if (typeof seen === 'string') headers[name] = [seen, value]
    else seen.push(value)
  }
  return headers
}

/**
 * From this size on, a body is taken from its request and handed to undici as a SentOnce: undici keeps its
 * request's body until the answer ends (minutes, for a stream), so 1,000 open streams of 100 KB prompts kept
 * 100 MB. A smaller body is handed over as it is: an iterable body is written through a few promises more.
 */
export const RELEASED_BODY_BYTES = 16 * 1024

const NO_BODY = Buffer.alloc(0)

/**
 * Headers and body to send, `request`'s body taken from RELEASED_BODY_BYTES on: in one piece that undici lets
 * go once written, or a big body in slices within the turn share (../http/turn-share.ts); its length declared.
 */
function outgoing(request: UpstreamRequest): { headers: Record<string, string>; body: Buffer | SentOnce | Readable } {
  const { body } = request
  keepHeaders(request.headers)
  if (body.length < RELEASED_BODY_BYTES) return { headers: request.headers, body }
  request.body = NO_BODY
  // undici reads an iterable body's length from the headers, so the bytes sent are a Buffer body's.
  const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => name.toLowerCase() !== 'content-length'))
  headers['content-length'] = String(body.length)
  return { headers, body: body.length < BIG_BODY_BYTES ? new SentOnce(body) : Readable.from(inSlices(body), { objectMode: false }) }
}

/** A body that hands over its bytes once and forgets them: undici's request holds this, not the bytes. */
class SentOnce implements IterableIterator<Buffer> {
  constructor(private body: Buffer | null) {}

  [Symbol.iterator](): this {
    return this
  }

  next(): IteratorResult<Buffer, undefined> {
    const body = this.body
    if (body === null) return { done: true, value: undefined }
    this.body = null
    keepSent(this)
    return { done: false, value: body }
  }
}

async function* inSlices(body: Buffer): AsyncGenerator<Buffer> {
  for (let from = 0; from < body.length; from += SHARE_SLICE_BYTES) {
    await take()
    yield body.subarray(from, from + SHARE_SLICE_BYTES)
  }
}

/** Maps transport failures to the contract's 502/504 errors; an abort by the client passes through. */
function classify(error: unknown, signal?: UpstreamSignal): unknown {
  if (signal?.aborted) return error
  if (error instanceof ProxyError) return error
  if (
    error instanceof undiciErrors.ConnectTimeoutError ||
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError
  ) {
    return upstreamTimeout('the provider did not answer in time', { cause: error })
  }
  return upstreamUnreachable('the provider could not be reached', { cause: error })
}
