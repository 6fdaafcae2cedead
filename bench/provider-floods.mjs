// (d) Floods for every other provider (OpenAI's are in leakage.mjs), judged only by the fake upstream's
// ledger: FLOOD_REQUESTS identical requests (streamed, and not) at once against a fresh key whose daily budget is
// exactly HOLDS × c, where c is one request's bill at the provider's own counts (bench/fake-providers.mjs:
// prompt and answer as the family bills them, which is not how the proxy bounds or estimates them).
// Targets: admitted ≥ 98% of HOLDS (Azure) or ≥ 90% (Mistral, Anthropic, Gemini, Bedrock), overshoot 0.
// One proxy and two proxies sharing Redis, both warmed first (JIT, connections, encoders: as leakage.mjs
// does for OpenAI). Streams: 1-4 token deltas 1 ms apart, up to the cap.
import { burst, createPool, openLoop } from './load.mjs'
import { mistralChat, providerRoute } from './fake-providers.mjs'
import { DEFAULT_OPTIONS } from './fake-upstream.mjs'
import { sleep } from './procs.mjs'

const FLOOD_REQUESTS = 1000
const HOLDS = 500
/** Output tokens each request asks for (and the fake's answer fills). */
const OUT = 20
const PROMPT =
  'Summarise the following meeting notes in three bullet points, keeping names and dates: the team agreed to ship the ' +
  'billing migration on Thursday, Ana owns the rollback plan, and the Zürich office joins the review at 14:00.'

/** Each provider's request: proxy path, auth header, body, and the upstream route the fake answers it on. */
const FLOODS = [
  {
    provider: 'azure',
    target: 0.98,
    path: '/azure/openai/deployments/bench-gpt4o/chat/completions?api-version=2024-10-21',
    headers: (key) => ({ 'api-key': key }),
    body: { max_tokens: OUT, messages: [{ role: 'user', content: PROMPT }] },
    upstream: () => providerRoute('/openai/deployments/bench-gpt4o/chat/completions'),
  },
  {
    provider: 'mistral',
    target: 0.9,
    path: '/mistral/v1/chat/completions',
    headers: (key) => ({ authorization: `Bearer ${key}` }),
    body: { model: 'mistral-bench', max_tokens: OUT, messages: [{ role: 'user', content: PROMPT }] },
    upstream: () => ({ kind: 'mistral', handle: mistralChat }),
  },
  {
    provider: 'anthropic',
    target: 0.9,
    path: '/anthropic/v1/messages',
    headers: (key) => ({ 'x-api-key': key, 'anthropic-version': '2023-06-01' }),
    body: { model: 'claude-bench', max_tokens: OUT, messages: [{ role: 'user', content: PROMPT }] },
    upstream: () => providerRoute('/v1/messages'),
  },
  {
    provider: 'gemini',
    target: 0.9,
    path: '/gemini/v1beta/models/gemini-bench:generateContent',
    headers: (key) => ({ 'x-goog-api-key': key }),
    body: { contents: [{ role: 'user', parts: [{ text: PROMPT }] }], generationConfig: { maxOutputTokens: OUT } },
    streamPath: '/gemini/v1beta/models/gemini-bench:streamGenerateContent?alt=sse',
    upstream: (stream) => providerRoute(`/v1beta/models/gemini-bench:${stream ? 'streamGenerateContent' : 'generateContent'}`),
  },
  {
    provider: 'bedrock',
    target: 0.9,
    path: '/bedrock/model/anthropic.claude-bench-v1%3A0/converse',
    headers: (key) => ({ authorization: `Bearer ${key}` }),
    body: { messages: [{ role: 'user', content: [{ text: PROMPT }] }], inferenceConfig: { maxTokens: OUT } },
    streamPath: '/bedrock/model/anthropic.claude-bench-v1%3A0/converse-stream',
    upstream: (stream) => providerRoute(`/model/anthropic.claude-bench-v1%3A0/${stream ? 'converse-stream' : 'converse'}`),
  },
]

export async function providerFloods(ctx) {
  const env = (url) => ({
    LOOPERS_AZURE_ENDPOINT: url,
    LOOPERS_AZURE_API_KEY: 'azure-bench-upstream',
    LOOPERS_MISTRAL_BASE_URL: url,
    LOOPERS_MISTRAL_API_KEY: 'mistral-bench-upstream',
    LOOPERS_ANTHROPIC_BASE_URL: url,
    LOOPERS_ANTHROPIC_API_KEY: 'anthropic-bench-upstream',
    LOOPERS_GEMINI_BASE_URL: url,
    LOOPERS_GEMINI_API_KEY: 'gemini-bench-upstream',
    LOOPERS_BEDROCK_BASE_URL: url,
    LOOPERS_BEDROCK_API_KEY: 'bedrock-bench-upstream',
  })
  const proxies = [await ctx.startProxy({ name: 'proxy-floods-a', extraEnv: env(ctx.fake.url) }), await ctx.startProxy({ name: 'proxy-floods-b', extraEnv: env(ctx.fake.url) })]
  const floods = []
  try {
    await warm(ctx, proxies)
    for (let t = 0; t < ctx.trials; t++) {
      for (const spec of FLOODS) {
        for (const stream of [false, true]) {
          floods.push(await flood(ctx, spec, stream, proxies.slice(0, 1)))
          floods.push(await flood(ctx, spec, stream, proxies))
        }
      }
    }
  } finally {
    await Promise.all(proxies.map((p) => p.stop()))
  }
  return { requests: FLOOD_REQUESTS, holds: HOLDS, outputTokens: OUT, floods }
}

