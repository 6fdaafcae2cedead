import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { isObject } from '../providers/body.js'
import { countChatTokens, countTextTokens, encodingForModel, type Encoding } from '../tokens/tiktoken.js'

/**
 * The built-in fake provider of `loopers demo`: a loopback server speaking OpenAI's chat completions wire
 * format (JSON and SSE streams with `stream_options.include_usage`) that bills as OpenAI does, in tokens
 * counted with the model's tokenizer, and keeps a ledger of what it served. No network, no key checks.
 */

/** What the fake provider served: the tokens a real provider would bill. */
interface ProviderLedger {
  requests: number
  inputTokens: number
  /** Output tokens that reached the wire, including those of streams that were cut. */
  outputTokens: number
}

export interface DemoProvider {
  url: string
  ledger: ProviderLedger
  close(): Promise<void>
}

// The answer every request gets, repeated as needed: one word per streamed delta.
const ANSWER =
  'Loopers reserves the worst case of every request before it reaches the provider, meters each stream as it ' +
  'flows, and ends it the moment the budget cannot hold the next slice. '
const WORDS = ANSWER.match(/\s*\S+/g) ?? []
const DEFAULT_OUTPUT_TOKENS = 1_000
const MS_PER_WORD = 1

/** Starts the fake provider on 127.0.0.1 at a free port. */
export async function startDemoProvider(): Promise<DemoProvider> {
  const ledger: ProviderLedger = { requests: 0, inputTokens: 0, outputTokens: 0 }
  const sockets = new Set<Socket>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => void answer(req, res, Buffer.concat(chunks).toString('utf8')))
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, text: string): Promise<void> {
    const path = (req.url ?? '').split('?')[0]
    if (req.method === 'GET' && path === '/v1/models') return send(res, 200, { object: 'list', data: [] })
    let body: unknown = null
    try {
      body = JSON.parse(text)
    } catch {
      // answered below
    }
    if (req.method !== 'POST' || path !== '/v1/chat/completions' || !isObject(body) || typeof body.model !== 'string') {
      return send(res, 400, { error: { message: 'the demo provider answers chat completions only', type: 'invalid_request_error', param: null, code: null } })
    }
    const model = body.model
    const inputTokens = countChatTokens(body, model)
    const cap = [body.max_completion_tokens, body.max_tokens].find((v): v is number => typeof v === 'number')
    const maxTokens = Math.min(cap ?? DEFAULT_OUTPUT_TOKENS, DEFAULT_OUTPUT_TOKENS)
    ledger.requests += 1
    ledger.inputTokens += inputTokens
    if (body.stream === true) {
      const usage = isObject(body.stream_options) && body.stream_options.include_usage === true
      return stream(res, model, inputTokens, maxTokens, usage)
    }
    const answer = words(maxTokens, encodingForModel(model))
    const content = answer.map((w) => w.text).join('')
    const outputTokens = answer.reduce((sum, w) => sum + w.tokens, 0)
    ledger.outputTokens += outputTokens
    send(res, 200, {
      id: 'chatcmpl-demo',
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model,
      choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, finish_reason: 'length', logprobs: null }],
      usage: { prompt_tokens: inputTokens, completion_tokens: outputTokens, total_tokens: inputTokens + outputTokens },
    })
  }

  async function stream(res: http.ServerResponse, model: string, inputTokens: number, maxTokens: number, usage: boolean): Promise<void> {
    const base = { id: 'chatcmpl-demo', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    let sent = 0
    for (const word of words(maxTokens, encodingForModel(model))) {
      if (res.destroyed || res.writableEnded) return
      res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: word.text }, finish_reason: null }] })}\n\n`)
      // Billed as soon as it is on the wire, as a real provider bills what it generated.
      sent += word.tokens
      ledger.outputTokens += word.tokens
      await new Promise((resolve) => setTimeout(resolve, MS_PER_WORD))
    }
    if (res.destroyed) return
    res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'length' }] })}\n\n`)
    if (usage) {
      const reported = { prompt_tokens: inputTokens, completion_tokens: sent, total_tokens: inputTokens + sent }
      res.write(`data: ${JSON.stringify({ ...base, choices: [], usage: reported })}\n\n`)
    }
    res.end('data: [DONE]\n\n')
  }

  const address = await new Promise<AddressInfo>((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address() as AddressInfo)))
  return {
    url: `http://127.0.0.1:${address.port}`,
    ledger,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

/** The answer's words (repeated as needed) with their token counts, as many as fit in `maxTokens`. */
function words(maxTokens: number, encoding: Encoding): Array<{ text: string; tokens: number }> {
  const out: Array<{ text: string; tokens: number }> = []
  let total = 0
  for (let i = 0; ; i++) {
    const text = WORDS[i % WORDS.length]!
    const tokens = countTextTokens(text, encoding)
    if (total + tokens > maxTokens) return out
    out.push({ text, tokens })
    total += tokens
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}
