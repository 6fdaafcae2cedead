import { Readable } from 'node:stream'
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici'
import { ProxyError, upstreamTimeout, upstreamUnreachable } from '../errors.js'
import { BIG_BODY_BYTES } from '../http/raw-body.js'
import { SHARE_SLICE_BYTES, take } from '../http/turn-share.js'
import type { UpstreamRequest } from '../providers/types.js'

/** The answer of an upstream: status, headers, and a body stream that must be consumed or destroyed. */
export interface UpstreamResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Readable
}

export interface UpstreamClient {
  /**
   * Sends one request. Rejects with ProxyError(upstream_unreachable | upstream_timeout) when the
   * upstream cannot be reached or does not answer in time, or with the abort reason when `signal` fires.
   */
  send(request: UpstreamRequest, signal: AbortSignal, method?: 'POST' | 'GET' | 'HEAD'): Promise<UpstreamResponse>
  close(): Promise<void>
}

export interface UpstreamOptions {
  connectTimeoutMs: number
  /** Longest wait for response headers and longest silence inside a response body. */
  timeoutMs: number
  /** For tests: a dispatcher to use instead of a pooled Agent. */
  dispatcher?: Dispatcher
}

export function createUpstreamClient(options: UpstreamOptions): UpstreamClient {
  const dispatcher =
    options.dispatcher ??
    new Agent({
      connect: { timeout: options.connectTimeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 30_000,
      // No cap on connections per provider: every open stream holds one, and a queued stream would wait
      // for another to finish (minutes, for LLM answers).
      connections: null,
    })
  return {
    async send(request, signal, method = 'POST') {
      try {
        // Parsed once: origin and path come from the same URL object.
        const url = new URL(request.url)
        const response = await dispatcher.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method,
          ...(method === 'POST' ? outgoing(request) : { headers: request.headers, body: null }),
          signal,
        })
        return { status: response.statusCode, headers: response.headers, body: response.body }
      } catch (error) {
        throw classify(error, signal)
      }
    },
    async close() {
      if (options.dispatcher === undefined) await dispatcher.close()
    },
  }
}

/** Headers and body to send: a big body in slices within the turn share (../http/turn-share.ts), its length declared. */
function outgoing(request: UpstreamRequest): { headers: Record<string, string>; body: Buffer | Readable } {
  const { body } = request
  if (body.length < BIG_BODY_BYTES) return { headers: request.headers, body }
  const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => name.toLowerCase() !== 'content-length'))
  headers['content-length'] = String(body.length)
  return { headers, body: Readable.from(inSlices(body), { objectMode: false }) }
}

async function* inSlices(body: Buffer): AsyncGenerator<Buffer> {
  for (let from = 0; from < body.length; from += SHARE_SLICE_BYTES) {
    await take()
    yield body.subarray(from, from + SHARE_SLICE_BYTES)
  }
}

/** Maps transport failures to the contract's 502/504 errors; an abort by the client passes through. */
export function classify(error: unknown, signal?: AbortSignal): unknown {
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
