import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { compatCutoffFrame, createChatStreamParser } from '../../src/providers/openai-compat.js'
import type { ErrorInfo, RouteMatch } from '../../src/providers/types.js'
import { createStreamStop, meterStream, type StreamSink } from '../../src/stream/meter.js'
import { byteCounter } from '../support/counting.js'
import { readableSource } from '../support/readable-source.js'
import { RecordingSink } from '../support/recording-sink.js'

const chat: RouteMatch = { operation: 'chat', pathModel: null, pathStream: null }
const budget: ErrorInfo = { status: 429, code: 'budget_exceeded', message: 'no budget' }

function event(content: string): string {
  return `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`
}

/** Meters `reads` (each one upstream read) against a fixed reservation of `reservedTokens`, 1 micro-USD per byte. */
async function meter(reads: string[], reservedTokens: number) {
  const counter = byteCounter()
  const parser = createChatStreamParser(counter)
  const client = new RecordingSink()
  const result = await meterStream({
    parser,
    upstream: readableSource(Readable.from(reads.map((r) => Buffer.from(r)))),
    client,
    reservedMicros: () => reservedTokens,
    costMicros: () => parser.outputTokens(),
    costBoundMicros: () => parser.outputBound(),
    extend: async () => budget,
    cutoffFrame: (error) => compatCutoffFrame(chat, error),
    upstreamFailure: () => ({ status: 502, code: 'upstream_unreachable', message: 'broken' }),
  })
  return { result, client, parser }
}

describe('stream meter', () => {
  it('cuts between events that arrived in one read, forwarding exactly those that fit', async () => {
    const oneRead = Array.from({ length: 15 }, () => event('tok ')).join('')
    const { result, client, parser } = await meter([oneRead], 40)
    expect(result.outcome).toBe('cutoff')
    expect(client.text()).toBe(event('tok ').repeat(10) + compatCutoffFrame(chat, budget).toString())
    // Counted: the ten forwarded and the eleventh that did not fit; the rest were never read into the count.
    expect(parser.outputTokens()).toBe(44)
  })

  it('forwards every byte unchanged when the reservation holds', async () => {
    const reads = [event('a'), event('b') + event('c'), 'data: [DONE]\n\n']
    const { result, client } = await meter(reads, 100)
    expect(result.outcome).toBe('completed')
    expect(client.text()).toBe(reads.join(''))
  })

  it('asks the exact cost only when the cheaper bound passes the hold, and cuts where the exact cost says', async () => {
    for (const [reservedTokens, bias] of [[100, 0], [40, 0], [40, 3], [43, 1]] as const) {
      const counter = byteCounter()
      const parser = createChatStreamParser(counter)
      const client = new RecordingSink()
      let exactAsked = 0
      const result = await meterStream({
        parser,
        upstream: readableSource(Readable.from([Buffer.from(Array.from({ length: 15 }, () => event('tok ')).join(''))])),
        client,
        reservedMicros: () => reservedTokens,
        // A bound `bias` above the exact cost: the exact one decides once the bound passes the hold.
        costBoundMicros: () => parser.outputTokens() + bias,
        costMicros: () => {
          exactAsked++
          return parser.outputTokens()
        },
        extend: async () => budget,
        cutoffFrame: (error) => compatCutoffFrame(chat, error),
        upstreamFailure: () => ({ status: 502, code: 'upstream_unreachable', message: 'broken' }),
      })
      const fit = Math.min(15, Math.floor(reservedTokens / 4))
      expect(result.outcome).toBe(fit === 15 ? 'completed' : 'cutoff')
      expect(client.text()).toBe(event('tok ').repeat(fit) + (fit === 15 ? '' : compatCutoffFrame(chat, budget).toString()))
      // Asked for the frames whose bound passed the hold (4 tokens each): none while everything fits.
      expect(exactAsked).toBe(Array.from({ length: Math.min(15, fit + 1) }, (_, i) => 4 * (i + 1) + bias > reservedTokens).filter(Boolean).length)
    }
  })

  it('never forwards half an event, even when a read ends inside one', async () => {
    const whole = event('hello') + event('world')
    const { client } = await meter([whole.slice(0, 20), whole.slice(20, 50), whole.slice(50)], 100)
    expect(client.chunks.map(String)).toEqual([event('hello'), event('world')])
  })
})

