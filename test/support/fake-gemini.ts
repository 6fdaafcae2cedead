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
  chunksWritten: number
  outputTokensWritten: number
  finished: boolean
  clientAborted: boolean
}

export interface FakeGeminiOptions {
  /** promptTokenCount the fake reports (default 12). */
  promptTokens?: number
  /** Text chunks per streamed answer (default 5), each carrying `word`. */
  chunks?: number
  /** Text of one streamed chunk (default "tok "). */
  word?: string
  /** candidatesTokenCount each streamed chunk adds (default 1). */
  tokensPerChunk?: number
  /** candidatesTokenCount of a non-streamed answer (default 7). */
  completionTokens?: number
  /** thoughtsTokenCount reported from the first chunk on, as thinking models do (default none). */
  thoughtsTokens?: number
  /** Milliseconds between stream chunks (default 0). */
  chunkDelayMs?: number
  /** Answer every metered POST with this status and body instead. */
  fail?: { status: number; body: unknown }
  /** Destroy the socket after this many stream chunks. */
  resetAfterChunks?: number
}

/**
 * A fake generativelanguage.googleapis.com speaking the real wire format: generateContent,
 * streamGenerateContent as SSE (`alt=sse`, CRLF-delimited events) or as a streamed JSON array
 * (pretty-printed elements joined by `\n,\r\n`), countTokens, embedContent, batchEmbedContents and
 * the model list. It records every request and keeps a ledger of what each stream served.
 */
export interface FakeGemini {
  url: string
  received: Received[]
  ledger: LedgerEntry[]
  options: FakeGeminiOptions
  close(): Promise<void>
}

const ROUTE = /^\/v1(?:beta|alpha)?\/((?:models|tunedModels)\/[^/:]+):([A-Za-z]+)$/

export async function startFakeGemini(initial: FakeGeminiOptions = {}): Promise<FakeGemini> {
  const received: Received[] = []
  const ledger: LedgerEntry[] = []
  const fake: FakeGemini = { url: '', received, ledger, options: initial, close: async () => undefined }
  const sockets = new Set<Socket>()

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      let body: Record<string, unknown> | null = null
      try {
        body = raw.length > 0 ? (JSON.parse(raw) as Record<string, unknown>) : null
      } catch {
        body = null
      }
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, raw, body })
      void answer(req, res, body ?? {})
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>): Promise<void> {
    const o = fake.options
    const url = new URL(req.url ?? '/', 'http://fake')
    if (req.method === 'GET' && /^\/v1(beta|alpha)?\/models$/.test(url.pathname)) {
      return json(res, 200, { models: [{ name: 'models/gemini-test', displayName: 'Gemini Test', supportedGenerationMethods: ['generateContent'] }] })
    }
    const match = ROUTE.exec(url.pathname)
    if (req.method !== 'POST' || match === null) {
      return json(res, 404, { error: { code: 404, message: `no route ${url.pathname}`, status: 'NOT_FOUND' } })
    }
    const model = (match[1] ?? '').replace(/^models\//, '')
    const verb = match[2]
    const promptTokens = o.promptTokens ?? 12
    if (verb === 'countTokens') return json(res, 200, { totalTokens: promptTokens, promptTokensDetails: [{ modality: 'TEXT', tokenCount: promptTokens }] })
    if (o.fail) return json(res, o.fail.status, o.fail.body)
    if (verb === 'embedContent') return json(res, 200, { embedding: { values: [0.5, 0.25, 0.125] } })
    if (verb === 'batchEmbedContents') {
      const requests = Array.isArray(body.requests) ? body.requests : []
      return json(res, 200, { embeddings: requests.map(() => ({ values: [0.5, 0.25, 0.125] })) })
    }
    if (verb === 'generateContent') {
      const completion = o.completionTokens ?? 7
      return json(res, 200, response(model, 'hello from the fake', 'STOP', usage(promptTokens, completion, o.thoughtsTokens)))
    }
    if (verb === 'streamGenerateContent') return stream(req, res, model, promptTokens, url.searchParams.get('alt') === 'sse')
    return json(res, 400, { error: { code: 400, message: `unsupported ${verb}`, status: 'INVALID_ARGUMENT' } })
  }

  async function stream(req: http.IncomingMessage, res: http.ServerResponse, model: string, promptTokens: number, sse: boolean): Promise<void> {
    const o = fake.options
    const entry: LedgerEntry = { url: req.url ?? '', chunksWritten: 0, outputTokensWritten: 0, finished: false, clientAborted: false }
    ledger.push(entry)
    res.once('close', () => {
      if (!entry.finished) entry.clientAborted = true
    })
    res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json; charset=UTF-8' })
    const count = o.chunks ?? 5
    const perChunk = o.tokensPerChunk ?? 1
    for (let i = 0; i < count; i++) {
      if (o.chunkDelayMs && i > 0) await sleep(o.chunkDelayMs)
      if (entry.clientAborted || res.destroyed) return
      if (o.resetAfterChunks !== undefined && i === o.resetAfterChunks) {
        res.socket?.destroy()
        return
      }
      const chunk = response(model, o.word ?? 'tok ', i === count - 1 ? 'STOP' : undefined, usage(promptTokens, (i + 1) * perChunk, o.thoughtsTokens))
      // Gemini's SSE events end with CRLF CRLF; its JSON array is pretty-printed, elements joined by "\n,\r\n".
      const text = sse ? `data: ${JSON.stringify(chunk)}\r\n\r\n` : `${i === 0 ? '[' : '\n,\r\n'}${JSON.stringify(chunk, null, 2)}`
      res.write(text)
      entry.chunksWritten++
      entry.outputTokensWritten += perChunk
    }
    if (!sse) res.write(count === 0 ? '[]' : '\n]')
    entry.finished = true
    res.end()
  }

  const address = await new Promise<AddressInfo>((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address() as AddressInfo)))
  fake.url = `http://127.0.0.1:${address.port}`
  fake.close = async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return fake
}

function usage(prompt: number, candidates: number, thoughts: number | undefined): Record<string, unknown> {
  return {
    promptTokenCount: prompt,
    candidatesTokenCount: candidates,
    totalTokenCount: prompt + candidates + (thoughts ?? 0),
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: prompt }],
    ...(thoughts === undefined ? {} : { thoughtsTokenCount: thoughts }),
  }
}

function response(model: string, text: string, finishReason: string | undefined, usageMetadata: Record<string, unknown>): Record<string, unknown> {
  return {
    candidates: [{ content: { parts: [{ text }], role: 'model' }, ...(finishReason ? { finishReason } : {}), index: 0 }],
    usageMetadata,
    modelVersion: model,
    responseId: 'fake-response-1',
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' })
  res.end(JSON.stringify(body))
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
