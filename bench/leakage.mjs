// (d) Leakage floods, judged only by the fake upstream's ledger (what the provider would bill).
//
// Each flood sends FLOOD_REQUESTS identical requests at once against a fresh key whose daily budget
// is exactly HOLDS × c, where c is one request's cost. The requests are chosen so that the proxy's
// reservation equals what the fake bills:
// - embeddings: the proxy reserves its byte bound (body bytes × 1 µUSD) and the fake bills the body's
//   bytes as prompt tokens — the worst an upstream may bill under that bound;
// - streams: max_tokens = STREAM_TOKENS, include_usage already set (so the body travels unchanged),
//   one 1-byte token per chunk (so the meter's byte estimate equals the token count and never
//   extends); the proxy reserves bytes + STREAM_TOKENS and the fake bills exactly that.
// With a fixed c and a budget of HOLDS × c, no remainder is left for a lowered grant or an exact-count
// retry, so the budget holds exactly HOLDS requests: admitted (served at the ledger) must be within
// 2% of HOLDS, and spend at the ledger must not pass the budget (overshoot 0).
import { burst, createPool, openLoop } from './load.mjs'
import { requestPair, streamBody } from './scenarios.mjs'
import { sleep } from './procs.mjs'

const FLOOD_REQUESTS = 1000
const HOLDS = 500
const STREAM_TOKENS = 20
const EMBEDDINGS_BODY = JSON.stringify({ model: 'bench-model', input: 'The quick brown fox jumps over the lazy dog.' })

export async function leakage(ctx) {
  const floods = []
  const second = await ctx.startProxy({ name: 'proxy-2' })
  try {
    await warm(ctx, [ctx.proxy, second])
    for (let t = 0; t < ctx.trials; t++) {
      floods.push(await flood(ctx, 'embeddings', [ctx.proxy]))
      floods.push(await flood(ctx, 'stream', [ctx.proxy]))
      floods.push(await flood(ctx, 'embeddings', [ctx.proxy, second]))
      floods.push(await flood(ctx, 'stream', [ctx.proxy, second]))
    }
  } finally {
    await second.stop()
  }
  // The same stream flood against two proxies started a moment ago (a deploy or restart meeting a burst).
  for (let t = 0; t < ctx.trials; t++) {
    const cold = [await ctx.startProxy({ name: 'proxy-cold-a' }), await ctx.startProxy({ name: 'proxy-cold-b' })]
    try {
      floods.push({ ...(await flood(ctx, 'stream', cold, 'cold')), cold: true })
    } finally {
      await Promise.all(cold.map((p) => p.stop()))
    }
  }
  return { requests: FLOOD_REQUESTS, holds: HOLDS, streamTokens: STREAM_TOKENS, floods }
}

/** Brings each proxy's request paths to steady state (JIT, connections) with the big-budget key. */
async function warm(ctx, proxies) {
  await ctx.fake.reset({ chunks: STREAM_TOKENS, chunkDelayMs: 1, word: 'x' })
  for (const proxy of proxies) {
    await openLoop({ origin: proxy.url, request: requestPair(ctx.key, EMBEDDINGS_BODY, 'embeddings').proxied, rate: 500, durationMs: 1_000 })
    await openLoop({ origin: proxy.url, request: requestPair(ctx.key, streamBody(STREAM_TOKENS)).proxied, rate: 500, durationMs: 1_000 })
  }
}

