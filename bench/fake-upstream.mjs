// A fast fake OpenAI upstream for the benchmark, with a ledger of what it actually served.
// Run as its own process: `node bench/fake-upstream.mjs [--port=0]`; prints one JSON line `{"url": …}`.
//
// Ledger rules (the provider's view of the bill, which is what leakage is judged by):
// - a 200 answer bills its prompt when the answer starts: by default as OpenAI counts it (tiktoken o200k of
//   every message's text, 4 tokens a message, 3 for the reply), or the body's bytes (`'bytes'`), or a number;
// - output is the realistic answer of bench/fake-billing.mjs (1-4 tokens a delta, code and non-English text)
//   billed with tiktoken, or `word` repeated when one is set (billed in context, so "x" × 20 is not 20 tokens);
// - output tokens count as written when their chunk is handed to a socket that is still open;
//   a stream stops writing as soon as its client goes away.
// - Azure, Mistral, Anthropic, Gemini and Bedrock Converse (non-streamed) answer and bill as
//   bench/fake-providers.mjs says; `byKind` counts the answers each served.
// Control: `GET /__ledger` → totals; `POST /__reset` with optional JSON options → zeroes the ledger;
// `POST /__collect` → one full collection now (bench/collect.mjs), answered with its milliseconds.
import http from 'node:http'
import { pathToFileURL } from 'node:url'
import { collectGarbage } from './collect.mjs'
import { answerChunks, billedTokens, familyOf, warmBilling } from './fake-billing.mjs'
import { mistralChat, providerRoute } from './fake-providers.mjs'

/** Behaviour of the fake; every field can be changed by `POST /__reset`. */
export const DEFAULT_OPTIONS = Object.freeze({
  /** 'tiktoken' bills the prompt as OpenAI counts it; 'bytes' the body's byte length; a number that many. */
  promptTokens: 'tiktoken',
  /** Output tokens of a non-streamed chat answer at most (capped by the request's max_tokens). */
  completionTokens: 16,
  /** Content chunks of a streamed answer (stopping at the request's max_tokens). */
  chunks: 20,
  /** Milliseconds between stream chunks; 0 writes them back to back. */
  chunkDelayMs: 0,
  /** Text of every chunk instead of the realistic answer (null: the answer). */
  word: null,
  /** Prices the ledger bills at, micro-USD per 1M tokens (bench/prices.json: 1 USD each). */
  inputPer1M: 1_000_000,
  outputPer1M: 1_000_000,
})

function emptyLedger() {
  return {
    requests: 0,
    chat: 0,
    streams: 0,
    embeddings: 0,
    streamsCompleted: 0,
    streamsAborted: 0,
    inputTokens: 0,
    outputTokens: 0,
    spendMicros: 0,
    badRequests: 0,
    // TCP connections accepted since the reset: the clients' (direct runs) and the proxies' (their upstream hop).
    connections: 0,
    byKind: {},
    openNow: 0,
    maxOpen: 0,
  }
}

