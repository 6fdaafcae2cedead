import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import type { Micros } from '../../src/money.js'
import type { Forward, ForwardDeps } from '../../src/proxy/forward-shared.js'
import { createStreamRelay } from '../../src/proxy/relay-stream.js'
import type { UpstreamResponse } from '../../src/proxy/upstream.js'
import { compatCutoffFrame, createChatStreamParser } from '../../src/providers/openai-compat.js'
import type { RouteMatch } from '../../src/providers/types.js'
import { byteCounter } from '../support/counting.js'
import { readableSource } from '../support/readable-source.js'
import { RecordingSink } from '../support/recording-sink.js'

const chat: RouteMatch = { operation: 'chat', pathModel: null, pathStream: null }
const RESERVED = 5_000

/** The client's response: records what it is sent, and its head. */
class Client extends RecordingSink {
  headersSent = false
  writeHead(): void {}
  flushHeaders(): void {
    this.headersSent = true
  }
}

/** Relays `events` to a client with a parser that fails once the stream has ended; resolves with the settlements asked for. */
async function relayFailingAtEnd(events: string[]) {
  const deps = {
    config: { streamSliceTokens: 100 },
    metrics: { streamStarted() {}, streamEnded() {} },
    shutdown: new AbortController().signal,
    now: () => Date.now(),
  } as unknown as ForwardDeps
  const client = new Client()
  const adapter = {
    createStreamParser() {
      const parser = createChatStreamParser(byteCounter())
      let flushed = false
      return Object.assign(Object.create(parser) as typeof parser, {
        flush() {
          flushed = true
          return parser.flush()
        },
        // A fault nobody foresaw, met while the ended stream is charged.
        reported() {
          if (flushed) throw new Error('unforeseen')
          return parser.reported()
        },
      })
    },
    cutoffFrame: (_route: RouteMatch, error: Parameters<typeof compatCutoffFrame>[1]) => compatCutoffFrame(chat, error),
  }
  const f = {
    reply: { hijack() {}, raw: client },
    adapter,
    route: chat,
    facts: { maxOutputTokens: null },
    price: { tokenizer: { encoding: 'cl100k_base', factor: 1 }, outputPer1M: 1_000_000, hiddenReasoning: false },
    plan: { inputTokens: 10, inputMicros: 10, feeMicros: 0, outputCap: 1_000 },
    reservation: { reservedMicros: RESERVED, remainingMicros: null },
    summary: {},
    countInput: undefined,
    prebuilt: null,
  } as unknown as Forward
  const source = readableSource(Readable.from(events.map((e) => Buffer.from(e))))
  const response = { status: 200, rawHeaders: [], source } as unknown as UpstreamResponse
  const settled: Array<[Micros, string]> = []
  const relayed = createStreamRelay(deps)(f, response, {}, async (actual, outcome) => {
    if (settled.length > 0) return
    settled.push([actual, outcome])
  })
  const error = await relayed.then(
    () => null,
    (thrown: unknown) => thrown,
  )
  return { error, settled, client }
}

describe('a relayed stream', () => {
  it('is settled by the relay on every path: a fault while its end is charged charges the whole hold, once', async () => {
    const event = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'hi' } }] })}\n\n`
    const { error, settled, client } = await relayFailingAtEnd([event, 'data: [DONE]\n\n'])
    expect((error as Error).message).toBe('unforeseen')
    expect(settled).toEqual([[RESERVED, 'aborted']])
    expect(Buffer.concat(client.chunks).toString()).toBe(`${event}data: [DONE]\n\n`)
  })
})