async function flood(ctx, kind, proxies, label = 'warm') {
  const body = kind === 'embeddings' ? EMBEDDINGS_BODY : streamBody(STREAM_TOKENS)
  const bytes = Buffer.byteLength(body)
  const costMicros = kind === 'embeddings' ? bytes : bytes + STREAM_TOKENS
  const budgetMicros = HOLDS * costMicros
  const { key, record } = await ctx.admin.createKey(`bench-flood-${kind}-${proxies.length}`, ['openai'])
  await ctx.admin.setBudget(record.hash, { limits: { daily: budgetMicros } })
  await ctx.fake.reset({ promptTokens: 'bytes', chunks: STREAM_TOKENS, chunkDelayMs: 1, word: 'x' })

  const request = requestPair(key, body, kind === 'embeddings' ? 'embeddings' : 'chat/completions').proxied
  const storeBefore = await Promise.all(proxies.map((p) => scrapeCounters(p.adminUrl, 'loopers_store_')))
  const share = Math.ceil(FLOOD_REQUESTS / proxies.length)
  // Redis's own responsiveness during the flood, seen from here: if this stays low while the proxies'
  // reserve calls take over 500 ms, the delay is in the proxies, not in Redis.
  let pinging = true
  let pingMaxMs = 0
  const pinger = (async () => {
    while (pinging) {
      const sent = performance.now()
      await ctx.redis.ping()
      pingMaxMs = Math.max(pingMaxMs, performance.now() - sent)
      await sleep(20)
    }
  })()
  const runs = await Promise.all(
    proxies.map((proxy, i) => {
      const count = Math.min(share, FLOOD_REQUESTS - i * share)
      const pool = createPool(proxy.url, count)
      return burst({ origin: proxy.url, requests: Array(count).fill(request), pool }).finally(() => pool.close())
    }),
  )
  pinging = false
  await pinger
  // Let the fake finish writing whatever it still had in flight before reading the bill.
  for (let i = 0; i < 50 && (await ctx.fake.ledger()).openNow > 0; i++) await sleep(100)
  const ledger = await ctx.fake.ledger()
  // What the proxies' own metrics saw of the budget store during the flood: faults (each one a 503
  // budget_unavailable) and how many reserve calls took longer than 250 / 500 ms.
  const store = {}
  for (const [i, proxy] of proxies.entries()) {
    for (const [series, n] of Object.entries(await scrapeCounters(proxy.adminUrl, 'loopers_store_'))) {
      const delta = n - (storeBefore[i][series] ?? 0)
      if (delta > 0) store[series] = (store[series] ?? 0) + delta
    }
  }
  const storeErrors = Object.fromEntries(Object.entries(store).filter(([k]) => k.startsWith('loopers_store_errors_total')))
  const reserveBucket = (le) => Object.entries(store).find(([k]) => k.startsWith('loopers_store_latency_seconds_bucket') && k.includes('op="reserve"') && k.includes(`le="${le}"`))?.[1] ?? 0
  const reserves = Object.entries(store).find(([k]) => k.startsWith('loopers_store_latency_seconds_count') && k.includes('op="reserve"'))?.[1] ?? 0
  const reserveLatency = { calls: reserves, over250ms: reserves - reserveBucket('0.25'), over500ms: reserves - reserveBucket('0.5') }
  const status = await ctx.admin.status(record.hash)
  const statuses = {}
  const refusals = {}
  let transportErrors = 0
  for (const run of runs) {
    transportErrors += run.transportErrors
    for (const [s, n] of Object.entries(run.statuses)) statuses[s] = (statuses[s] ?? 0) + n
    for (const [s, text] of Object.entries(run.bodySamples)) refusals[s] ??= text
  }
  const admitted = ledger.requests
  const overshootMicros = Math.max(0, ledger.spendMicros - budgetMicros)
  const result = {
    kind,
    proxies: proxies.length,
    requests: FLOOD_REQUESTS,
    costMicros,
    budgetMicros,
    holds: HOLDS,
    admittedAtLedger: admitted,
    spendAtLedgerMicros: ledger.spendMicros,
    overshootMicros,
    admittedRatio: admitted / HOLDS,
    clientStatuses: statuses,
    refusalSamples: refusals,
    storeErrors,
    reserveLatency,
    redisPingMaxMs: pingMaxMs,
    transportErrors,
    streamsAborted: ledger.streamsAborted,
    proxyCountersDaily: { spentMicros: status?.daily.spentMicros ?? null, heldMicros: status?.daily.heldMicros ?? null },
    pass: overshootMicros === 0 && admitted >= Math.ceil(0.98 * HOLDS),
  }
  ctx.log(
    `  flood ${kind} × ${proxies.length} proxy (${label}): admitted ${admitted}/${HOLDS}, ledger ${ledger.spendMicros}/${budgetMicros} µUSD, overshoot ${overshootMicros}, statuses ${JSON.stringify(statuses)}, store errors ${JSON.stringify(storeErrors)}, reserves over 500 ms ${reserveLatency.over500ms} of ${reserveLatency.calls}, Redis PING max ${Math.round(pingMaxMs)} ms`,
  )
  return result
}

/** Values of the proxy's Prometheus counters whose name starts with `prefix`, by their full series text. */
async function scrapeCounters(adminUrl, prefix) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const out = {}
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix)) continue
    const at = line.lastIndexOf(' ')
    out[line.slice(0, at)] = Number(line.slice(at + 1))
  }
  return out
}
