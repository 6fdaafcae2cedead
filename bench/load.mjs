// Load generators for the benchmark, on undici pools, every loop bounded in count and in time.
// - openLoop: request i is due at start + i/rate whatever happened before; its latency is measured
//   from that scheduled time, so a slow server's queueing shows up instead of slowing the sender.
// - closedLoop: C workers send back to back for a fixed duration (peak throughput).
// - burst: N requests at once (floods, open-stream memory), each with its own connection.
// CLI: `node bench/load.mjs --url=http://127.0.0.1:8080/v1/chat/completions --rate=1000 --duration=5
//       [--closed=64] [--body='{"model":…}'] [--header=authorization:Bearer\ …]` prints the JSON summary.
// - smallLoad: small requests on node:http, back to back, while a bigger one runs (count stall, common case).
import { Agent, request as httpRequest } from 'node:http'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { Pool } from 'undici'

/** Requests still unanswered this long after the run's end are cut and counted as transport errors. */
const DEFAULT_DRAIN_MS = 10_000
const DEFAULT_TIMEOUT_MS = 30_000

/** A pool to one origin; pass it to several runs so warm-up connections are reused. */
export function createPool(origin, connections, timeoutMs = DEFAULT_TIMEOUT_MS) {
  return new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 120_000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
}

/**
 * Opens `connections` connections in a new `pool` with that many requests at once (one each: a closed loop's second
 * round opens more, as a connection that just answered is not free yet), so a measured run after it starts on
 * connections as young on every side; resolves with the pool's open connections and how many it opened.
 */
export async function primeConnections({ origin, request, pool, connections }) {
  const run = await closedLoop({ origin, request, concurrency: connections, durationMs: 5_000, maxRequests: connections, pool })
  if (run.ok !== run.sent) throw new Error(`priming ${origin}: ${run.ok} of ${run.sent} requests answered 2xx`)
  return { open: pool.stats.connected, opened: run.connects }
}

/** How many of a run's slowest requests openLoop reports with their send times. */
export const SLOWEST_KEPT = 10

/**
 * The `n` slowest of the answered requests, slowest first: { atMs: when it was due, ms after `start`; ms: its
 * latency }. Whether a run's tail is one burst (a stall) or spread over the run shows in the `atMs`.
 */
export function slowestRequests(latencies, sentAt, start, n = SLOWEST_KEPT) {
  const order = latencies.map((_, i) => i).sort((a, b) => latencies[b] - latencies[a])
  return order.slice(0, n).map((i) => ({ atMs: Math.round(sentAt[i] - start), ms: Math.round(latencies[i] * 100) / 100 }))
}

/** Percentiles (ms) of a list of latencies. */
export function summarize(latencies) {
  const sorted = Float64Array.from(latencies).sort()
  const at = (q) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)])
  const mean = sorted.length === 0 ? null : sorted.reduce((a, b) => a + b, 0) / sorted.length
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1), mean }
}

/**
 * Sends one request and reads the whole answer. Resolves { status, firstByteAt, endAt, reads } or
 * { error } for a transport failure; never rejects.
 */
function send(pool, req) {
  return pool
    .request({ path: req.path, method: req.method ?? 'POST', headers: req.headers, body: req.body })
    .then(
      ({ statusCode, body }) =>
        new Promise((resolve) => {
          let firstByteAt = null
          let reads = 0
          // A refused request's body says why; keep its start for the report.
          let text = statusCode >= 200 && statusCode <= 299 ? null : ''
          body.on('data', (chunk) => {
            if (reads++ === 0) firstByteAt = performance.now()
            if (text !== null && text.length < 300) text += chunk.toString('utf8', 0, 300)
          })
          body.once('end', () => resolve({ status: statusCode, firstByteAt, endAt: performance.now(), reads, text }))
          body.once('error', (error) => resolve({ error: error.code ?? error.message }))
        }),
      (error) => ({ error: error.code ?? error.message }),
    )
}

