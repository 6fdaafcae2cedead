import http from 'node:http'
import http2 from 'node:http2'
import type { Socket } from 'node:net'


// Every HTTP/2 prior-knowledge connection opens with "PRI * HTTP/2.0"; no HTTP/1 method is PRI.
const H2_PREFACE_START = Buffer.from('PRI ')
// A connection that sends nothing is dropped rather than held open forever.
const FIRST_BYTE_TIMEOUT_MS = 30_000

/**
 * An HTTP/1.1 server that also speaks HTTP/2 with prior knowledge (h2c) on the same port: the first
 * bytes of each connection decide which protocol handles it. The AWS SDK uses h2c for `http://`.
 * Returned as the HTTP/1 server Fastify expects; `closeAll` also ends the HTTP/2 sessions.
 */
export function createDualServer(handler: http.RequestListener): http.Server & { closeExtraConnections(): void } {
  const h1 = http.createServer(handler)
  // Fastify's handler takes the HTTP/2 compatibility request and response as it takes HTTP/1 ones.
  const h2 = http2.createServer({}, handler as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void)
  const sessions = new Set<http2.ServerHttp2Session>()
  // Sockets that have not sent a byte yet belong to neither protocol server, so neither would close them.
  const undecided = new Set<Socket>()
  h2.on('session', (session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
  })
  const http1Listeners = h1.listeners('connection') as Array<(socket: Socket) => void>
  h1.removeAllListeners('connection')
  h1.on('connection', (socket: Socket) => {
    undecided.add(socket)
    const silent = setTimeout(() => socket.destroy(), FIRST_BYTE_TIMEOUT_MS)
    socket.once('close', () => {
      clearTimeout(silent)
      undecided.delete(socket)
    })
    socket.once('data', (first: Buffer) => {
      clearTimeout(silent)
      undecided.delete(socket)
      socket.pause()
      socket.unshift(first)
      if (first.subarray(0, H2_PREFACE_START.length).equals(H2_PREFACE_START)) {
        // The HTTP/1 server accepts half-open sockets; HTTP/2 relies on a peer's FIN closing the socket,
        // or its session (and every stream of it) never learns that the client went away.
        socket.allowHalfOpen = false
        h2.emit('connection', socket)
      } else for (const listener of http1Listeners) listener.call(h1, socket)
      process.nextTick(() => socket.resume())
    })
  })
  return Object.assign(h1, {
    closeExtraConnections() {
      for (const socket of undecided) socket.destroy()
      for (const session of sessions) session.close()
    },
  })
}
