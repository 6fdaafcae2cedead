import type { RequestListener, Server } from 'node:http'
import type * as Http2 from 'node:http2'
import type { Socket } from 'node:net'

// Not `import http from 'node:http'`: an ES import of node:http reads every export, and its WebSocket,
// CloseEvent and MessageEvent getters load Node's bundled undici, which the proxy never uses (~2 MiB more
// resident at idle, half of it the node binary's pages). This is the module's own exports object, read only
// where used.
const http = process.getBuiltinModule('node:http')

// Every HTTP/2 prior-knowledge connection opens with "PRI * HTTP/2.0"; no HTTP/1 method is PRI.
const H2_PREFACE_START = Buffer.from('PRI ')

/** What one client connection may make the server hold, and for how long. */
interface ServerLimits {
  /** A connection that sends nothing is dropped rather than held open forever. */
  firstByteTimeoutMs: number
  /** HTTP/1.1: the whole header block must arrive within this time. */
  headersTimeoutMs: number
  /** HTTP/1.1: the whole request (headers and body) must arrive within this time. */
  requestTimeoutMs: number
  /** HTTP/1.1: an idle keep-alive connection is closed after this time. */
  keepAliveTimeoutMs: number
  /** HTTP/1.1 header block, and HTTP/2 header list (each field counts 32 bytes more), in bytes. */
  maxHeaderBytes: number
  /** HTTP/2: streams open at once on one connection; more are refused (REFUSED_STREAM). */
  maxConcurrentStreams: number
  /** HTTP/2: memory one session may use (frames, headers, queued data), in MB as Node counts it. */
  maxSessionMemoryMb: number
  /** HTTP/2: a session with no open stream and no traffic for this long is closed (GOAWAY). */
  sessionIdleTimeoutMs: number
  /** HTTP/2: a stream with no traffic in either direction for this long is cancelled. */
  streamIdleTimeoutMs: number
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  firstByteTimeoutMs: 30_000,
  headersTimeoutMs: 30_000,
  // A 10 MiB body at 100 kB/s; a response may then take as long as it needs.
  requestTimeoutMs: 120_000,
  // Past a load balancer's idle timeout (AWS ALB: 60 s), which must close first or it forwards onto a closing
  // connection (a 502), and past an agent's pause between calls, which would otherwise reconnect each time; Fastify's default.
  keepAliveTimeoutMs: 72_000,
  // Node's own HTTP/1.1 default; SDK requests carry 1–3 KiB of headers.
  maxHeaderBytes: 16 * 1024,
  maxConcurrentStreams: 100,
  maxSessionMemoryMb: 32,
  sessionIdleTimeoutMs: 60_000,
  // Longer than the default upstream silence allowance (10 min), so a slow answer is never cut here.
  streamIdleTimeoutMs: 11 * 60_000,
}

/**
 * An HTTP/1.1 server that also speaks HTTP/2 with prior knowledge (h2c) on the same port: the first
 * bytes of each connection decide which protocol handles it. The AWS SDK uses h2c for `http://`.
 * Returned as the HTTP/1 server Fastify expects; `closeAll` also ends the HTTP/2 sessions.
 */
export function createDualServer(
  handler: RequestListener,
  overrides: Partial<ServerLimits> = {},
): Server & { closeExtraConnections(): void } {
  const limits = { ...DEFAULT_SERVER_LIMITS, ...overrides }
  const h1 = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      // How often Node looks for connections past these timeouts (its default, 30 s, would double them).
      connectionsCheckingInterval: Math.min(5_000, Math.ceil(limits.headersTimeoutMs / 4)),
    },
    handler,
  )
  const sessions = new Set<Http2.ServerHttp2Session>()
  // Sockets that have not sent a byte yet belong to neither protocol server, so neither would close them.
  const undecided = new Set<Socket>()
  // node:http2 (and what it loads: tls, https) is loaded and its server made at the first HTTP/2 connection:
  // most proxies never see one (~1.5 MiB resident for the process's life otherwise).
  let h2: Http2.Http2Server | null = null
  const http2Server = (): Http2.Http2Server => {
    if (h2 !== null) return h2
    const http2 = process.getBuiltinModule('node:http2')
    // Fastify's handler takes the HTTP/2 compatibility request and response as it takes HTTP/1 ones.
    const server = http2.createServer(
      {
        settings: { maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes },
        maxSessionMemory: limits.maxSessionMemoryMb,
        maxSettings: 32,
        maxHeaderListPairs: 128,
      },
      handler as unknown as (req: Http2.Http2ServerRequest, res: Http2.Http2ServerResponse) => void,
    )
    server.on('session', (session) => {
      sessions.add(session)
      session.once('close', () => sessions.delete(session))
      let open = 0
      session.on('stream', (stream) => {
        open++
        stream.once('close', () => open--)
        stream.setTimeout(limits.streamIdleTimeoutMs, () => stream.close(http2.constants.NGHTTP2_CANCEL))
      })
      // The timer is re-armed by any traffic; a session still serving a silent stream is left alone.
      session.setTimeout(limits.sessionIdleTimeoutMs, () => {
        if (open === 0) session.close()
      })
    })
    h2 = server
    return server
  }
  const http1Listeners = h1.listeners('connection') as Array<(socket: Socket) => void>
  h1.removeAllListeners('connection')
  h1.on('connection', (socket: Socket) => {
    undecided.add(socket)
    const silent = setTimeout(() => socket.destroy(), limits.firstByteTimeoutMs)
    // Only until the first byte: an open connection then keeps neither this listener nor its cleared timer.
    const closedSilent = (): void => {
      clearTimeout(silent)
      undecided.delete(socket)
    }
    socket.on('close', closedSilent)
    socket.once('data', (first: Buffer) => {
      socket.off('close', closedSilent)
      closedSilent()
      socket.pause()
      socket.unshift(first)
      if (first.subarray(0, H2_PREFACE_START.length).equals(H2_PREFACE_START)) {
        // The HTTP/1 server accepts half-open sockets; HTTP/2 relies on a peer's FIN closing the socket,
        // or its session (and every stream of it) never learns that the client went away.
        socket.allowHalfOpen = false
        http2Server().emit('connection', socket)
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
