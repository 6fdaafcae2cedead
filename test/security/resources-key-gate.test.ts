import net from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { hashKey } from '../../src/keys.js'
import { createTestKey } from '../support/e2e.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 13, finding 7: the key is checked before the body is read. A client without a valid key gets its
// refusal while its body is still arriving; a key seen valid costs no extra store round trip.
let redis: TestRedis
let upstream: FakeOpenAi
let proxy: TestProxy

beforeAll(async () => {
  redis = await startRedis()
  upstream = await startFakeOpenAi()
  proxy = await startProxy({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: upstream.url, LOOPERS_OPENAI_API_KEY: 'sk-upstream' })
})

afterAll(async () => {
  await proxy?.close()
  await upstream?.close()
  await redis?.stop()
})

beforeEach(() => {
  upstream.received.length = 0
})

const UNKNOWN_KEY = `lp-${'A'.repeat(43)}`
const BODY = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })

interface RawAnswer {
  head: string
  /** The server closed the connection after its answer. */
  closed: boolean
}

/**
 * Sends the head of a POST announcing an 8 MiB body and only its first kilobyte, then waits for an answer.
 * Rejects when none arrives within `ms`: a proxy that reads the body first never answers.
 */
function partialPost(path: string, headers: Record<string, string>, ms = 3_000): Promise<RawAnswer> {
  const { port } = new URL(proxy.url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    let text = ''
    let answered: string | null = null
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(answered === null ? 'no answer while the body was still arriving' : 'the connection stayed open'))
    }, ms)
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      if (answered === null && text.includes('\r\n\r\n')) answered = text.slice(0, text.indexOf('\r\n\r\n'))
    })
    socket.on('close', () => {
      clearTimeout(timer)
      if (answered === null) reject(new Error('closed without an answer'))
      else resolve({ head: answered, closed: true })
    })
    socket.on('error', () => undefined)
    const lines = [`POST ${path} HTTP/1.1`, 'host: 127.0.0.1', 'content-type: application/json', `content-length: ${8 * 1024 * 1024}`]
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
    socket.write(Buffer.alloc(1024, 0x20))
  })
}

function statusOf(head: string): number {
  return Number(head.split(' ')[1])
}

function errorCodeOf(head: string): string | null {
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith('x-loopers-error-code:'))
  return line === undefined ? null : line.slice(line.indexOf(':') + 1).trim()
}

async function hgetallCalls(): Promise<number> {
  const info = await proxy.server.redis!.info('commandstats')
  const match = /cmdstat_hgetall:calls=(\d+)/.exec(info)
  return match === null ? 0 : Number(match[1])
}

function post(key: string): Promise<Response> {
  return fetch(`${proxy.url}/openai/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: BODY,
  })
}

describe('a request without a valid key is refused before its body is read', () => {
  it.each([
    ['missing', {}, 'invalid_key'],
    ['malformed', { authorization: 'Bearer lp-short' }, 'invalid_key'],
    ['unknown', { authorization: `Bearer ${UNKNOWN_KEY}` }, 'invalid_key'],
    ['unknown, path auth', {}, 'invalid_key', `/${UNKNOWN_KEY}/openai/v1/chat/completions`],
    ['unknown, Anthropic shape', { 'x-api-key': UNKNOWN_KEY }, 'invalid_key', '/anthropic/v1/messages'],
  ])('%s key: 401 in the provider shape while the body is still arriving, connection closed', async (_name, headers, code, path = '/openai/v1/chat/completions') => {
    const answer = await partialPost(path, headers)
    expect(statusOf(answer.head)).toBe(401)
    expect(errorCodeOf(answer.head)).toBe(code)
    expect(answer.closed).toBe(true)
    expect(upstream.received).toHaveLength(0)
  })

  it('a key not allowed for the provider: 403 before the body', async () => {
    const { key } = await createTestKey(proxy, 'anthropic-only', ['anthropic'], { daily: 1_000_000 })
    const answer = await partialPost('/openai/v1/chat/completions', { authorization: `Bearer ${key}` })
    expect(statusOf(answer.head)).toBe(403)
    expect(errorCodeOf(answer.head)).toBe('provider_not_allowed')
  })

  it('a revoked key: the next request through reserve is refused, and the one after it before its body', async () => {
    const { key, hash } = await createTestKey(proxy, 'to-revoke', ['openai'], { daily: 1_000_000 })
    expect((await post(key)).status).toBe(200)
    await proxy.admin.revokeKey(hash)
    const throughReserve = await post(key)
    expect(throughReserve.status).toBe(401)
    expect(throughReserve.headers.get('x-loopers-error-code')).toBe('key_revoked')
    const answer = await partialPost('/openai/v1/chat/completions', { authorization: `Bearer ${key}` })
    expect(statusOf(answer.head)).toBe(401)
    expect(errorCodeOf(answer.head)).toBe('key_revoked')
    expect(upstream.received).toHaveLength(1)
  })
})

describe('the pre-check costs legitimate traffic no store round trip', () => {
  it('a key seen valid skips the lookup; an unknown key pays exactly one', async () => {
    const { key } = await createTestKey(proxy, 'cached', ['openai'], { daily: 1_000_000 })
    const before = await hgetallCalls()
    expect((await post(key)).status).toBe(200)
    const afterFirst = await hgetallCalls()
    expect(afterFirst - before).toBe(1)
    for (let i = 0; i < 3; i++) expect((await post(key)).status).toBe(200)
    expect((await hgetallCalls()) - afterFirst).toBe(0)

    const beforeUnknown = await hgetallCalls()
    const refused = await post(UNKNOWN_KEY)
    expect(refused.status).toBe(401)
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('invalid_key')
    expect((await hgetallCalls()) - beforeUnknown).toBe(1)
  })

  it('a refusal at the gate is logged as one summary line', async () => {
    const lines = proxy.logs.length
    await post(UNKNOWN_KEY)
    const added = proxy.logs.slice(lines).filter((l) => l.msg === 'request')
    expect(added).toHaveLength(1)
    expect(added[0]).toMatchObject({ key: hashKey(UNKNOWN_KEY).slice(0, 8), provider: 'openai', outcome: 'refused', code: 'invalid_key', status: 401 })
  })
})

describe('what a client sends is logged truncated', () => {
  it('a 100 kB model name appears in the summary line as at most 128 characters', async () => {
    const { key, hash } = await createTestKey(proxy, 'long-model', ['openai'], { daily: 1_000_000 })
    const model = `m${'x'.repeat(100_000)}`
    const response = await fetch(`${proxy.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(response.status).toBe(400)
    await response.arrayBuffer()
    const line = proxy.logs.find((l) => l.msg === 'request' && l.key === hash.slice(0, 8))
    expect(line?.code).toBe('model_not_priced')
    expect(typeof line?.model).toBe('string')
    expect((line?.model as string).length).toBeLessThanOrEqual(129)
    expect((line?.model as string).startsWith('mxxx')).toBe(true)
    expect(proxy.logText()).not.toContain('x'.repeat(200))
  })
})
