/**
 * Exact input counts for requests whose cheap bound does not fit: locally in the counting worker
 * (tiktoken, or an o200k estimate × factor), or at the provider's free counting endpoint with the
 * request's own credential. Any failure answers null, and the caller keeps the bound.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { BIG_BODY_BYTES, sha256InSlices } from '../http/raw-body.js'
import type { Price } from '../pricing/types.js'
import type { CountBody, ExactInput, ProviderAdapter, RouteMatch, UpstreamCredential } from '../providers/types.js'
import type { BodyScan } from '../tokens/bound.js'
import type { TokenCounter } from '../tokens/worker.js'
import type { CountJob } from '../tokens/worker-protocol.js'
import { assembleCountBody, type CountSource } from './count-body.js'
import type { UpstreamClient } from './upstream.js'

/** Longest wait for a provider's counting endpoint: past it, the bound stands. */
const COUNT_ENDPOINT_TIMEOUT_MS = 2_000
/** A counting endpoint's answer is small; a larger one is not a count. */
const MAX_COUNT_ANSWER_BYTES = 64 * 1024

type LocalCount = Extract<ExactInput, { kind: 'local' }>

export interface ExactCountInput {
  adapter: ProviderAdapter
  route: RouteMatch
  /** The provider path and query the request was sent to. */
  path: string
  headers: IncomingHttpHeaders
  credential: UpstreamCredential
  body: Record<string, unknown>
  raw: Buffer
  /** What a counting endpoint's request is assembled from: the body's members as sent (`RequestBody`). */
  source: CountSource
  /** The body's one walk (media parts, uploaded files), which the adapter's decision reads instead of the body. */
  scan: BodyScan
  model: string
  /** The request's price entry (an Azure deployment's `model` picks its tokenizer). */
  price?: Price
  tokensPerMedia: number
  /** Counting may stop once past this many tokens: the caller only needs to know it does not fit. */
  limit: number
}

export interface ExactCountDeps {
  counter: TokenCounter
  upstream: UpstreamClient
}

/**
 * Exact input tokens (media included) of `input.raw`, a count above `limit` when it stopped early, or null when
 * it cannot count: the count of deferInputCount, run at once.
 */
export function countExactInput(deps: ExactCountDeps, input: ExactCountInput): Promise<number | null> {
  const later = deferInputCount(deps, input)
  later.forwarded(input.raw)
  return later.count(input.limit)
}

/**
 * The count of `countExactInput`, decided at admission and run later, perhaps never (a stream that ends without
 * reported input). It holds only what it reads: for a local count the bytes forwarded (the provider bills what it
 * received; the one copy of them an open stream keeps, once undici has sent them, until it is dropped), for a
 * provider's endpoint the body's members (`source`).
 */
export interface LaterCount {
  /** The request's bytes as forwarded: what a local count reads. */
  forwarded(bytes: Buffer): void
  /** As countExactInput; null when it cannot count (nor before the request was forwarded, for a local count). */
  count(limitTokens: number): Promise<number | null>
}

/**
 * The LaterCount of `input`'s request: what it is counted with is decided now, from its body. It runs after the
 * reservation and before forwarding, where a throw would leave the hold unsettled: an adapter that cannot
 * decide answers "cannot count" (the bound stands), as a failed count does.
 */
export function deferInputCount(deps: ExactCountDeps, input: Omit<ExactCountInput, 'limit' | 'raw'>): LaterCount {
  let how: ExactInput | null
  try {
    how = input.adapter.exactInput(input.route, input.path, input.body, input.model, input.price, input.scan)
  } catch {
    return cannotCount
  }
  if (how === null) return cannotCount
  if (how.kind === 'local') return new LocalLaterCount(deps.counter, how, input.tokensPerMedia)
  const { adapter, route, headers, credential, source } = input
  const asked = { adapter, route, headers, credential, source }
  return { forwarded: () => undefined, count: () => askEndpoint(deps.upstream, asked, how.path, how.body, how.read) }
}

const cannotCount: LaterCount = { forwarded: () => undefined, count: async () => null }

class LocalLaterCount implements LaterCount {
  private sent: Buffer | null = null

  constructor(
    private readonly counter: TokenCounter,
    private readonly how: LocalCount,
    private readonly tokensPerMedia: number,
  ) {}

  forwarded(bytes: Buffer): void {
    this.sent = bytes
  }

  async count(limitTokens: number): Promise<number | null> {
    return this.sent === null ? null : countLocally(this.counter, this.how, this.sent, this.tokensPerMedia, limitTokens)
  }
}

async function countLocally(counter: TokenCounter, how: LocalCount, raw: Buffer, tokensPerMedia: number, limit: number): Promise<number | null> {
  const stop = Number.isFinite(limit) ? Math.max(0, Math.ceil(limit)) : Number.MAX_SAFE_INTEGER
  // Every member written out (no spread), so the compiler holds CountJob to what the worker is given.
  const job: CountJob = { counter: how.counter, model: how.model, factor: how.factor, raw, limit: stop, anyEncoding: how.anyEncoding === true }
  const counted = await counter.count(job)
  // A body too large to walk for media has an unknown number of parts: the bound stands.
  if (counted === null || counted.media === null) return null
  return counted.tokens + counted.media * tokensPerMedia
}

async function askEndpoint(
  upstream: UpstreamClient,
  input: Pick<ExactCountInput, 'adapter' | 'route' | 'headers' | 'credential' | 'source'>,
  path: string,
  shape: CountBody,
  read: (json: unknown) => number | null,
): Promise<number | null> {
  const signal = AbortSignal.timeout(COUNT_ENDPOINT_TIMEOUT_MS)
  try {
    const body = await assembleCountBody(shape, input.source)
    // A signature covers the body's hash: a big one is hashed in slices, not in one go while signing.
    const signsBig = input.credential.kind === 'aws' && body.length >= BIG_BODY_BYTES
    const request = input.adapter.buildUpstream({
      route: input.route,
      path,
      query: '',
      headers: { ...input.headers, 'content-type': 'application/json', accept: 'application/json' },
      credential: input.credential,
      body,
      ...(signsBig ? { bodySha256: await sha256InSlices(body) } : {}),
    })
    const response = await upstream.send(request, signal)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length
      if (size > MAX_COUNT_ANSWER_BYTES) {
        response.body.destroy()
        return null
      }
      chunks.push(chunk as Buffer)
    }
    if (response.status !== 200) return null
    const tokens = read(JSON.parse(Buffer.concat(chunks).toString('utf8')))
    return tokens !== null && Number.isSafeInteger(tokens) && tokens >= 0 ? tokens : null
  } catch {
    return null
  }
}
