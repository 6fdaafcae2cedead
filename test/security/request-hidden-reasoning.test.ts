import http from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { settledDaily, summaryAt } from '../support/e2e.js'
import { startFakesWorld, type FakesWorld } from '../support/security.js'

// Issue 13, finding 4: an o-series / gpt-5 stream bills reasoning it never shows. One that ends without
// reported usage (the client left, the upstream broke) must be charged its whole reservation, not the
// input plus the few visible tokens. `gpt-test-reasoning` is flagged hidden_reasoning; 1 token = 1 µUSD.

let world: FakesWorld

beforeAll(async () => {
  world = await startFakesWorld()
})
afterAll(async () => world.close())
beforeEach(() => world.reset())

const CAP = 500
const body = JSON.stringify({ model: 'gpt-test-reasoning', stream: true, max_completion_tokens: CAP, messages: [{ role: 'user', content: 'think hard' }] })

/** Streams a chat request and hangs up once the first visible text arrives; resolves when the socket is closed. */
function streamAndLeave(key: string): Promise<void> {
  const url = new URL(world.proxy.url)
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: url.hostname, port: url.port, method: 'POST', path: '/openai/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` } },
      (response) => {
        response.on('data', (chunk: Buffer) => {
          if (chunk.toString('utf8').includes('tok')) request.destroy()
        })
        response.on('error', () => undefined)
      },
    )
    request.on('error', () => undefined)
    request.on('close', () => resolve())
    request.on('timeout', () => reject(new Error('timeout')))
    request.end(body)
  })
}

describe('finding 4: a hidden-reasoning stream without reported usage is charged its whole reservation', () => {
  it('a client that disconnects before any usage is charged the whole reservation', async () => {
    const { key, hash } = await world.key(10_000_000)
    world.fakes.openai.options = { chunks: 50, chunkDelayMs: 30 }
    await streamAndLeave(key)
    const summary = await summaryAt(world.proxy, hash, 1)
    const reserved = Number(summary.inputBound) + CAP
    expect(summary.outcome).toBe('client_closed')
    expect((await settledDaily(world.proxy, hash)).spent).toBe(reserved)
    // The upstream was cut off long before its usage chunk: this is the case the provider still bills.
    expect(world.fakes.openai.ledger[0]?.finished).toBe(false)
  })

  it('a stream the upstream breaks before reporting usage is charged the whole reservation', async () => {
    const { key, hash } = await world.key(10_000_000)
    world.fakes.openai.options = { chunks: 20, resetAfterChunks: 3 }
    const answer = await fetch(`${world.proxy.url}/openai/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body })
    await answer.text().catch(() => '')
    const summary = await summaryAt(world.proxy, hash, 1)
    expect((await settledDaily(world.proxy, hash)).spent).toBe(Number(summary.inputBound) + CAP)
  })

  it('a hidden-reasoning stream that reports usage is charged that usage, not the reservation', async () => {
    const { key, hash } = await world.key(10_000_000)
    world.fakes.openai.options = { chunks: 5, promptTokens: 12 }
    const answer = await fetch(`${world.proxy.url}/openai/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body })
    await answer.text()
    expect((await settledDaily(world.proxy, hash)).spent).toBe(12 + 5)
  })
})
