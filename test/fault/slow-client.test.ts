import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestKey, settledDaily, summaryAt } from '../support/e2e.js'
import { startFakeServer, type FakeServer } from '../support/fake-server.js'
import { pour, watchServed, type Served } from '../support/pour.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 12: a relayed stream's chunks go from undici's dispatch handler straight to the meter, without a
// Readable between them. Flow control must hold as it did: a client that does not read makes the proxy stop
// reading the upstream, so what the upstream manages to send stays within the sockets' buffers.
const MiB = 1024 * 1024
const SENT_BYTES = 128 * MiB
// The loopback sockets' buffers between the fake and the client (a few MiB each way), far below SENT_BYTES.
const BOUND_BYTES = 32 * MiB
// Events without content: the count (and so the budget) never moves, only the bytes flow.
const EVENT = `data: {"choices":[{"index":0,"delta":{}}],"pad":"${'a'.repeat(16 * 1024)}"}\n\n`

let redis: TestRedis
let upstream: FakeServer
let proxy: TestProxy
const served: Served[] = []

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFakeServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404)
      return void res.end()
    }
    const entry = watchServed(res)
    served.push(entry)
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    void pour(res, Buffer.from(EVENT), SENT_BYTES, entry)
  })
  proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_OPENAI_API_KEY: 'sk-upstream' })
})

afterAll(async () => {
  await proxy?.close()
  await upstream?.close()
  await redis?.stop()
})

describe('a streaming client that does not read', () => {
  it('stops the proxy reading the upstream; once the client goes, the upstream is closed and the stream settled once', async () => {
    const { key, hash } = await createTestKey(proxy, 'slow-reader', ['openai'], { daily: 10_000_000 })
    const body = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 100, stream: true })
    const { hostname, port } = new URL(proxy.url)
    const client = net.connect(Number(port), hostname)
    // Never read: the kernel's buffers fill, then the proxy's writes to this client return false.
    client.pause()
    client.write(
      `POST /openai/v1/chat/completions HTTP/1.1\r\nhost: ${hostname}\r\nauthorization: Bearer ${key}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
    try {
      await eventually(() => served.length === 1 && served[0]!.bytes > 0, 'the upstream starts sending')
      // The upstream sends until the buffers on the way are full, then waits for a drain that never comes.
      let last = -1
      while (served[0]!.bytes !== last && served[0]!.bytes < SENT_BYTES) {
        last = served[0]!.bytes
        await new Promise((resolve) => setTimeout(resolve, 300))
      }
      expect(served[0]!.bytes).toBeLessThan(BOUND_BYTES)
    } finally {
      client.destroy()
    }
    await eventually(() => served[0]!.closedEarly, 'the proxy closes the upstream')
    const summary = await summaryAt(proxy, hash, 1)
    expect(summary.outcome).toBe('client_closed')
    expect((await settledDaily(proxy, hash)).held).toBe(0)
  })
})
