import type { OutgoingHttpHeaders } from 'node:http'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { upstreamUnreachable } from '../errors.js'
import { parseJson, pickMembers } from '../http/json-pick.js'
import { BIG_BODY_BYTES, copyToShared, sha256InSlices } from '../http/raw-body.js'
import { relayableResponseHeaders } from '../http/response-headers.js'
import { ShutdownList } from '../http/shutdown-list.js'
import type { Micros } from '../money.js'
import { microsToUsd } from '../money.js'
import { costMicros, withPlannedInput } from '../pricing/cost.js'
import type { ProviderAdapter, UpstreamCredential, UpstreamRequest } from '../providers/types.js'
import { MAX_BODY_BYTES, UpstreamTooLargeError } from '../stream/limits.js'
import type { SourceReader, StreamSource } from '../stream/source.js'
import type { TokenCounter } from '../tokens/worker.js'
import { EDITED, endedInput, shuttingDown, type Forward, type ForwardDeps } from './forward-shared.js'
import { loweredOutputCap } from './plan.js'
import { keepPicked, keepUsage } from './keep-shapes.js'
import { createStreamRelay } from './relay-stream.js'
import { REMAINING_HEADER, usdHeader } from './respond.js'
import { createSettlement, type SettlementDeps } from './settlement.js'
import type { Summary } from './summary.js'
import type { Target } from './target.js'
import { UpstreamAbort, type UpstreamResponse } from './upstream.js'


const MAX_ERROR_BODY_BYTES = 1024 * 1024
const MAX_FREE_RESPONSE_BYTES = 16 * 1024 * 1024

/**
 * The forwarding half of the pipeline: free requests pass through; metered ones are sent with their
 * reservation, relayed (streams through the meter) and settled exactly once, whatever happens.
 */
