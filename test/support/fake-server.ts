/**
 * The HTTP mechanics every fake upstream shares: a loopback server that hands each request over with its
 * whole body, records it, keeps a ledger of what each stream put on the wire, and closes without waiting
 * for keep-alive clients. A fake adds only its provider's wire format on top.
 */
import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/** A request as the fake upstream received it. */
export interface Received {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  raw: string
  body: Record<string, unknown> | null
}

/** What one streamed response actually put on the wire before it ended or the client went away. */
export interface LedgerEntry {
  url: string
  /** Prompt tokens this answer bills (what the fake reports as the request's input). */
  inputTokens: number
  chunksWritten: number
  outputTokensWritten: number
  finished: boolean
  clientAborted: boolean
}

/** What a recording fake shows a test: where it listens, what it received and served, its options (replaceable between tests). */
export interface FakeUpstream<O, R extends Received = Received> {
  url: string
  received: R[]
  ledger: LedgerEntry[]
  /** Prompt tokens each metered answer billed, in order (count endpoints bill nothing). */
  prompts: number[]
  options: O
  close(): Promise<void>
}

/** A fake upstream's server: the test's view plus the ledger entry a streamed answer opens. */
export interface RecordingServer<O> extends FakeUpstream<O> {
  openLedger(req: http.IncomingMessage, res: http.ServerResponse, inputTokens: number): LedgerEntry
}

/** A running loopback server; `close` destroys open sockets so keep-alive clients cannot hold it open. */
export interface FakeServer {
  url: string
  close(): Promise<void>
}

/** Starts a server on 127.0.0.1 at a free port that calls `handle` once each request's body has fully arrived. */
export async function startFakeServer(handle: (req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer) => void): Promise<FakeServer> {
  const sockets = new Set<Socket>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => handle(req, res, Buffer.concat(chunks)))
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  const address = await new Promise<AddressInfo>((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address() as AddressInfo)))
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * Starts a fake server that records every request before `answer` sees it. `answer` gets the body parsed
 * as JSON (`{}` when empty or not JSON) and its raw text; it reads the fake's current options from the server.
 */
export async function startRecordingServer<O>(
  options: O,
  answer: (req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, raw: string) => Promise<void> | void,
): Promise<RecordingServer<O>> {
  const received: Received[] = []
  const ledger: LedgerEntry[] = []
  const prompts: number[] = []
  const server = await startFakeServer((req, res, bytes) => {
    const raw = bytes.toString('utf8')
    const body = parseBody(raw)
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, raw, body })
    void answer(req, res, body ?? {}, raw)
  })
  return { url: server.url, received, ledger, prompts, options, close: server.close, openLedger: (req, res, inputTokens) => openLedger(ledger, req, res, inputTokens) }
}

/** Empties what a fake received and served and restores its default options, for the next test. */
export function resetFake<O extends object>(fake: FakeUpstream<O, Received>): void {
  fake.received.length = 0
  fake.ledger.length = 0
  fake.prompts.length = 0
  fake.options = {} as O
}

/** A request body parsed as JSON; null when it is empty or not JSON. */
export function parseBody(raw: string): Record<string, unknown> | null {
  try {
    return raw.length > 0 ? (JSON.parse(raw) as Record<string, unknown>) : null
  } catch {
    return null
  }
}

/** Adds the entry of a streamed answer billing `inputTokens` to `ledger`; it turns `clientAborted` if the connection closes before `finished`. */
export function openLedger(ledger: LedgerEntry[], req: http.IncomingMessage, res: http.ServerResponse, inputTokens: number): LedgerEntry {
  const entry: LedgerEntry = { url: req.url ?? '', inputTokens, chunksWritten: 0, outputTokensWritten: 0, finished: false, clientAborted: false }
  ledger.push(entry)
  res.once('close', () => {
    if (!entry.finished) entry.clientAborted = true
  })
  return entry
}

/** Writes one stream chunk carrying `tokens` output tokens and books it; false (nothing written) once the client has gone. */
export function write(res: http.ServerResponse, entry: LedgerEntry, data: string | Buffer, tokens: number): boolean {
  if (entry.clientAborted || res.destroyed) return false
  res.write(data)
  entry.chunksWritten++
  entry.outputTokensWritten += tokens
  return true
}

/**
 * The pause before a stream's next content chunk: waits `delayMs`, then destroys the socket when `reset` says
 * this is where the upstream dies. False when the stream must stop (the client went away or the socket was reset).
 */
export async function pace(res: http.ServerResponse, entry: LedgerEntry, delayMs: number | undefined, reset = false): Promise<boolean> {
  if (delayMs) await sleep(delayMs)
  if (entry.clientAborted) return false
  if (reset) {
    // What was written reaches the wire first (a provider's reset loses nothing it already sent), then the socket dies.
    const socket = res.socket
    if (socket) await new Promise<void>((resolve) => socket.write('', () => resolve()))
    socket?.destroy()
    return false
  }
  return true
}

/** Ends a streamed answer that went out whole. */
export function finish(res: http.ServerResponse, entry: LedgerEntry): void {
  entry.finished = true
  res.end()
}

/** Ends the answer with a JSON body; `headers` add to or override `content-type: application/json`. */
export function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Prompt tokens a fake billed in all, over every metered answer since its last reset. */
export function billedInput(fake: { prompts: readonly number[] }): number {
  return fake.prompts.reduce((sum, tokens) => sum + tokens, 0)
}