/** Collects outcomes of one run. */
function createTally() {
  const tally = { latencies: [], sentAt: [], ttfb: [], statuses: {}, transportErrors: 0, errorSamples: [], bodySamples: {}, reads: 0, ok: 0 }
  tally.add = (outcome, startedAt) => {
    if (outcome.error !== undefined) {
      tally.transportErrors++
      if (tally.errorSamples.length < 5) tally.errorSamples.push(outcome.error)
      return
    }
    tally.statuses[outcome.status] = (tally.statuses[outcome.status] ?? 0) + 1
    if (outcome.status < 200 || outcome.status > 299) {
      tally.bodySamples[outcome.status] ??= outcome.text.slice(0, 300)
      return
    }
    tally.ok++
    tally.reads += outcome.reads
    tally.latencies.push(outcome.endAt - startedAt)
    tally.sentAt.push(startedAt)
    if (outcome.firstByteAt !== null) tally.ttfb.push(outcome.firstByteAt - startedAt)
  }
  return tally
}

function report(tally, extra, keepLatencies = false) {
  const non2xx = Object.entries(tally.statuses).reduce((n, [s, c]) => (Number(s) >= 200 && Number(s) <= 299 ? n : n + c), 0)
  return {
    ...extra,
    ok: tally.ok,
    statuses: tally.statuses,
    non2xx,
    transportErrors: tally.transportErrors,
    errorSamples: tally.errorSamples,
    bodySamples: tally.bodySamples,
    latencyMs: summarize(tally.latencies),
    ttfbMs: summarize(tally.ttfb),
    readsPerResponse: tally.ok === 0 ? null : tally.reads / tally.ok,
    ...(keepLatencies ? { latencies: tally.latencies } : {}),
  }
}

/**
 * Counts the connections `pool` opens until the returned function is called, which returns the count: a client
 * kept waiting for a new connection pays a handshake and the server's accept before its request is even read.
 */
function countConnects(pool) {
  let connects = 0
  const onConnect = () => connects++
  pool.on('connect', onConnect)
  return () => {
    pool.off('connect', onConnect)
    return connects
  }
}

/** Waits for `pending` to settle, for at most `ms`; then destroys the pool so the stragglers fail. */
async function drain(pending, pool, ms, ownPool) {
  let timer
  const late = new Promise((resolve) => (timer = setTimeout(() => resolve('late'), ms)))
  const outcome = await Promise.race([Promise.all(pending).then(() => 'done'), late])
  clearTimeout(timer)
  if (outcome === 'late') {
    await pool.destroy()
    await Promise.all(pending)
  } else if (ownPool) await pool.close()
}

/**
 * Open loop: `rate` requests per second for `durationMs`, latency from each scheduled send time.
 * `request` is { path, method?, headers, body }, or a function of the request's index (0, 1, …) giving one. Returns percentiles, achieved rate and errors (and every answered
 * request's latency in `latencies` with `keepLatencies`, to merge runs).
 */
export async function openLoop({ origin, request, rate, durationMs, pool, connections = 256, drainMs = DEFAULT_DRAIN_MS, keepLatencies = false }) {
  const own = pool === undefined
  const dispatcher = pool ?? createPool(origin, connections)
  const connects = countConnects(dispatcher)
  const total = Math.max(1, Math.floor((rate * durationMs) / 1000))
  const interval = 1000 / rate
  const tally = createTally()
  const pending = []
  const lags = []
  const start = performance.now() + 5
  let i = 0
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now()
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval
        lags.push(now - due)
        pending.push(send(dispatcher, typeof request === 'function' ? request(i) : request).then((outcome) => tally.add(outcome, due)))
        i++
      }
      if (i >= total) return resolve()
      setTimeout(tick, Math.max(0, start + i * interval - performance.now()))
    }
    setTimeout(tick, 5)
  })
  const sentFor = performance.now() - start
  await drain(pending, dispatcher, drainMs, own)
  const elapsed = performance.now() - start
  return report(tally, {
    mode: 'open',
    connects: connects(),
    targetRate: rate,
    sent: total,
    achievedRate: tally.ok / (elapsed / 1000),
    sendRate: total / (sentFor / 1000),
    sendLagMs: summarize(lags),
    // Epoch ms of the run's first due send, so other processes' records (bench/gc-record.mjs) line up with `slowest`.
    startedAtMs: performance.timeOrigin + start,
    slowest: slowestRequests(tally.latencies, tally.sentAt, start),
    elapsedMs: elapsed,
  }, keepLatencies)
}