describe('stream meter, reading by events', () => {
  /** A client whose every other write fills its buffer, so the meter must wait for 'drain'. */
  class SlowSink extends RecordingSink {
    writes = 0
    override write(chunk: Buffer): boolean {
      super.write(chunk)
      const full = this.writes++ % 2 === 0
      if (full) setTimeout(() => this.emit('drain'), 1)
      return !full
    }
  }

  const options = (upstream: Readable, client: StreamSink, extend: () => Promise<ErrorInfo | null>, reservedTokens = 0) => {
    const parser = createChatStreamParser(byteCounter())
    return {
      parser,
      upstream: readableSource(upstream),
      client,
      reservedMicros: () => reservedTokens,
      costMicros: () => parser.outputTokens(),
      costBoundMicros: () => parser.outputBound(),
      extend,
      cutoffFrame: (error: ErrorInfo) => compatCutoffFrame(chat, error),
      upstreamFailure: (): ErrorInfo => ({ status: 502, code: 'upstream_unreachable', message: 'broken' }),
    }
  }

  it('waits for a client that is not keeping up, then forwards the rest in order', async () => {
    const reads = [event('a') + event('b'), event('c'), 'data: [DONE]\n\n']
    const client = new SlowSink()
    const result = await meterStream(options(Readable.from(reads.map((r) => Buffer.from(r))), client, async () => null, 1_000))
    expect(result.outcome).toBe('completed')
    expect(client.text()).toBe(reads.join(''))
    expect(client.writableEnded).toBe(true)
  })

  it('forwards what an extension granted later allows, pausing the upstream meanwhile', async () => {
    const reads = [event('a') + event('b') + event('c'), 'data: [DONE]\n\n']
    let extensions = 0
    const grantLater = () => new Promise<null>((resolve) => setTimeout(() => resolve(null), 2)).finally(() => extensions++)
    const client = new RecordingSink()
    const result = await meterStream(options(Readable.from(reads.map((r) => Buffer.from(r))), client, grantLater))
    expect(result.outcome).toBe('completed')
    expect(client.text()).toBe(reads.join(''))
    // A reservation fixed at zero: every frame from the first counted one on asked for an extension.
    expect(extensions).toBe(4)
  })

  it('ends a stream whose upstream breaks after whole events with the failure frame, once', async () => {
    const upstream = new Readable({ read() {} })
    const client = new RecordingSink()
    const metered = meterStream(options(upstream, client, async () => null, 1_000))
    upstream.push(Buffer.from(event('a') + 'data: {"choi'))
    setTimeout(() => upstream.destroy(new Error('socket reset')), 2)
    const result = await metered
    expect(result.outcome).toBe('upstream_failed')
    expect((result.thrown as Error).message).toBe('socket reset')
    expect(client.text()).toBe(event('a') + compatCutoffFrame(chat, { status: 502, code: 'upstream_unreachable', message: 'broken' }).toString())
  })

  it('stops reading when the client goes away and reports it, not as an upstream failure', async () => {
    const upstream = new Readable({ read() {} })
    const client = new RecordingSink()
    const metered = meterStream(options(upstream, client, async () => null, 1_000))
    upstream.push(Buffer.from(event('a')))
    setTimeout(() => {
      client.destroyed = true
      client.emit('close')
    }, 2)
    const result = await metered
    expect(result.outcome).toBe('client_closed')
    expect(upstream.destroyed).toBe(true)
    expect(client.text()).toBe(event('a'))
  })

  it('leaves nothing on the shared stop once streams end, whether completed or closed by their client', async () => {
    const shutdown = new AbortController()
    const stop = createStreamStop(shutdown.signal)
    const runs = Array.from({ length: 40 }, (_, i) => {
      const upstream = new Readable({ read() {} })
      const client = new RecordingSink()
      const metered = meterStream({ ...options(upstream, client, async () => null, 1_000), stop, stopError: () => budget })
      upstream.push(Buffer.from(event('a')))
      return { i, upstream, client, metered }
    })
    expect(stop.size).toBe(40)
    // Every third one's client goes away; the rest end, in an order other than they began.
    for (const { i, upstream, client } of [...runs].reverse()) {
      if (i % 3 === 0) {
        client.destroyed = true
        client.emit('close')
      } else upstream.push(null)
    }
    const outcomes = await Promise.all(runs.map((run) => run.metered.then((r) => r.outcome)))
    expect(outcomes.filter((o) => o === 'client_closed')).toHaveLength(14)
    expect(outcomes.filter((o) => o === 'completed')).toHaveLength(26)
    expect(stop.size).toBe(0)
  })

  it('cuts every open stream with the stop error when the shared stop fires, not one that ended before, and a stream started after it at once', async () => {
    const shutdown = new AbortController()
    const stop = createStreamStop(shutdown.signal)
    const stopError: ErrorInfo = { status: 503, code: 'shutting_down', message: 'stopping' }
    const open = () => {
      const upstream = new Readable({ read() {} })
      const client = new RecordingSink()
      const metered = meterStream({ ...options(upstream, client, async () => null, 1_000), stop, stopError: () => stopError })
      return { upstream, client, metered }
    }
    const done = open()
    done.upstream.push(Buffer.from(event('x')))
    done.upstream.push(null)
    expect((await done.metered).outcome).toBe('completed')
    // An ended stream leaves nothing listed.
    expect(stop.size).toBe(0)
    // Streams that end while others stay open (oldest, middle, newest) leave the others to the stop.
    const [oldest, first, middle, second, newest] = [open(), open(), open(), open(), open()]
    expect(stop.size).toBe(5)
    const streams = [first!, second!]
    for (const { upstream } of streams) upstream.push(Buffer.from(event('a')))
    for (const ended of [middle!, oldest!, newest!]) {
      ended.upstream.push(null)
      expect((await ended.metered).outcome).toBe('completed')
    }
    expect(stop.size).toBe(2)
    setTimeout(() => shutdown.abort(), 2)
    for (const { upstream, client, metered } of streams) {
      expect((await metered).outcome).toBe('shutdown')
      expect(upstream.destroyed).toBe(true)
      expect(client.text()).toBe(event('a') + compatCutoffFrame(chat, stopError).toString())
    }
    expect(stop.size).toBe(0)
    const late = open()
    expect((await late.metered).outcome).toBe('shutdown')
    expect(stop.size).toBe(0)
    expect(late.client.text()).toBe(compatCutoffFrame(chat, stopError).toString())
  })

  it('ends the stream as an upstream failure when a push-only framer throws on a read (Gemini JSON array past its event cap)', async () => {
    const tooLarge = new Error('an event above the cap')
    let reads = 0
    const parser = {
      ...createChatStreamParser(byteCounter()),
      frames: undefined,
      push: (chunk: Buffer): Buffer => {
        if (++reads === 2) throw tooLarge
        return chunk
      },
    }
    const client = new RecordingSink()
    const upstream = Readable.from([Buffer.from('[{"a":1}'), Buffer.from(',{"b":2}'), Buffer.from(']')])
    const result = await meterStream({ ...options(upstream, client, async () => null, 1_000), parser })
    expect(result.outcome).toBe('upstream_failed')
    expect(result.thrown).toBe(tooLarge)
    expect(upstream.destroyed).toBe(true)
    expect(client.text()).toBe('[{"a":1}' + compatCutoffFrame(chat, { status: 502, code: 'upstream_unreachable', message: 'broken' }).toString())
  })
})