/** Brings each proxy's paths for every provider, streamed and not, to steady state with a key far from its limit. */
async function warm(ctx, proxies) {
  await ctx.fake.reset({ completionTokens: OUT, chunks: OUT, chunkDelayMs: 1 })
  const { key, record } = await ctx.admin.createKey('bench-floods-warm', FLOODS.map((f) => f.provider))
  await ctx.admin.setBudget(record.hash, { limits: { daily: 1_000_000_000_000 }, loopLimit: 0 })
  for (const proxy of proxies) {
    for (const spec of FLOODS) {
      for (const stream of [false, true]) {
        const body = JSON.stringify(stream ? { ...spec.body, stream: true } : spec.body)
        const request = { path: stream ? (spec.streamPath ?? spec.path) : spec.path, headers: { 'content-type': 'application/json', ...spec.headers(key) }, body }
        await openLoop({ origin: proxy.url, request, rate: 200, durationMs: 500 })
      }
    }
  }
}

/** What one request bills at the provider's counts: what the fake's own route bills for this body. */
function billOf(route, body, options) {
  const answer = route.handle(structuredClone(body), options)
  if (answer.stream === undefined) return answer.bill
  return [answer.prompt, answer.stream.frames.reduce((n, f) => n + f.tokens, 0)]
}

async function flood(ctx, spec, stream, proxies) {
  const fakeOptions = { completionTokens: OUT, chunks: OUT, chunkDelayMs: 1 }
  await ctx.fake.reset(fakeOptions)
  const body = stream ? { ...spec.body, stream: true } : spec.body
  const upstream = spec.upstream(stream)
  const [inputTokens, outputTokens] = billOf(upstream, body, { ...DEFAULT_OPTIONS, ...fakeOptions })
  const costMicros = inputTokens + outputTokens
  const budgetMicros = HOLDS * costMicros
  const { key, record } = await ctx.admin.createKey(`bench-flood-${spec.provider}-${stream ? 'stream' : 'plain'}-${proxies.length}`, [spec.provider])
  await ctx.admin.setBudget(record.hash, { limits: { daily: budgetMicros }, loopLimit: 0 })
  const request = { path: stream ? (spec.streamPath ?? spec.path) : spec.path, headers: { 'content-type': 'application/json', ...spec.headers(key) }, body: JSON.stringify(body) }
  const share = Math.ceil(FLOOD_REQUESTS / proxies.length)
  const runs = await Promise.all(
    proxies.map((proxy, i) => {
      const count = Math.min(share, FLOOD_REQUESTS - i * share)
      const pool = createPool(proxy.url, count)
      return burst({ origin: proxy.url, requests: Array(count).fill(request), pool }).finally(() => pool.close())
    }),
  )
  // Let the fake finish writing whatever it still had in flight before reading the bill.
  for (let i = 0; i < 50 && (await ctx.fake.ledger()).openNow > 0; i++) await sleep(100)
  const ledger = await ctx.fake.ledger()
  const statuses = {}
  const refusals = {}
  let transportErrors = 0
  for (const run of runs) {
    transportErrors += run.transportErrors
    for (const [s, n] of Object.entries(run.statuses)) statuses[s] = (statuses[s] ?? 0) + n
    for (const [s, text] of Object.entries(run.bodySamples)) refusals[s] ??= text
  }
  const admitted = ledger.byKind[upstream.kind] ?? 0
  const overshootMicros = Math.max(0, ledger.spendMicros - budgetMicros)
  const result = {
    provider: spec.provider,
    stream,
    proxies: proxies.length,
    requests: FLOOD_REQUESTS,
    inputTokens,
    outputTokens,
    costMicros,
    budgetMicros,
    holds: HOLDS,
    target: spec.target,
    admittedAtLedger: admitted,
    spendAtLedgerMicros: ledger.spendMicros,
    overshootMicros,
    admittedRatio: admitted / HOLDS,
    clientStatuses: statuses,
    refusalSamples: refusals,
    transportErrors,
    streamsAborted: ledger.streamsAborted,
    pass: overshootMicros === 0 && admitted >= Math.ceil(spec.target * HOLDS) && (statuses[503] ?? 0) === 0,
  }
  ctx.log(
    `  flood ${spec.provider} ${stream ? 'streams' : 'plain'} × ${proxies.length} prox${proxies.length === 1 ? 'y' : 'ies'}: admitted ${admitted}/${HOLDS} (target ≥ ${Math.round(spec.target * 100)}%), ledger ${ledger.spendMicros}/${budgetMicros} µUSD (one request ${inputTokens} in + ${outputTokens} out), overshoot ${overshootMicros}, statuses ${JSON.stringify(statuses)}`,
  )
  return result
}