/** Creates the fake's HTTP server (not listening) and its ledger. */
export function createFakeUpstream(initial = {}) {
  warmBilling()
  let options = { ...DEFAULT_OPTIONS, ...initial }
  let ledger = emptyLedger()
  let epoch = 0

  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const raw = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
      route(req, res, raw)
    })
  })
  server.on('connection', () => ledger.connections++)
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 130_000
  server.requestTimeout = 0

  function route(req, res, raw) {
    const path = req.url.split('?', 1)[0]
    if (path === '/__ledger') return json(res, 200, { ...ledger, options })
    if (path === '/__collect') return json(res, 200, { ms: collectGarbage() })
    if (path === '/__reset') {
      const change = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : {}
      options = { ...DEFAULT_OPTIONS, ...change }
      ledger = emptyLedger()
      epoch++
      return json(res, 200, { options })
    }
    let body
    try {
      body = JSON.parse(raw.toString('utf8'))
    } catch {
      ledger.badRequests++
      return json(res, 400, { error: { message: 'invalid JSON', type: 'invalid_request_error', param: null, code: null } })
    }
    const model = typeof body.model === 'string' ? body.model : 'unknown'
    const other = providerRoute(path)
    if (other !== null) return provider(res, other, body)
    if (path === '/v1/chat/completions' && familyOf(model) !== 'openai') return provider(res, { kind: 'mistral', handle: mistralChat }, body)
    const prompt = options.promptTokens === 'bytes' ? raw.length : options.promptTokens === 'tiktoken' ? promptTokens(path, body, model) : Number(options.promptTokens)
    if (path === '/v1/embeddings') return embeddings(res, model, prompt)
    if (path === '/v1/chat/completions') return body.stream === true ? stream(res, body, model, prompt) : chat(res, body, model, prompt)
    return json(res, 404, { error: { message: 'no such route', type: 'invalid_request_error', param: null, code: null } })
  }

  function bill(inputTokens, outputTokens) {
    ledger.inputTokens += inputTokens
    ledger.outputTokens += outputTokens
    ledger.spendMicros += cost(inputTokens, options.inputPer1M) + cost(outputTokens, options.outputPer1M)
  }

  /** An answer of another provider's wire format (fake-providers.mjs); counting calls bill nothing. */
  function provider(res, route, body) {
    if (res.destroyed) return
    const { status, json: answer, bill: billed, stream: streamed, prompt } = route.handle(body, options)
    if (streamed !== undefined) return serveStream(res, route.kind, prompt, streamed)
    if (billed !== null) {
      ledger.requests++
      ledger.byKind[route.kind] = (ledger.byKind[route.kind] ?? 0) + 1
      bill(billed[0], billed[1])
    }
    json(res, status, answer)
  }

  function embeddings(res, model, prompt) {
    if (res.destroyed) return
    ledger.requests++
    ledger.embeddings++
    bill(prompt, 0)
    json(res, 200, {
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding: [0.5, 0.25, 0.125] }],
      model,
      usage: { prompt_tokens: prompt, total_tokens: prompt },
    })
  }

  function chat(res, body, model, prompt) {
    if (res.destroyed) return
    const { text, tokens: completion } = answerOf(options, Math.min(options.completionTokens, cap(body)), model)
    ledger.requests++
    ledger.chat++
    bill(prompt, completion)
    json(res, 200, {
      id: 'chatcmpl-bench',
      object: 'chat.completion',
      created: 1,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
    })
  }

  /** An OpenAI chat stream: the role chunk, content chunks, the finish chunk, usage when asked for, [DONE]. */
  function stream(res, body, model, prompt) {
    const deltas = streamDeltas(options, model, cap(body))
    const head = `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":${JSON.stringify(model)},"choices":`
    serveStream(res, 'openai', prompt, {
      contentType: 'text/event-stream',
      opening: `${head}[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n`,
      frames: deltas.map((d) => ({ data: `${head}[{"index":0,"delta":{"content":${JSON.stringify(d.text)}},"finish_reason":null}]}\n\n`, tokens: d.tokens })),
      closing(written) {
        let tail = `${head}[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n`
        if (body.stream_options?.include_usage === true) {
          tail += `${head}[],"usage":${JSON.stringify({ prompt_tokens: prompt, completion_tokens: written, total_tokens: prompt + written })}}\n\n`
        }
        return `${tail}data: [DONE]\n\n`
      },
    })
  }

  /**
   * Serves a stream of any wire format: bills `prompt` at once, writes `opening`, then each frame `chunkDelayMs`
   * apart (billing its tokens when handed to a still-open socket), then `closing(tokens written)`.
   */
  function serveStream(res, kind, prompt, { contentType, opening, frames, closing }) {
    if (res.destroyed) return
    const o = options
    const at = epoch
    ledger.requests++
    ledger.streams++
    ledger.byKind[kind] = (ledger.byKind[kind] ?? 0) + 1
    bill(prompt, 0)
    ledger.openNow++
    ledger.maxOpen = Math.max(ledger.maxOpen, ledger.openNow)
    let written = 0
    let open = true
    const close = (completed) => {
      if (!open) return
      open = false
      if (at !== epoch) return // the ledger was reset meanwhile: this stream belongs to the old one
      ledger.openNow--
      if (completed) ledger.streamsCompleted++
      else ledger.streamsAborted++
    }
    res.once('close', () => close(false))
    const alive = () => open && !res.destroyed && res.socket !== null && !res.socket.destroyed
    let sent = 0
    const writeFrame = () => {
      if (!alive()) return false
      const frame = frames[sent++]
      res.write(frame.data)
      written += frame.tokens
      if (at === epoch) bill(0, frame.tokens)
      return true
    }
    const finish = () => {
      if (!alive()) return
      const tail = closing(written)
      close(true)
      res.end(tail)
    }
    res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-cache' })
    res.write(opening)
    if (o.chunkDelayMs <= 0) {
      for (let i = 0; i < frames.length; i++) if (!writeFrame()) return
      return finish()
    }
    let i = 0
    const next = () => {
      if (i++ >= frames.length) return finish()
      if (writeFrame()) setTimeout(next, o.chunkDelayMs)
    }
    setTimeout(next, o.chunkDelayMs)
  }

  return {
    server,
    get ledger() {
      return ledger
    },
  }
}

