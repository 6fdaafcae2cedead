import { readFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as dualServer from '../../src/http/dual-server.js'
import { startProxyProcess, type ProxyProcess } from '../support/proxy-process.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 13, finding 7: one unauthenticated h2c connection held 40 MiB with 20 streams, and the h2c server
// had no limits at all. Runs the built proxy as its own process so its memory is its own.
let redis: TestRedis
let proxy: ProxyProcess

beforeAll(async () => {
  redis = await startRedis()
  proxy = await startProxyProcess({ REDIS_URL: redis.url, LOOPERS_OPENAI_API_KEY: 'sk-upstream', LOOPERS_OPENAI_BASE_URL: 'http://127.0.0.1:9' })
})

afterAll(async () => {
  await proxy?.stop()
  await redis?.stop()
})

const UNKNOWN_KEY = `lp-${'B'.repeat(43)}`
const STREAMS = 60
const BODY_BYTES_PER_STREAM = 2 * 1024 * 1024
const MiB = 1024 * 1024

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)
  if (kb === null) throw new Error('no VmRSS')
  return Number(kb[1]) * 1024
}

function connect(url: string): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url)
    session.once('remoteSettings', () => resolve(session))
    session.once('error', reject)
  })
}

/** Opens a stream with an unknown key that sends up to `bytes` of body and never ends it; resolves with its answer's status and code. */
function unendingStream(session: http2.ClientHttp2Session, bytes: number): Promise<{ status: number; code: string | undefined }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/openai/v1/chat/completions',
      authorization: `Bearer ${UNKNOWN_KEY}`,
      'content-type': 'application/json',
    })
    stream.on('error', () => undefined)
    stream.once('response', (headers) => {
      resolve({ status: Number(headers[':status']), code: headers['x-loopers-error-code'] as string | undefined })
    })
    stream.once('close', () => reject(new Error('stream closed without an answer')))
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    let sent = 0
    const pump = (): void => {
      while (sent < bytes && !stream.destroyed) {
        sent += chunk.length
        if (!stream.write(chunk)) return void stream.once('drain', pump)
      }
    }
    pump()
  })
}

describe('an unauthenticated h2c client', () => {
  it('sees a bounded number of concurrent streams advertised', async () => {
    const session = await connect(proxy.url)
    try {
      expect(session.remoteSettings.maxConcurrentStreams).toBeLessThanOrEqual(100)
      expect(session.remoteSettings.maxHeaderListSize).toBeLessThanOrEqual(64 * 1024)
    } finally {
      session.destroy()
    }
  })

  it(`opening ${STREAMS} streams with ${BODY_BYTES_PER_STREAM / MiB} MiB bodies and an unknown key: each refused before its body, the proxy holds < 32 MiB`, async () => {
    const pid = proxy.child.pid as number
    const baseline = rssBytes(pid)
    let peak = baseline
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 20)
    const session = await connect(proxy.url)
    try {
      const answers = await Promise.race([
        Promise.all(Array.from({ length: STREAMS }, () => unendingStream(session, BODY_BYTES_PER_STREAM))),
        new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('streams were not answered before their bodies ended')), 10_000)),
      ])
      expect(answers.every((a) => a.status === 401 && a.code === 'invalid_key')).toBe(true)
      // Give the proxy the time it would take to take in what the client still pushes.
      await new Promise((r) => setTimeout(r, 500))
      peak = Math.max(peak, rssBytes(pid))
    } finally {
      clearInterval(sampler)
      session.destroy()
    }
    expect(peak - baseline).toBeLessThan(32 * MiB)
  })
})

describe('the dual server limits', () => {
  async function withServer(limits: Parameters<typeof dualServer.createDualServer>[1], run: (port: number) => Promise<void>): Promise<void> {
    const server = dualServer.createDualServer((_req, res) => {
      // Answers only once the whole body has arrived, like a body parser.
      const req = _req as http.IncomingMessage
      req.resume()
      req.once('end', () => res.end('ok'))
    }, limits)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      await run((server.address() as AddressInfo).port)
    } finally {
      server.closeExtraConnections()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }

  it('an idle h2c session is closed', async () => {
    await withServer({ sessionIdleTimeoutMs: 200 }, async (port) => {
      const session = await connect(`http://127.0.0.1:${port}`)
      const closed = await new Promise<boolean>((resolve) => {
        session.once('close', () => resolve(true))
        setTimeout(() => resolve(false), 3_000)
      })
      session.destroy()
      expect(closed).toBe(true)
    })
  })

  it('an h2c stream that stops sending its body is cancelled', async () => {
    await withServer({ streamIdleTimeoutMs: 200 }, async (port) => {
      const session = await connect(`http://127.0.0.1:${port}`)
      const stream = session.request({ ':method': 'POST', ':path': '/x' })
      stream.on('error', () => undefined)
      stream.write('{')
      const closed = await new Promise<boolean>((resolve) => {
        stream.once('close', () => resolve(true))
        setTimeout(() => resolve(false), 3_000)
      })
      session.destroy()
      expect(closed).toBe(true)
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL)
    })
  })

  it('HTTP/1.1 headers that trickle in are cut at the headers timeout', async () => {
    await withServer({ headersTimeoutMs: 300, requestTimeoutMs: 600 }, async (port) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.on('error', () => undefined)
      socket.write('POST /x HTTP/1.1\r\nhost: a\r\n')
      const drip = setInterval(() => socket.write('x-a: b\r\n'), 50)
      const closed = await new Promise<boolean>((resolve) => {
        socket.once('close', () => resolve(true))
        setTimeout(() => resolve(false), 5_000)
      })
      clearInterval(drip)
      socket.destroy()
      expect(closed).toBe(true)
    })
  })

  it('the production defaults are set on the HTTP/1.1 server', () => {
    const server = dualServer.createDualServer(() => undefined)
    expect(server.headersTimeout).toBe(dualServer.DEFAULT_SERVER_LIMITS.headersTimeoutMs)
    expect(server.requestTimeout).toBe(dualServer.DEFAULT_SERVER_LIMITS.requestTimeoutMs)
    expect(server.keepAliveTimeout).toBe(dualServer.DEFAULT_SERVER_LIMITS.keepAliveTimeoutMs)
    expect((server as unknown as { maxHeaderSize?: number }).maxHeaderSize).toBe(dualServer.DEFAULT_SERVER_LIMITS.maxHeaderBytes)
    expect(dualServer.DEFAULT_SERVER_LIMITS.headersTimeoutMs).toBeLessThanOrEqual(60_000)
    expect(dualServer.DEFAULT_SERVER_LIMITS.maxConcurrentStreams).toBeLessThanOrEqual(100)
  })
})
