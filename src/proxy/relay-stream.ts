/** A metered stream relayed through the meter: extended slice by slice, cut at the budget, settled once. */
import type { Refusal } from '../budget/types.js'
import { budgetUnavailable, upstreamUnreachable } from '../errors.js'
import type { Micros } from '../money.js'
import { microsToUsd } from '../money.js'
import { costMicros, tokensCost } from '../pricing/cost.js'
import { UpstreamTooLargeError } from '../stream/limits.js'
import { meterStream } from '../stream/meter.js'
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
  const { config, store, now } = deps

  async function relayStream(
    f: Forward,
    response: UpstreamResponse,
    headers: Record<string, unknown>,
    settle: (actual: Micros, outcome: string) => Promise<void>,
  ): Promise<void> {
    const { reply, adapter, route, facts, price, plan, reservation, summary } = f
    const parser = adapter.createStreamParser(route, createOutputCounter(price.tokenizer))
    // A count (or estimate) never passes the request's cap: the provider stops there, whatever the count says.
    const cap = facts.maxOutputTokens
    const outputTokens = (): number => {
      const counted = parser.outputTokens()
      return cap === null || parser.reported().outputTokens !== undefined ? counted : Math.min(counted, cap)
    }
    // Input is held at the plan's until the provider reports it, or until it is counted (once): for a refused
    // extension (the bound's surplus may hold the rest of the stream), else once the stream has ended.
    let input = { tokens: plan.inputTokens, micros: plan.inputMicros }
    let inputCount: Promise<void> | null = null
    const countInput = (): Promise<void> => {
      if (inputCount === null && parser.reported().inputTokens === undefined) {
        inputCount = endedInput(f).then((counted) => void (input = counted))
      }
      return inputCount ?? Promise.resolve()
    }
    // A stream the budget may not carry to its cap is counted as it starts, off the event loop, so a refused
    // extension finds the count ready instead of pausing the stream (the provider goes on generating).
    const left = reservation.remainingMicros
    const mayNeed = plan.inputMicros + plan.feeMicros + tokensCost(plan.outputCap, price.outputPer1M) - reservation.reservedMicros
    if (f.countInput !== undefined && left !== undefined && left !== null && left < mayNeed) void countInput()
    let surplusTried = false
    const cost = (): Micros => {
      const reported = parser.reported()
      if (reported.inputTokens === undefined) return input.micros + plan.feeMicros + tokensCost(outputTokens(), price.outputPer1M)
      return costMicros(price, { ...reported, outputTokens: outputTokens() }) + plan.feeMicros
    }
    const slice = tokensCost(config.streamSliceTokens, price.outputPer1M)
    reply.hijack()
    reply.raw.writeHead(response.status, headers as Record<string, string>)
    flushHeadersSoon(reply.raw, response.body.readableLength > 0)
    deps.metrics.streamStarted()
    const result = await meterStream({
      stopSignal: deps.shutdown,
      stopError: () => toErrorInfo(shuttingDown()),
      parser,
      upstream: response.body,
      client: reply.raw,
      reservedMicros: () => reservation.reservedMicros,
      costMicros: cost,
      extend: async (need) => {
        try {
          let extended = await store.extend(reservation, need, need + slice)
          if (!extended.ok && holdsSurplus(extended) && f.countInput !== undefined && !surplusTried && parser.reported().inputTokens === undefined) {
            surplusTried = true
            await countInput()
            const rest = cost() - reservation.reservedMicros
            if (rest <= 0) return null
            extended = await store.extend(reservation, rest, rest + slice)
          }
          if (extended.ok) return null
          if (extended.heldMicros !== undefined) summary.heldUsd = microsToUsd(extended.heldMicros)
          return toErrorInfo(refusalError(extended, adapter.id, now()))
        } catch (error) {
          return toErrorInfo(budgetUnavailable('the budget store became unavailable during the stream', { cause: error }))
        }
      },
      cutoffFrame: (error) => adapter.cutoffFrame(route, error),
      upstreamFailure: () => toErrorInfo(upstreamUnreachable('the provider connection broke during the stream')),
    }).finally(() => deps.metrics.streamEnded())
    // Ended without reported input (cut, client gone, upstream broke): charged the input the provider bills.
    await countInput()
    summary.inputTokens = parser.reported().inputTokens ?? input.tokens
    summary.outputTokens = outputTokens()
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
    await settle(unreported || overflowed ? Math.max(reservation.reservedMicros, cost()) : cost(), result.outcome)
  }

  return relayStream
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
