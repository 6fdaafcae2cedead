import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import { spawnProxy, type ProxyProcess } from '../support/fault-cli.js'
import { daily, reservations } from '../support/fault-checks.js'
import { COMPLETION_TOKENS, startFaultUpstream, type FaultUpstream } from '../support/fault-upstream.js'
import { eventually, waitReady } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// The proxy process dies (SIGKILL) in the middle of a stream: nothing can settle, so what was held must
// stay held; a new process on the same Redis serves as usual.
let redis: TestRedis
let upstream: FaultUpstream
let adminRedis: RedisClient
let admin: KeyAdmin
const processes: ProxyProcess[] = []

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFaultUpstream()
  adminRedis = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: 2_000 })
  await waitReady(adminRedis)
  admin = createKeyAdmin(adminRedis)
})

afterAll(async () => {
  for (const p of processes) await p.kill()
  adminRedis?.disconnect()
  await upstream?.close()
  await redis?.stop()
})

async function serve(): Promise<ProxyProcess> {
  const p = await spawnProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_STREAM_SLICE_TOKENS: '16' })
  processes.push(p)
  return p
}

function sdk(p: ProxyProcess, key: string): OpenAI {
  return new OpenAI({ apiKey: key, baseURL: `${p.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
}

describe('proxy killed with SIGKILL mid-stream', () => {
  it('leaves the hold booked (conservative), and a new process on the same Redis serves and settles', async () => {
    const { key, record } = await admin.createKey('crash', ['openai'])
    const hash = record.hash
    await admin.setBudget(hash, { limits: { daily: 1_000_000 } })
    const first = await serve()

    upstream.plan = { chunks: 1000, chunkDelayMs: 5 }
    let deltas = 0
    const error = await (async () => {
      const stream = await sdk(first, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'go' }], stream: true })
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) deltas++
        if (deltas === 20) await first.kill()
      }
    })().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Error)
    expect(first.child.signalCode).toBe('SIGKILL')
    await eventually(() => upstream.last().closedEarly, 'the upstream sees the connection drop')
    const served = upstream.last().tokensWritten
    expect(served).toBeGreaterThanOrEqual(20)
    expect(served).toBeLessThan(1000)

    // Nothing settled, nothing handed back: the reservation is still held, covering at least the input
    // and every delta the client got (4 tokens each); it covers what the upstream served (12 prompt
    // tokens, one per delta) too.
    const crashed = await daily(admin, hash)
    expect(crashed.spent).toBe(0)
    expect(crashed.held).toBeGreaterThan(4 * deltas)
    expect(crashed.spent + crashed.held).toBeGreaterThanOrEqual(12 + served)
    expect(await reservations(redis.url, hash)).toEqual([{ state: 'held', amount: crashed.held, charged: null }])

    const second = await serve()
    const answer = await sdk(second, key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'again' }] })
    expect(answer.choices[0]?.message.content).toBe('fine')
    await eventually(async () => (await daily(admin, hash)).spent > 0, 'settlement')
    // Settled at the reported usage; the orphaned hold is untouched (it ends with its windows).
    expect(await daily(admin, hash)).toEqual({ spent: 12 + COMPLETION_TOKENS, held: crashed.held })
    const records = await reservations(redis.url, hash)
    expect(records).toHaveLength(2)
    expect(records).toContainEqual({ state: 'settled', amount: expect.any(Number), charged: 12 + COMPLETION_TOKENS })
  })
})