export function createForwarder(deps: ForwardDeps & Pick<SettlementDeps, 'released'>) {
  const relayStream = createStreamRelay(deps)
  const settleReservation = createSettlement(deps)
  // One shutdown listener for every open request.
  const open = new ShutdownList<UpstreamAbort>(deps.shutdown, abortUpstream)

  /** A signal that fires when the client goes away before the response is complete, or at shutdown. */
  function abortOnClientClose(reply: FastifyReply): UpstreamAbort {
    const signal = new UpstreamAbort()
    const raw = reply.raw
    if (open.stopped || (raw.destroyed && !raw.writableEnded)) {
      signal.abort()
      return signal
    }
    // Its 'close' already came: nothing left to watch.
    if (raw.closed) return signal
    const slot = open.add(signal)
    // A response closes once: `on`, not `once` and the wrapper it builds per request.
    raw.on('close', () => {
      open.remove(slot, signal)
      if (!raw.writableEnded) signal.abort()
    })
    return signal
  }

  async function forwardFree(
    request: FastifyRequest,
    reply: FastifyReply,
    adapter: ProviderAdapter,
    target: Target,
    credential: UpstreamCredential | null,
    summary: Summary,
  ): Promise<void> {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    // A big free body (a client's own Bedrock CountTokens call) is hashed for its signature in slices too.
    const signsBig = credential?.kind === 'aws' && raw.length >= BIG_BODY_BYTES
    const upstreamRequest = adapter.buildUpstream({
      route: { operation: 'free', pathModel: null, pathStream: null },
      path: target.path,
      query: target.query,
      headers: request.headers,
      credential,
      body: raw,
      ...(signsBig ? { bodySha256: await sha256InSlices(raw) } : {}),
    })
    const abort = abortOnClientClose(reply)
    const method = request.method === 'HEAD' ? 'HEAD' : request.method === 'GET' ? 'GET' : 'POST'
    const response = await deps.upstream.send(upstreamRequest, abort, method)
    summary.outcome = 'free'
    // Streamed through, never buffered whole; a reply past the cap is cut (a model list is a few hundred KiB).
    reply.hijack()
    reply.raw.writeHead(response.status, relayableResponseHeaders(response.rawHeaders))
    try {
      await pipeline(response.body, capped(MAX_FREE_RESPONSE_BYTES), reply.raw)
    } catch {
      // Cut at the cap, or either side went away: the client sees a truncated answer, nothing is charged.
      response.body.destroy()
      reply.raw.destroy()
    }
  }





  async function forwardMetered(f: Forward): Promise<void> {
    const { reply, adapter, route, facts, price, plan, reservation, summary } = f
    let settled = false
    // Not async: the settlement's own promise (settlement.ts), no frame or await per settlement.
    const settle = (actual: Micros, outcome: string): Promise<void> => {
      if (settled) return SETTLED
      settled = true
      summary.outcome = outcome
      summary.chargedUsd = microsToUsd(actual)
      return settleReservation(reservation, actual, summary)
    }

    let sent = false
    // A stream is the relay's to settle from here on, on every path: this frame ends instead of staying
    // suspended for the stream's life with the upstream request, its response and headers.
    let relayed = false
    try {
      const lowered = loweredOutputCap(plan, price, reservation.reservedMicros)
      if (lowered !== null) summary.maxTokens = lowered
      const built = buildMetered(f, lowered)
      const upstreamRequest = built instanceof Promise ? await built : built
      const abort = abortOnClientClose(reply)
      // Gone before anything was sent: the provider was never called, so nothing is charged.
      if (abort.aborted) return await settle(0, 'client_closed')

      let response: UpstreamResponse
      try {
        summary.addedMs = Math.round((performance.now() - f.started) * 1000) / 1000
        sent = true
        response = await deps.upstream.send(upstreamRequest, abort)
      } catch (error) {
        if (deps.shutdown.aborted) {
          await settle(facts.stream ? plan.inputMicros + plan.feeMicros : reservation.reservedMicros, 'shutdown')
          throw shuttingDown()
        }
        if (abort.aborted) {
          // Gone before the upstream answered: a stream had produced nothing yet; a non-streamed
          // request may have been fully generated, so it keeps its whole hold.
          if (!facts.stream || price.hiddenReasoning) return await settle(reservation.reservedMicros, 'client_closed')
          const input = await endedInput(f)
          summary.inputTokens = input.tokens
          return await settle(input.micros + plan.feeMicros, 'client_closed')
        }
        await settle(0, 'upstream_unreachable')
        throw error
      }
      summary.status = response.status
      const headers = relayableResponseHeaders(response.rawHeaders)
      if (lowered !== null) headers['x-loopers-max-tokens'] = String(lowered)
      const remaining = reservation.remainingMicros ?? null
      if (remaining !== null) headers[REMAINING_HEADER] = usdHeader(remaining)

      if (response.status >= 400) {
        // Providers do not bill refused requests (unless the adapter says so): refund, relay the error unchanged.
        const read = readBody(response, MAX_ERROR_BODY_BYTES)
        const bytes = read instanceof Promise ? await read.catch(() => Buffer.alloc(0)) : read
        sendWhole(reply, response.status, headers, bytes)
        await settle(adapter.errorBillsInput?.(route, response.status, parseJson(bytes)) === true ? plan.inputMicros : 0, 'upstream_error')
        return
      }

      if (!facts.stream) {
        let bytes: Buffer
        try {
          const read = readBody(response, MAX_BODY_BYTES)
          bytes = read instanceof Promise ? await read : read
        } catch (error) {
          if (deps.shutdown.aborted) {
            await settle(reservation.reservedMicros, 'shutdown')
            throw shuttingDown()
          }
          if (abort.aborted) return await settle(reservation.reservedMicros, 'client_closed')
          // Too large or broken: the provider may have billed it all, so the whole hold is charged.
          await settle(reservation.reservedMicros, 'upstream_failed')
          if (error instanceof UpstreamTooLargeError) throw upstreamUnreachable(`the provider's answer exceeded the ${error.limitBytes}-byte limit`, { cause: error })
          throw upstreamUnreachable('the provider connection broke before the answer was complete', { cause: error })
        }
        // Answer first, usage read after: nothing the client gets depends on it, and the hold keeps the money
        // booked until settlement lands a round trip later.
        sendWhole(reply, response.status, headers, bytes)
        const usage =
          adapter.usageFromHeaders?.(route, response.headers) ??
          adapter.usageFromBody(route, keepPicked(bytes.length < BIG_BODY_BYTES ? pickMembers(bytes, adapter.usageMembers) : await pickBigMembers(deps.counter, bytes, adapter.usageMembers)))
        keepUsage(usage)
        // No usage reported: charge what was held, never less than may have been spent.
        // Hosted-tool fees are charged at the calls the request allowed (usage does not itemise them here).
        const actual = usage === null ? reservation.reservedMicros : costMicros(price, withPlannedInput(usage, plan.inputTokens)) + plan.feeMicros
        summary.inputTokens = usage?.inputTokens
        summary.outputTokens = usage?.outputTokens
        await settle(actual, 'completed')
        return
      }

      const streamed = relayStream(f, response, headers, settle)
      relayed = true
      return streamed
    } finally {
      // A fault this code did not foresee: nothing is charged if the provider was never called,
      // else the whole hold (the provider may have generated all of it).
      if (!settled && !relayed) await settle(sent ? reservation.reservedMicros : 0, 'aborted')
    }
  }



  return { forwardFree, forwardMetered }
}


