// (d) Leakage floods, judged only by the fake upstream's ledger (what the provider would bill).
//
// Each flood sends FLOOD_REQUESTS identical requests at once against a fresh key whose daily budget
// is exactly HOLDS × c, where c is one request's cost at the provider's own counts: the fake bills the
// prompt's tiktoken count (as OpenAI does), not its bytes, so the proxy's cheap byte bound (~4× the
// count for English) does not fit near the limit and admission depends on its exact counting:
// - embeddings: c = the input's tiktoken count;
// - streams: max_tokens = STREAM_TOKENS, include_usage already set, the fake's realistic answer (1-4
//   tokens a delta) up to the cap; c = the chat count of the messages + the tokens the fake's stream bills
//   (computed by the fake's own streamDeltas: "x" × 20 bills 3 tokens, not 20, so a budget sized with 20
//   held three times the requests it claimed to).
// The budget holds exactly HOLDS requests: admitted (served at the ledger) must be at least 98% of
// HOLDS, and spend at the ledger must not pass the budget (overshoot 0).
// (The count stall is its own scenario: bench/count-stall.mjs.)
// commonCase: the proxy's CPU per small request far from any limit (the path with no counting at all).
import { burst, createPool, openLoop, smallLoad } from './load.mjs'
import { DEFAULT_OPTIONS, streamDeltas } from './fake-upstream.mjs'
import { requestPair, streamBody } from './scenarios.mjs'
import { cpuSeconds, sleep } from './procs.mjs'
import { countChatTokens, countEmbeddingTokens } from '../dist/tokens/tiktoken.js'

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
  const commonCase = await measureCommonCase(ctx)
  return { requests: FLOOD_REQUESTS, holds: HOLDS, streamTokens: STREAM_TOKENS, floods, commonCase }
}

/** The proxy's CPU per small request far from any limit: the common path, with no counting. */
async function measureCommonCase(ctx) {
  await ctx.fake.reset({ promptTokens: 12, completionTokens: 5 })
  const forMs = (ms) => {
    const until = performance.now() + ms
    return () => performance.now() >= until
  }
  await smallLoad(ctx.proxy.url, ctx.key, forMs(1_000), 8)
  const trials = []
  for (let t = 0; t < ctx.trials; t++) {
    const before = cpuSeconds(ctx.proxy.pid)
    const results = await smallLoad(ctx.proxy.url, ctx.key, forMs(3_000), 8)
    const cpu = cpuSeconds(ctx.proxy.pid) - before
    const ok = results.filter((r) => r.status === 200).length
    trials.push({ requests: ok, proxyCpuUsPerRequest: ok > 0 ? (cpu * 1e6) / ok : null })
    ctx.log(`  common case trial ${t + 1}: ${ok} requests, proxy ${ok > 0 ? ((cpu * 1e6) / ok).toFixed(0) : '-'} µs CPU per request`)
  }
  return { trials }
}

/** Brings each proxy's request paths to steady state (JIT, connections) with the big-budget key. */
async function warm(ctx, proxies) {
  await ctx.fake.reset({ chunks: STREAM_TOKENS, chunkDelayMs: 1 })
  for (const proxy of proxies) {
    await openLoop({ origin: proxy.url, request: requestPair(ctx.key, EMBEDDINGS_BODY, 'embeddings').proxied, rate: 500, durationMs: 1_000 })
    await openLoop({ origin: proxy.url, request: requestPair(ctx.key, streamBody(STREAM_TOKENS)).proxied, rate: 500, durationMs: 1_000 })
  }
}

async function flood(ctx, kind, proxies, label = 'warm') {
  const body = kind === 'embeddings' ? EMBEDDINGS_BODY : streamBody(STREAM_TOKENS)
  // What OpenAI bills as the prompt: the tiktoken count of the input (of the messages, for chat).
  const promptTokens = kind === 'embeddings' ? countEmbeddingTokens(JSON.parse(body), 'bench-model') : countChatTokens(JSON.parse(body), 'bench-model')
  const streamed = streamDeltas({ ...DEFAULT_OPTIONS, chunks: STREAM_TOKENS }, 'bench-model', STREAM_TOKENS).reduce((n, d) => n + d.tokens, 0)
  const costMicros = kind === 'embeddings' ? promptTokens : promptTokens + streamed
  const budgetMicros = HOLDS * costMicros
  const { key, record } = await ctx.admin.createKey(`bench-flood-${kind}-${proxies.length}`, ['openai'])
  await ctx.admin.setBudget(record.hash, { limits: { daily: budgetMicros }, loopLimit: 0 })
  await ctx.fake.reset({ promptTokens, chunks: STREAM_TOKENS, chunkDelayMs: 1 })

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
