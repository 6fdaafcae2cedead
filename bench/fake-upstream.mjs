// A fast fake OpenAI upstream for the benchmark, with a ledger of what it actually served.
// Run as its own process: `node bench/fake-upstream.mjs [--port=0]`; prints one JSON line `{"url": …}`.
//
// Ledger rules (the provider's view of the bill, which is what leakage is judged by):
// - a 200 answer bills its prompt when the answer starts (prompt = request body bytes by default, the
//   proxy's own upper bound, so a reservation can equal the bill; or a fixed `promptTokens`);
// - output tokens count as written when their chunk is handed to a socket that is still open;
//   a stream stops writing as soon as its client goes away.
// Control: `GET /__ledger` → totals; `POST /__reset` with optional JSON options → zeroes the ledger.
import http from 'node:http'
import { pathToFileURL } from 'node:url'

/** Behaviour of the fake; every field can be changed by `POST /__reset`. */
export const DEFAULT_OPTIONS = Object.freeze({
  /** 'bytes' bills the request body's byte length as prompt tokens; a number bills that many. */
  promptTokens: 'bytes',
  /** Output tokens of a non-streamed chat answer (capped by the request's max_tokens). */
  completionTokens: 16,
  /** Content chunks of a streamed answer, one token each (capped by the request's max_tokens). */
  chunks: 20,
  /** Milliseconds between stream chunks; 0 writes them back to back. */
  chunkDelayMs: 0,
  /** Text of one output token. */
  word: 'x',
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
    openNow: 0,
    maxOpen: 0,
  }
}

/** Creates the fake's HTTP server (not listening) and its ledger. */
export function createFakeUpstream(initial = {}) {
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
  server.keepAliveTimeout = 120_000
  server.headersTimeout = 130_000
  server.requestTimeout = 0

  function route(req, res, raw) {
    const path = req.url.split('?', 1)[0]
    if (path === '/__ledger') return json(res, 200, { ...ledger, options })
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
    const prompt = options.promptTokens === 'bytes' ? raw.length : Number(options.promptTokens)
    if (path === '/v1/embeddings') return embeddings(res, model, prompt)
    if (path === '/v1/chat/completions') return body.stream === true ? stream(res, body, model, prompt) : chat(res, body, model, prompt)
    return json(res, 404, { error: { message: 'no such route', type: 'invalid_request_error', param: null, code: null } })
  }

  function bill(inputTokens, outputTokens) {
    ledger.inputTokens += inputTokens
    ledger.outputTokens += outputTokens
    ledger.spendMicros += cost(inputTokens, options.inputPer1M) + cost(outputTokens, options.outputPer1M)
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
    const completion = Math.min(options.completionTokens, cap(body))
    ledger.requests++
    ledger.chat++
    bill(prompt, completion)
    json(res, 200, {
      id: 'chatcmpl-bench',
      object: 'chat.completion',
      created: 1,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: options.word.repeat(completion), refusal: null }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
    })
  }

  function stream(res, body, model, prompt) {
    if (res.destroyed) return
    const o = options
    const at = epoch
    const count = Math.min(o.chunks, cap(body))
    const includeUsage = body.stream_options?.include_usage === true
    const head = `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":${JSON.stringify(model)},"choices":`
    const tokenFrame = `${head}[{"index":0,"delta":{"content":${JSON.stringify(o.word)}},"finish_reason":null}]}\n\n`
    ledger.requests++
    ledger.streams++
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
    const writeToken = () => {
      if (!alive()) return false
      res.write(tokenFrame)
      written++
      if (at === epoch) bill(0, 1)
      return true
    }
    const finish = () => {
      if (!alive()) return
      let tail = `${head}[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n`
      if (includeUsage) {
        const usage = { prompt_tokens: prompt, completion_tokens: written, total_tokens: prompt + written }
        tail += `${head}[],"usage":${JSON.stringify(usage)}}\n\n`
      }
      close(true)
      res.end(`${tail}data: [DONE]\n\n`)
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.write(`${head}[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n`)
    if (o.chunkDelayMs <= 0) {
      for (let i = 0; i < count; i++) if (!writeToken()) return
      return finish()
    }
    let i = 0
    const next = () => {
      if (i++ >= count) return finish()
      if (writeToken()) setTimeout(next, o.chunkDelayMs)
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
