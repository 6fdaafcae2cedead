/** A metered stream relayed through the meter: extended slice by slice, cut at the budget, settled once. */
import type { Refusal } from '../budget/types.js'
import { budgetUnavailable, upstreamUnreachable } from '../errors.js'
import type { Micros } from '../money.js'
import { microsToUsd } from '../money.js'
import { costMicros, tokensCost } from '../pricing/cost.js'
import { UpstreamTooLargeError } from '../stream/limits.js'
import { createStreamStop, meterStream, type MeterOptions, type MeterResult, type StreamSink, type StreamStop } from '../stream/meter.js'
import type { StreamSource } from '../stream/source.js'
import type { ErrorInfo, StreamParser } from '../providers/types.js'
import { createOutputCounter } from '../tokens/output-counter.js'
import { endedInput, shuttingDown, type Forward, type ForwardDeps } from './forward-shared.js'
import { refusalError } from './refusal.js'
import { toErrorInfo } from './respond.js'
import type { UpstreamResponse } from './upstream.js'

/**
 * The stream half of `forwardMetered`: headers out at once, every event through the meter, the hold extended
 * slice by slice, the stream cut in the provider's format when an extension is refused, then settled.
 */
export function createStreamRelay(deps: ForwardDeps) {
  const stop = createStreamStop(deps.shutdown)
  return function relayStream(f: Forward, response: UpstreamResponse, headers: Record<string, unknown>, settle: Settle): Promise<void> {
    return new RelayedStream(deps, stop, f, response.source, settle).run(response, headers)
  }
}

type Settle = (actual: Micros, outcome: string) => Promise<void>

/**
 * One relayed stream, and the meter's options as its methods: an open stream holds this object, not a nest
 * of closures over the request, nor a suspended async frame (the stream's end continues in `ended`).
 */
class RelayedStream implements MeterOptions {
  readonly parser: StreamParser
  readonly client: StreamSink
  // Input is held at the plan's until the provider reports it, or until it is counted (once): for a refused
  // extension (the bound's surplus may hold the rest of the stream), else once the stream has ended.
  private inputTokens: number
  private inputMicros: Micros
  private inputCount: Promise<void> | null = null
  private surplusTried = false

  constructor(
    private readonly deps: ForwardDeps,
    readonly stop: StreamStop,
    private readonly f: Forward,
    readonly upstream: StreamSource,
    private readonly settle: Settle,
  ) {
    this.parser = f.adapter.createStreamParser(f.route, createOutputCounter(f.price.tokenizer))
    this.client = f.reply.raw
    this.inputTokens = f.plan.inputTokens
    this.inputMicros = f.plan.inputMicros
  }

  /** Sends the head and starts the meter; resolves once the stream has ended and is settled. */
  run(response: UpstreamResponse, headers: Record<string, unknown>): Promise<void> {
    const { f, deps } = this
    const { reply, plan, price, reservation } = f
    // A stream the budget may not carry to its cap is counted as it starts, off the event loop, so a refused
    // extension finds the count ready instead of pausing the stream (the provider goes on generating).
    const left = reservation.remainingMicros
    const mayNeed = plan.inputMicros + plan.feeMicros + tokensCost(plan.outputCap, price.outputPer1M) - reservation.reservedMicros
    if (f.countInput !== undefined && left !== undefined && left !== null && left < mayNeed) void this.countInput()
    reply.hijack()
    reply.raw.writeHead(response.status, headers as Record<string, string>)
    // Relayed: the header lines (a dozen buffers) go now, not when the stream ends (every open stream held them).
    response.rawHeaders.length = 0
    flushHeadersSoon(reply.raw, response.source.bufferedBytes > 0)
    deps.metrics.streamStarted()
    return meterStream(this).then(
      (result) => this.ended(result),
      async (error: unknown) => {
        deps.metrics.streamEnded()
        await this.settle(this.f.reservation.reservedMicros, 'aborted')
        throw error
      },
    )
  }

  /**
   * Charges what the ended stream cost (`result` says how it ended), once. A fault this code did not foresee
   * charges the whole hold (the provider may have generated all of it): the stream is settled on every path.
   */
  private async ended(result: MeterResult): Promise<void> {
    try {
      await this.charge(result)
    } finally {
      // Does nothing once charged.
      await this.settle(this.f.reservation.reservedMicros, 'aborted')
    }
  }

  private async charge(result: MeterResult): Promise<void> {
    const { f, deps, parser } = this
    const { price, reservation, summary } = f
    deps.metrics.streamEnded()
    // Ended without reported input (cut, client gone, upstream broke): charged the input the provider bills.
    await this.countInput()
    summary.inputTokens = parser.reported().inputTokens ?? this.inputTokens
    summary.outputTokens = this.outputTokens()
    if (result.error !== null) {
      summary.code = result.error.code
      if (typeof result.error.details?.window === 'string') summary.window = result.error.details.window
    }
    // Reasoning the stream never showed is billed by the provider: without its reported usage, the
    // whole hold (the request's worst case) is what may have been spent. So is an event past the size
    // limit: what the provider generated beyond it is unknown.
    const unreported = price.hiddenReasoning && parser.reported().outputTokens === undefined
    const overflowed = result.thrown instanceof UpstreamTooLargeError
    if (overflowed) summary.cause = 'upstream stream event above the size limit'
    await this.settle(unreported || overflowed ? Math.max(reservation.reservedMicros, this.costMicros()) : this.costMicros(), result.outcome)
  }

