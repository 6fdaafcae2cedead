import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { compatCutoffFrame, createChatStreamParser } from '../../src/providers/openai-compat.js'
import type { ErrorInfo, RouteMatch } from '../../src/providers/types.js'
import { meterStream, type StreamSink } from '../../src/stream/meter.js'
import { byteCounter } from '../support/counting.js'

const chat: RouteMatch = { operation: 'chat', pathModel: null, pathStream: null }
const budget: ErrorInfo = { status: 429, code: 'budget_exceeded', message: 'no budget' }

function event(content: string): string {
  return `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`
}

/** A client that records what it receives. */
class Sink extends EventEmitter implements StreamSink {
  chunks: Buffer[] = []
  writableEnded = false
  destroyed = false
  write(chunk: Buffer): boolean {
    this.chunks.push(chunk)
    return true
  }
  end(chunk?: Buffer): void {
    if (chunk) this.chunks.push(chunk)
    this.writableEnded = true
  }
  text(): string {
    return Buffer.concat(this.chunks).toString()
  }
}

/** Meters `reads` (each one upstream read) against a fixed reservation of `reservedTokens`, 1 micro-USD per byte. */
async function meter(reads: string[], reservedTokens: number) {
  const counter = byteCounter()
  const parser = createChatStreamParser(counter)
  const client = new Sink()
  const result = await meterStream({
    parser,
    upstream: Readable.from(reads.map((r) => Buffer.from(r))),
    client,
    reservedMicros: () => reservedTokens,
    costMicros: () => parser.outputTokens(),
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

  it('never forwards half an event, even when a read ends inside one', async () => {
    const whole = event('hello') + event('world')
    const { client } = await meter([whole.slice(0, 20), whole.slice(20, 50), whole.slice(50)], 100)
    expect(client.chunks.map(String)).toEqual([event('hello'), event('world')])
  })
})
