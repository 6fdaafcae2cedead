import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { createDualServer, DEFAULT_SERVER_LIMITS } from '../../src/http/dual-server.js'

const answer: http.RequestListener = (_request, response) => response.end('ok')

/** The 'close' listeners the server side of a kept-alive HTTP/1.1 connection holds once it has answered one request. */
async function closeListenersAfterOneRequest(server: http.Server): Promise<number> {
  let accepted: Socket | null = null
  server.on('connection', (socket: Socket) => {
    accepted = socket
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const agent = new http.Agent({ keepAlive: true })
  try {
    const { port } = server.address() as AddressInfo
    await new Promise<void>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, agent }, (response) => response.resume().on('end', resolve)).on('error', reject)
    })
    expect(accepted).not.toBeNull()
    return (accepted as unknown as Socket).listenerCount('close')
  } finally {
    agent.destroy()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
}

describe('createDualServer', () => {
  // Every open stream is a connection: what the protocol choice leaves on it is held for the stream's life.
  it('leaves an HTTP/1.1 connection no listener or timer of its own once its first bytes chose the protocol', async () => {
    const plain = await closeListenersAfterOneRequest(http.createServer(answer))
    expect(await closeListenersAfterOneRequest(createDualServer(answer))).toBe(plain)
  })

  // A client idle for a few seconds between calls (an agent running a tool, a load balancer's pool) keeps its
  // connection: a closed one costs its next request a new connection, and a balancer whose own idle timeout
  // (AWS ALB: 60 s) outlasts the proxy's forwards onto a closing connection.
  it('keeps an idle HTTP/1.1 connection open past a load balancer idle timeout (60 s), and says so', async () => {
    expect(DEFAULT_SERVER_LIMITS.keepAliveTimeoutMs).toBeGreaterThan(60_000)
    const server = createDualServer(answer)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const agent = new http.Agent({ keepAlive: true })
    try {
      const { port } = server.address() as AddressInfo
      const advertised = await new Promise<string | string[] | undefined>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, agent }, (response) => response.resume().on('end', () => resolve(response.headers['keep-alive']))).on('error', reject)
      })
      expect(advertised).toBe(`timeout=${DEFAULT_SERVER_LIMITS.keepAliveTimeoutMs / 1000}`)
      expect(server.keepAliveTimeout).toBe(DEFAULT_SERVER_LIMITS.keepAliveTimeoutMs)
    } finally {
      agent.destroy()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