  reservedMicros(): Micros {
    return this.f.reservation.reservedMicros
  }

  costMicros(): Micros {
    return this.costWith(this.outputTokens())
  }

  costBoundMicros(): Micros {
    return this.costWith(this.capped(this.parser.outputBound()))
  }

  /** The stream's cost with `outputTokens` of output: its input as reported, else as counted before forwarding. */
  private costWith(outputTokens: number): Micros {
    const { plan, price } = this.f
    const reported = this.parser.reported()
    if (reported.inputTokens === undefined) return this.inputMicros + plan.feeMicros + tokensCost(outputTokens, price.outputPer1M)
    // Reported input needs no count: what the count holds of the request (its body) goes now, not at the stream's end.
    this.f.countInput = undefined
    return costMicros(price, { ...reported, outputTokens }) + plan.feeMicros
  }

  async extend(need: Micros): Promise<ErrorInfo | null> {
    const { f, deps, parser } = this
    const { reservation } = f
    const slice = tokensCost(deps.config.streamSliceTokens, f.price.outputPer1M)
    try {
      let extended = await deps.store.extend(reservation, need, need + slice)
      if (!extended.ok && holdsSurplus(extended) && f.countInput !== undefined && !this.surplusTried && parser.reported().inputTokens === undefined) {
        this.surplusTried = true
        await this.countInput()
        const rest = this.costMicros() - reservation.reservedMicros
        if (rest <= 0) return null
        extended = await deps.store.extend(reservation, rest, rest + slice)
      }
      if (extended.ok) return null
      if (extended.heldMicros !== undefined) f.summary.heldUsd = microsToUsd(extended.heldMicros)
      return toErrorInfo(refusalError(extended, f.adapter.id, deps.now()))
    } catch (error) {
      return toErrorInfo(budgetUnavailable('the budget store became unavailable during the stream', { cause: error }))
    }
  }

  cutoffFrame(error: ErrorInfo): Buffer {
    return this.f.adapter.cutoffFrame(this.f.route, error)
  }

  upstreamFailure(): ErrorInfo {
    return toErrorInfo(upstreamUnreachable('the provider connection broke during the stream'))
  }

  stopError(): ErrorInfo {
    return toErrorInfo(shuttingDown())
  }

  /** Output tokens so far: a count (or estimate) never passes the request's cap, where the provider stops whatever the count says. */
  private outputTokens(): number {
    return this.capped(this.parser.outputTokens())
  }

  private capped(counted: number): number {
    const cap = this.f.facts.maxOutputTokens
    return cap === null || this.parser.reported().outputTokens !== undefined ? counted : Math.min(counted, cap)
  }

  /** Counts the input once, unless the provider reported it. */
  private countInput(): Promise<void> {
    if (this.inputCount === null && this.parser.reported().inputTokens === undefined) {
      this.inputCount = endedInput(this.f).then((counted) => {
        this.inputTokens = counted.tokens
        this.inputMicros = counted.micros
      })
    }
    return this.inputCount ?? Promise.resolve()
  }
}

/**
 * The client learns at once that its stream began. When the upstream's first bytes came with its headers
 * (already buffered), the headers leave with the first event, as the provider sent them: Node sends a
 * response's head with its first body write, in one socket write (one client wake-up fewer before the
 * first byte). If that event is not written in this turn of the event loop (incomplete, or waiting for an
 * extension), the headers go out alone at its end. (HTTP/2 sends its HEADERS frame at once either way.)
 */
function flushHeadersSoon(
  raw: { flushHeaders(): void; readonly headersSent: boolean; readonly destroyed: boolean; readonly writableEnded: boolean },
  bodyBuffered: boolean,
): void {
  if (raw.destroyed || raw.writableEnded) return
  if (!bodyBuffered) return raw.flushHeaders()
  setImmediate(() => {
    if (!raw.headersSent && !raw.destroyed && !raw.writableEnded) raw.flushHeaders()
  })
}

/**
 * A refusal that leaves the stream its own hold: the budget ran out with this hold inside the limit. A revoked
 * key, or a limit lowered below what is already used, stops the stream at once, whatever the hold still covers.
 */
function holdsSurplus(refusal: Refusal): boolean {
  if (refusal.reason !== 'budget_exceeded' && refusal.reason !== 'session_budget_exceeded') return false
  return refusal.limitMicros !== undefined && refusal.spentMicros !== undefined && refusal.spentMicros <= refusal.limitMicros
}