/** Closed loop: `concurrency` workers back to back for `durationMs` (at most `maxRequests` in all); `request` as openLoop's. */
export async function closedLoop({ origin, request, concurrency, durationMs, pool, maxRequests = 10_000_000, drainMs = DEFAULT_DRAIN_MS, keepLatencies = false }) {
  const own = pool === undefined
  const dispatcher = pool ?? createPool(origin, concurrency)
  const connects = countConnects(dispatcher)
  const tally = createTally()
  const start = performance.now()
  const end = start + durationMs
  let issued = 0
  const worker = async () => {
    while (performance.now() < end && issued < maxRequests) {
      const next = typeof request === 'function' ? request(issued) : request
      issued++
      const sentAt = performance.now()
      tally.add(await send(dispatcher, next), sentAt)
    }
  }
  const workers = Array.from({ length: concurrency }, worker)
  await drain(workers, dispatcher, durationMs + drainMs, own)
  const elapsed = performance.now() - start
  return report(tally, { mode: 'closed', connects: connects(), concurrency, sent: issued, achievedRate: tally.ok / (elapsed / 1000), elapsedMs: elapsed }, keepLatencies)
}

/** Sends every request of `requests` at once (one connection each); latency from the common start. */
export async function burst({ origin, requests, pool, drainMs = 60_000 }) {
  const own = pool === undefined
  const dispatcher = pool ?? createPool(origin, requests.length)
  const tally = createTally()
  const start = performance.now()
  const pending = requests.map((r) => send(dispatcher, r).then((outcome) => tally.add(outcome, start)))
  await drain(pending, dispatcher, drainMs, own)
  return report(tally, { mode: 'burst', sent: requests.length, elapsedMs: performance.now() - start })
}

const SMALL = Buffer.from(JSON.stringify({ model: 'bench-model', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }))

/**
 * Small chat requests through `url` (OpenAI's route, proxy key `key`), `concurrency` at a time on kept-alive
 * connections, until `done()`: each one's ms and status. On node:http with the body sent as one buffer: `fetch`'s
 * garbage paused the generator in scavenges of up to ~40 ms, which read as the proxy's latency.
 */
export async function smallLoad(url, key, done, concurrency = 4) {
  const target = new URL('/openai/v1/chat/completions', url)
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': SMALL.length }
  const one = () =>
    new Promise((resolve) => {
      const started = performance.now()
      const req = httpRequest({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers }, (res) => {
        res.resume()
        res.once('end', () => resolve({ ms: performance.now() - started, status: res.statusCode }))
        res.once('error', () => resolve({ ms: performance.now() - started, status: 0 }))
      })
      req.once('error', () => resolve({ ms: performance.now() - started, status: 0 }))
      req.end(SMALL)
    })
  const results = []
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (!done()) results.push(await one())
      }),
    )
  } finally {
    agent.destroy()
  }
  return results
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = (name, fallback) => {
    const hit = process.argv.find((a) => a.startsWith(`--${name}=`))
    return hit === undefined ? fallback : hit.slice(name.length + 3)
  }
  const url = new URL(arg('url', 'http://127.0.0.1:8080/v1/chat/completions'))
  const headers = { 'content-type': 'application/json' }
  for (const h of process.argv.filter((a) => a.startsWith('--header='))) {
    const [name, ...value] = h.slice('--header='.length).split(':')
    headers[name.trim().toLowerCase()] = value.join(':').trim()
  }
  const body = arg('body', JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 }))
  const request = { path: `${url.pathname}${url.search}`, headers, body }
  const durationMs = Number(arg('duration', '5')) * 1000
  const closed = arg('closed', null)
  const result =
    closed === null
      ? await openLoop({ origin: url.origin, request, rate: Number(arg('rate', '1000')), durationMs })
      : await closedLoop({ origin: url.origin, request, concurrency: Number(closed), durationMs })
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
}