const abortUpstream = (signal: UpstreamAbort): void => signal.abort()

/** What settling a request again gives: it was settled already. */
const SETTLED: Promise<void> = Promise.resolve()

/**
 * The upstream request of `f`, built from its body, which it takes from `f` (an open stream keeps none of it):
 * what is sent is what was metered. An unchanged small body is built in this turn, without a promise.
 */
function buildMetered(f: Forward, lowered: number | null): UpstreamRequest | Promise<UpstreamRequest> {
  const payload = f.payload
  if (payload === null) throw new Error('a metered request is forwarded once')
  f.payload = null
  const prebuilt = f.prebuilt
  f.prebuilt = null
  if (prebuilt !== null && prebuilt !== EDITED && lowered === null) {
    f.countInput?.forwarded(payload.raw)
    return prebuilt
  }
  // Prepared already for an unlowered grant: as it is, or lowered now (prepareBody sets what it changes, so a
  // second call gives what one call with the lowered cap would).
  const edited = prebuilt === EDITED
  const changed = edited && lowered === null ? true : f.adapter.prepareBody(f.route, payload.editable(), f.facts, lowered) || edited
  return changed ? payload.edited().then((body) => buildWith(f, body)) : buildWith(f, payload.raw)
}

/**
 * The upstream request of a metered request whose reserve is in flight, as forwardMetered builds it when the
 * grant lowers no cap, so the grant finds it ready: only when `prepareBody` leaves the body unchanged (the raw
 * bytes go) and no hash is taken in slices; EDITED when `prepareBody` changed the body (prepared, not built).
 * Null when building fails (it fails again, and is answered, as the request is forwarded). Nothing is sent
 * here: forwardMetered sends it after the grant.
 */
export function prebuildUpstream(
  adapter: ProviderAdapter,
  p: { route: Forward['route']; facts: Forward['facts']; target: Target; headers: Forward['request']['headers']; credential: UpstreamCredential; payload: NonNullable<Forward['payload']> },
): Forward['prebuilt'] {
  try {
    const body = p.payload.raw
    if (p.credential.kind === 'aws' && body.length >= BIG_BODY_BYTES) return null
    if (adapter.prepareBody(p.route, p.payload.editable(), p.facts, null)) return EDITED
    return adapter.buildUpstream({ route: p.route, path: p.target.path, query: p.target.query, headers: p.headers, credential: p.credential, body })
  } catch {
    return null
  }
}

function buildWith(f: Forward, body: Buffer): UpstreamRequest | Promise<UpstreamRequest> {
  f.countInput?.forwarded(body)
  const context = { route: f.route, path: f.target.path, query: f.target.query, headers: f.request.headers, credential: f.credential, body }
  // A signature covers the body's hash: a big one is hashed in slices here, not in one go while signing.
  if (f.credential.kind === 'aws' && body.length >= BIG_BODY_BYTES) {
    return sha256InSlices(body).then((bodySha256) => f.adapter.buildUpstream({ ...context, bodySha256 }))
  }
  return f.adapter.buildUpstream(context)
}