/** The non-streamed answer: the realistic answer's deltas (or `word` repeated) while they bill at most `limit`. */
function answerOf(options, limit, model) {
  if (options.word !== null && options.word !== undefined) {
    let n = 0
    while (n < 10_000 && billedTokens(options.word.repeat(n + 1), 'openai', model) <= limit) n++
    const text = options.word.repeat(n)
    return { text, tokens: billedTokens(text, 'openai', model) }
  }
  const deltas = capped(answerChunks(Math.max(1, Math.min(limit, 10_000)), 'openai', model).deltas, limit)
  return { text: deltas.map((d) => d.text).join(''), tokens: deltas.reduce((n, d) => n + d.tokens, 0) }
}

/** A stream's deltas with their tokens: `chunks` of the answer (or of `word`), stopping before `limit` tokens are passed. */
export function streamDeltas(options, model, limit) {
  if (options.word !== null && options.word !== undefined) {
    const total = billedTokens(options.word.repeat(options.chunks), 'openai', model)
    const deltas = Array.from({ length: options.chunks }, (_, i) => ({ text: options.word, tokens: Math.floor(total / options.chunks) + (i < total % options.chunks ? 1 : 0) }))
    return capped(deltas, limit)
  }
  return capped(answerChunks(options.chunks, 'openai', model).deltas, limit)
}

function capped(deltas, limit) {
  const out = []
  let total = 0
  for (const delta of deltas) {
    if (total + delta.tokens > limit) break
    total += delta.tokens
    out.push(delta)
  }
  return out
}

/** Prompt tokens as OpenAI bills them: 3 + per message 4 + its text (chat); the input strings (embeddings). */
function promptTokens(path, body, model) {
  if (path === '/v1/embeddings') {
    const inputs = Array.isArray(body.input) ? body.input : [body.input]
    return inputs.reduce((n, input) => n + (typeof input === 'string' ? billedTokens(input, 'openai', model) : Array.isArray(input) ? input.length : 0), 0)
  }
  let tokens = 3
  for (const message of Array.isArray(body.messages) ? body.messages : []) {
    tokens += 4
    const content = message?.content
    const parts = typeof content === 'string' ? [content] : Array.isArray(content) ? content.map((p) => (typeof p?.text === 'string' ? p.text : '')) : []
    for (const text of parts) tokens += billedTokens(text, 'openai', model)
    if (typeof message?.name === 'string') tokens += 1 + billedTokens(message.name, 'openai', model)
  }
  return tokens
}

/** The request's output cap (max_completion_tokens, else max_tokens), or Infinity. */
function cap(body) {
  const value = body.max_completion_tokens ?? body.max_tokens
  return Number.isInteger(value) && value > 0 ? value : Number.POSITIVE_INFINITY
}

/** Micro-USD for `tokens` at `per1M`, rounded up as a provider's invoice would. */
function cost(tokens, per1M) {
  return Math.ceil((tokens * per1M) / 1_000_000)
}

function json(res, status, body) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const portArg = process.argv.find((a) => a.startsWith('--port='))
  const port = portArg === undefined ? 0 : Number(portArg.slice('--port='.length))
  const fake = createFakeUpstream()
  fake.server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${fake.server.address().port}` })}\n`)
  })
  const stop = () => {
    fake.server.closeAllConnections()
    fake.server.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 1_000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // Orphaned (the orchestrator died without stopping us): leave instead of serving forever.
  setInterval(() => {
    if (process.ppid === 1) process.exit(0)
  }, 1_000).unref()
}