/**
 * The members `keys` of a big answer (`bytes` in shared memory, see WholeBody), read in the counting worker:
 * the walk, or the whole parse of an answer it cannot vouch for, takes tens of milliseconds at this size.
 * When the worker cannot (its queue stays full, a fault), they are read here, as for a small answer: the
 * charge is the provider's usage either way.
 */
async function pickBigMembers(counter: TokenCounter, bytes: Buffer, keys: readonly string[]): Promise<unknown> {
  const picked = await counter.pick(bytes, keys)
  return picked === null ? pickMembers(bytes, keys) : picked.members
}

/**
 * A whole upstream answer, written straight to the connection as the stream relay writes its head: the
 * relayed headers, the length of `bytes` (a Buffer Fastify would type as octet-stream when the provider named no type).
 */
function sendWhole(reply: FastifyReply, status: number, headers: OutgoingHttpHeaders, bytes: Buffer): void {
  reply.hijack()
  headers['content-type'] ??= 'application/octet-stream'
  headers['content-length'] = bytes.length
  reply.raw.writeHead(status, headers)
  reply.raw.end(bytes)
}


/** A pass-through that fails once more than `limit` bytes went through it. */
function capped(limit: number): Transform {
  let size = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length
      if (size > limit) return done(new Error(`free response above ${limit} bytes`))
      done(null, chunk)
    },
  })
}

/**
 * Reads a whole upstream body from its source, without a Readable: the body itself when it came whole before
 * the read (a small answer arrives with its headers), else a promise of it. Past `limit` bytes the upstream is
 * released and UpstreamTooLargeError thrown.
 */
function readBody(response: UpstreamResponse, limit: number): Buffer | Promise<Buffer> {
  const reader = new WholeBody(response.source, limit)
  response.source.read(reader)
  return reader.result()
}

/** The reader of readBody: one object per answer, not a closure per event. */
class WholeBody implements SourceReader {
  private chunks: Buffer[] = []
  private size = 0
  private done = false
  // The outcome when it came before anyone waited for it: the body, or (body null) why there is none.
  private body: Buffer | null = null
  private failure: unknown = null
  private resolve: ((body: Buffer) => void) | null = null
  private reject: ((error: unknown) => void) | null = null

  constructor(
    private readonly source: StreamSource,
    private readonly limit: number,
  ) {}

  /** The body, a promise of it, or a rejected promise once it failed. */
  result(): Buffer | Promise<Buffer> {
    if (!this.done) {
      return new Promise((resolve, reject) => {
        this.resolve = resolve
        this.reject = reject
      })
    }
    return this.body ?? Promise.reject(this.failure)
  }

  data(chunk: Buffer): void {
    if (this.done) return
    this.size += chunk.length
    if (this.size <= this.limit) {
      // The first in a list of one (see UpstreamBody.push).
      if (this.chunks.length === 0) this.chunks = [chunk]
      else this.chunks.push(chunk)
      return
    }
    this.fail(new UpstreamTooLargeError('an upstream body', this.limit))
    // Its reader hears a premature close next, already done.
    this.source.destroy()
  }

  end(): void {
    if (this.done) return
    const { chunks, size } = this
    this.chunks = []
    // A big answer is copied into shared memory in slices, for the counting worker to read (pickBigMembers).
    if (size >= BIG_BODY_BYTES) {
      copyToShared(chunks, size).then(
        (body) => this.finish(body),
        (error: unknown) => this.fail(error),
      )
      return
    }
    // One chunk (the common small answer) is the answer: no copy.
    this.finish(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size))
  }

  private finish(body: Buffer): void {
    this.done = true
    if (this.resolve !== null) this.resolve(body)
    else this.body = body
  }

  error(error: unknown): void {
    if (!this.done) this.fail(error)
  }

  private fail(error: unknown): void {
    this.done = true
    this.chunks = []
    if (this.reject !== null) this.reject(error)
    else this.failure = error
  }
}
