// Loopers benchmark: `npm run bench` (builds first), or `node bench/run.mjs` after `npm run build`.
//   --quick            short smoke run (1 trial, short runs)
//   --only=a,b,…       scenarios: latency (a), logging (a, info level), streams (b), peak (c), leakage (d: OpenAI
//                      floods), floods (d: every other provider's), countStall (d), memory (e),
//                      stores (f: the embedded SQLite store beside Redis), loopGuard (g: the loop guard's CPU, ~4-6 min),
//                      agent (h: CPU per request with a coding agent's 32 and 128 KiB requests, beside the floor)
//   --trials=N         trials per latency/throughput scenario (default 3, quick 1; latency (a) at 500 and 1,000 req/s: at least 5)
//   --profile          run the main proxy under `node --cpu-prof` and add its hot functions to the report
//   --out=NAME         write bench/results/NAME.json and NAME.md (default latest)
//   --no-wait          do not wait for a quiet proxy core before measured trials (see quiet() in scenarios.mjs)
//   --node-options=…   extra node flags for every proxy the bench starts, space-separated (A/B runs of V8 settings)
//   --cpu-slices=N, --cpu-slice-ms=MS  the interleaved CPU phase after each latency trial (see CPU_SLICES in scenarios.mjs)
//   --aa=proxy|floor   A/A control: a second proxy (proxy) or a second floor (floor) takes the other side's slot, so every
//                      ratio to the floor reads the measurement's own spread (same build both sides: 1.00 with no noise)
// Starts redis-server, a fake OpenAI upstream and `node dist/cli.js serve` on 127.0.0.1 only; the proxy
// is pinned to core 0 and everything else (this process included) to core 1 when taskset allows.
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { countStall } from './count-stall.mjs'
import { leakage } from './leakage.mjs'
import { loopGuard } from './loop-guard.mjs'
import { providerFloods } from './provider-floods.mjs'
import { detectPinning, environment, OTHERS_CORE, pinSelf, ROOT, startFake, startFloor, startProxy, startRedis } from './procs.mjs'
import { watchRedis } from './pile-up.mjs'
import { summarizeProfile } from './profile.mjs'
import { figures, renderMarkdown } from './report.mjs'
import { memory } from './memory.mjs'
import { agentRequests, infoLogging, latency, peak, streams } from './scenarios.mjs'
import { stores } from './stores.mjs'

const SCENARIOS = { latency, logging: infoLogging, streams, peak, leakage, floods: providerFloods, countStall, memory, stores, loopGuard, agent: agentRequests }
const ALIASES = { a: ['latency', 'logging'], b: ['streams'], c: ['peak'], d: ['leakage', 'floods', 'countStall'], e: ['memory'], f: ['stores'], g: ['loopGuard'], h: ['agent'] }
const LATENCY_BUDGET = 10_000_000_000_000 // µUSD: a daily limit far above anything the bench spends, so enforcement runs but never refuses

const log = (line) => process.stdout.write(`${line}\n`)
const args = parseArgs(process.argv.slice(2))
const quick = args.quick === true
const trials = Number(args.trials ?? (quick ? 1 : 3))
const selected = selectScenarios(args.only)
const outName = typeof args.out === 'string' ? args.out : 'latest'
const proxyNodeOptions = typeof args['node-options'] === 'string' ? args['node-options'].split(/\s+/).filter(Boolean) : []
const cpuSlices = args['cpu-slices'] === undefined ? {} : { slices: Number(args['cpu-slices']) }
if (args['cpu-slice-ms'] !== undefined) cpuSlices.sliceMs = Number(args['cpu-slice-ms'])
const aa = args.aa === undefined ? null : String(args.aa)
if (aa !== null && aa !== 'proxy' && aa !== 'floor') {
  log(`bench: --aa takes proxy or floor, not ${aa}`)
  process.exit(2)
}

// The whole run is bounded: past this, everything is killed (the exit handler of procs.mjs). A full run took ~17.5
// minutes before the interleaved CPU phases (~50 s a latency series) and the collections before peak and agent runs,
// ~20.7 with them; the loop guard's rows now serve ~8 times the requests (3-5 minutes more).
const watchdog = setTimeout(
  () => {
    log(`bench: over its time limit; stopping`)
    process.exit(1)
  },
  (quick ? 8 : 30) * 60_000,
)
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130))

let dist
try {
  dist = {
    redis: await import('../dist/budget/redis/redis-client.js'),
    admin: await import('../dist/budget/redis/admin.js'),
  }
} catch (error) {
  log(`bench: cannot load dist/ (${error.message}); run \`npm run build\` first, or use \`npm run bench\``)
  process.exit(2)
}

const started = performance.now()
const startedAt = new Date().toISOString()
const pinning = detectPinning()
if (pinning.used) pinSelf(OTHERS_CORE)
const env = environment(pinning)
log(`bench (${quick ? 'quick' : 'full'}): ${selected.join(', ')}; ${trials} trial(s); taskset ${pinning.used ? 'used' : 'not used'} (${pinning.reason})`)

const dir = mkdtempSync(join(tmpdir(), 'loopers-bench-'))
const profileDir = args.profile === true ? join(ROOT, 'bench/results/profiles') : null
const results = {}
let redis = null
let fake = null
let proxy = null
let floor = null
// --aa: the second process of the same kind, in the floor's slot (aa=proxy) or the proxy's (aa=floor).
let twin = null
let client = null
let failed = false
let ctx = null
// On a shared machine, measured trials first wait (bounded, this much in all) for a quiet proxy core.
const initialQuietBudgetMs = args['no-wait'] === true ? 0 : quick ? 10_000 : 60_000
try {
  redis = await startRedis({ pin: pinning.used, dir })
  // Every long collection pause of the fake, the proxy and the floor is recorded (bench/gc-record.mjs) for the latency runs.
  fake = await startFake({ pin: pinning.used, gcFile: join(dir, 'fake.gc') })
  const startProxyFor = (opts = {}) => startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, ...opts, nodeOptions: [...proxyNodeOptions, ...(opts.nodeOptions ?? [])] })
  proxy = await startProxyFor({ name: 'proxy', cpuProfDir: profileDir, gcFile: join(dir, 'proxy.gc') })
  // The floor: the same store round trips (two EVALSHA) on a bare Fastify + undici pass-through.
  floor = await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, gcFile: join(dir, 'floor.gc') })
  if (aa === 'proxy') twin = await startProxyFor({ name: 'proxy-aa', gcFile: join(dir, 'proxy-aa.gc') })
  if (aa === 'floor') twin = await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, gcFile: join(dir, 'floor-aa.gc') })
  client = dist.redis.createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: 5_000 })
  await ready(client)
  await watchRedis(client)
  const admin = dist.admin.createKeyAdmin(client)
  const { key, record } = await admin.createKey('bench-latency', ['openai'])
  await admin.setBudget(record.hash, { limits: { daily: LATENCY_BUDGET }, loopLimit: 0 })
  const sides = aa === 'proxy' ? { proxy, floor: twin } : aa === 'floor' ? { proxy: twin, floor } : { proxy, floor }
  ctx = { quick, trials, pin: pinning.used, redisUrl: redis.url, redisPid: redis.pid, quietBudgetMs: initialQuietBudgetMs, fake, ...sides, cpuSlices, redis: client, admin, key, startProxy: startProxyFor, dir, log }
  for (const name of selected) {
    log(`${name}…`)
    try {
      results[name] = await SCENARIOS[name](ctx)
    } catch (error) {
      failed = true
      results[name] = { error: error.message }
      log(`  ${name} failed: ${error.stack}`)
    }
  }
} catch (error) {
  failed = true
  log(`bench: setup failed: ${error.stack}`)
} finally {
  await proxy?.stop() // graceful: also writes the CPU profile
  await floor?.stop()
  await twin?.stop()
  client?.disconnect()
  await fake?.stop()
  await redis?.stop()
}

const profile = profileDir === null ? null : newestProfile(profileDir)
const rows = figures(results)
const report = {
  mode: quick ? 'quick' : selected.length === Object.keys(SCENARIOS).length ? 'full' : `only ${selected.join(',')}`,
  startedAt,
  durationS: (performance.now() - started) / 1000,
  env,
  ...(proxyNodeOptions.length > 0 ? { proxyNodeOptions } : {}),
  ...(aa === null ? {} : { aa }),
  ...(Object.keys(cpuSlices).length === 0 ? {} : { cpuSlices }),
  trials,
  figures: rows,
  quietWaitedS: ctx === null ? 0 : (initialQuietBudgetMs - ctx.quietBudgetMs) / 1000,
  results,
  profile,
}
const notes = methodNotes(pinning)
const markdown = renderMarkdown({ ...report, figures: rows, notes })
writeFileSync(join(ROOT, `bench/results/${outName}.json`), `${JSON.stringify(report, null, 2)}\n`)
writeFileSync(join(ROOT, `bench/results/${outName}.md`), markdown)
log(`\n${markdown}`)
log(`wrote bench/results/${outName}.json and bench/results/${outName}.md`)
const missed = rows.filter((r) => r.status === 'MISS').length
if (missed > 0) log(`${missed} figure(s) missed their target`)
if (failed) log(`logs of the failed run are kept in ${dir}`)
else rmSync(dir, { recursive: true, force: true })
clearTimeout(watchdog)
process.exit(failed ? 1 : 0)

function parseArgs(argv) {
  const out = {}
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    if (match === null) {
      log(`bench: unknown argument ${arg} (see the top of bench/run.mjs)`)
      process.exit(2)
    }
    out[match[1]] = match[2] ?? true
  }
  return out
}

function selectScenarios(only) {
  if (only === undefined || only === true) return Object.keys(SCENARIOS)
  const names = String(only)
    .split(',')
    .flatMap((n) => ALIASES[n.trim()] ?? [n.trim()])
  for (const n of names) {
    if (!(n in SCENARIOS)) {
      log(`bench: unknown scenario '${n}'; choose from ${Object.keys(SCENARIOS).join(', ')} (or a–e)`)
      process.exit(2)
    }
  }
  return Object.keys(SCENARIOS).filter((n) => names.includes(n))
}

/** Resolves once a client without an offline queue has connected (it rejects commands until then). */
function ready(redisClient) {
  if (redisClient.status === 'ready') return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis client not ready within 5 s')), 5_000)
    redisClient.once('ready', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

function newestProfile(profilesDir) {
  try {
    const files = readdirSync(profilesDir).filter((f) => f.endsWith('.cpuprofile'))
    if (files.length === 0) return null
    const newest = files.map((f) => join(profilesDir, f)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
    return summarizeProfile(newest)
  } catch (error) {
    log(`bench: cannot read the CPU profile: ${error.message}`)
    return null
  }
}

function methodNotes(pin) {
  return [
    `Pinning: ${pin.used ? `taskset, ${pin.reason}` : `none (${pin.reason}); every process shares all cores`}. The machine is shared, so absolute figures move between runs; the spread column shows by how much.`,
    'Shared machine: before each measured trial the bench waits (at most 10 s a trial, 60 s a run) until other processes use under 20% of the proxy core; rows whose proxied runs still saw 20% or more of that core taken by others are marked ⚠ noisy.',
    'Added latency = proxied − direct at the same percentile, in the same trial, with the same request sent straight to the fake upstream; direct and proxied alternate order between trials.',
    'Connections (a): each measured latency run starts on a new client pool whose 64 connections were opened just before it by 64 requests at once, on every side alike (the servers close a connection idle 72 s; one pool kept for the whole series let each side\'s warm-up connections lapse at a different trial). More than 64 requests in flight open new connections during the run, counted per side with the upstream hop\'s (the fake\'s accepted connections).',
    'Pile-ups (a): during each run the bench samples the core wait of the side\'s main thread and, for the proxy and the floor, of Redis\'s and the fake upstream\'s (/proc/<pid>/task/<pid>/schedstat every 10 ms), Redis\'s own latency events of 1 ms or more (LATENCY LATEST, SLOWLOG, reset before each run) and the load generator\'s lateness in sending; a run where any of those main threads waited ≥ 10 ms for a core within 100 ms, Redis recorded an event ≥ 10 ms, or the generator sent a request ≥ 10 ms late, each also at least twice the least the trial\'s other runs saw of the same thread (the direct run\'s main thread is the fake\'s), is flagged a pile-up beside the figures: on a 2-core host Redis and the fake waited 14-33 ms for a core in every run alike, and a stall every side saw is not one that tells a run apart. Flagged runs stay in every judged figure; a second p99 ratio over the trials without one is shown, unjudged, when any was flagged.',
    'Collections (a): the proxy, the floor and the fake upstream alike record each collection pause of 1 ms or more (bench/gc-record.mjs, preloaded); each run lists its side\'s longest and every mark-compact with its second into the run, beside when the run\'s 10 slowest requests were due. A side\'s own collection is its own stall and never flags a pile-up. Before each measured latency and time-to-first-byte run, the fake upstream and the load generator (never a side measured) each run one full collection (bench/collect.mjs): the fake, which serves every side, reached its first mark-compact under load after ~75,000 of the scenario\'s requests, inside trial 5 at 500 req/s, and stalled whichever side ran then.',
    'Open loop: request i is due at start + i/rate; latency runs from that scheduled time to the last body byte, so queueing anywhere (including in the load generator) is counted, never hidden.',
    'Quiet periods: a side (proxy or floor) that served nothing for 25 s or more before its measured open-loop run is warmed again first, unmeasured (past 30 s of quiet the proxy\'s idle release deoptimizes its request path; bench/idle-retier.mjs measures what that costs the requests after a quiet period).',
    'Floor: bench/floor.mjs, a bare Fastify + undici pass-through on the proxy core that makes the same store round trips per request as Loopers (two EVALSHA on Redis: one before forwarding, one after the answer; on the embedded store two small BEGIN IMMEDIATE transactions through node:sqlite). Every floor (this one and the plain relay) runs with the node flags and environment of the proxy\'s launcher, as the proxy does. Ratios to it are per trial, floor and proxy measured back to back in the same run.',
    'CPU per request ÷ floor\'s (a): after each trial\'s latency runs the proxy and the floor serve the same open loop, first one slice of 500 ms each unmeasured (the latency runs leave one side just loaded and the other idle), then 10 slices of 500 ms each, alternating (proxy, floor, proxy, floor, …; the first side alternating between trials; in mirrored pairs, as before, each side waited two slices, 1 s, the proxy\'s lull, every other time), each side\'s CPU (every thread, schedstat) counted over its own slices and the first 250 ms of the slice after each (not between: a side idle for two slices meets the proxy\'s 1 s lull release there, a collection continuous load never pays), divided by the requests it served; the whole phase\'s ratio stays beside it, unjudged. The ratio of each side\'s own 5 s run stays beside it, unjudged: in A/A runs (`--aa=proxy`, `--aa=floor`) it spread 0.62-1.55 where the interleaved ratio spread 0.82-1.21 (mirrored pairs, no lead-in; proxy/proxy 0.72-1.21 and floor/floor 0.88-1.06 a session later); alternating after a lead-in, one A/A run of 10 trials each read proxy/proxy 0.93-1.14 (median 1.02) and floor/floor 0.86-1.16 (median 0.99) on a host at load ~11 on 2 cores, where each side\'s own runs read 0.58-1.27: two processes of one build differ by a few percent for a whole run (proxy/proxy 1.006-1.091 in all six phases of one bench/interleave-bias.mjs run), which no order within a run undoes. A slice\'s start from idle and its drain cost both sides alike (a 500 ms slice read 3.7 % above its steady state for the proxy, 2.8 % for the floor: bench/interleave-bias.mjs), within 1 % on a ratio.',
    'Every proxied request goes through budget enforcement: the key has a daily limit (far above what the bench spends), so each request runs the reserve and settle scripts in Redis.',
    'Prices (bench/prices.json): bench-model costs 1 USD per 1M tokens in and out, so 1 token = 1 µUSD.',
    'CPU per request: on-CPU time of every thread of the process from /proc/<pid>/task/*/schedstat (nanoseconds; /proc/<pid>/stat counts 10 ms ticks, too coarse for a core shared with other processes). Per chunk: utime + stime from /proc/<pid>/stat (the user/system split), CPU(K streams × 1000 chunks) − CPU(K × 10), divided by the chunk difference; chunks 2 ms apart so each arrives on its own.',
    'Leakage: each flood sends 1,000 identical requests at once against a fresh key whose daily budget is exactly 500 × one request\'s cost at the provider\'s counts: the fake bills the prompt\'s tiktoken count (not its bytes, the proxy\'s cheap bound), streams with max_tokens = 20, the fake\'s realistic answer (1-4 tokens a delta) up to the cap, include_usage set; one request\'s cost is the fake\'s own bill for it. The budget holds exactly 500 requests. Judged only by the fake upstream\'s ledger: spend must not pass the budget, and admitted must be ≥ 98% of 500. Common case: the proxy\'s CPU per small request far from any limit.',
    'Floods of the other providers (bench/provider-floods.mjs): Azure, Mistral, Anthropic, Gemini, Bedrock Converse, streamed and not, 1,000 requests at once against a budget for exactly 500 at the provider\'s counts (bench/fake-providers.mjs: OpenAI-family text with tiktoken, Claude/Gemini/Mistral text with the billing stand-in of bench/fake-billing.mjs, counting endpoints answering what the call then bills), one and two warmed proxies; targets ≥ 98% (Azure), ≥ 90% (the others), overshoot 0 at the ledger, no 503.',
    'Count stall: small requests\' p99 (4 at a time) while a 10 MiB prompt is counted exactly, against their p99 just before (target: grows ≤ 10 ms, no 503); the proxy for it is its own, started with bench/loop-delay.mjs, which records each block of its event loop over 5 ms (longest block while the big request was read, parsed, counted and refused).',
    'Ledger: a request is billed its prompt when the fake starts answering; an output token counts when its chunk is handed to a socket that is still open.',
    'Agent requests (h): a coding agent\'s request (bench/agent-body.mjs: system prompt, a dozen tools, a conversation of tool calls and results) of 32 and 128 KiB, closed loop 16 at a time, through the proxy and the floor alternating within each trial, after both served 12,000 of them; the floor forwards the body unread, the proxy reads it (model, limits, the input estimate that sizes the reservation).',
    'Loop guard (bench/loop-guard.mjs): CPU per request of the proxy and, on Redis, redis-server (schedstat, ns), guard on (the default) ÷ off (`--loop-limit 0`), for a 24-message agent conversation whose every request is a new step, 8 at a time, one proxy serving a guard-on and a guard-off key; within each trial on and off alternate in mirrored pairs of slices of 24 requests (on off off on …), 2,000 requests a key a trial, each key\'s CPU counted over its own slices; median of the per-trial ratios. Worst case: one conversation past its 256 steps (every new step recorded, the scope trimmed); common case: conversations of 40 requests. The A/A control (both keys guard off) shows the noise the ratio carries: on a host at load 10-14 on 2 cores its trials read −10 % to +10 % (medians −3.3 % and +0.4 % in two runs on Redis), where the method before (slices of 40, 240 requests a key a trial) read −21 % to +45 % (medians −7.0 % to +7.9 %), so a figure within ~4 % of its target is not resolved by one run.',
    'Memory (bench/memory.mjs): VmRSS from /proc/<pid>/status of a fresh proxy, and in the same run of the floor (Fastify + undici + two EVALSHA) and the plain relay (node:http + undici), both floors holding every stream open upstream at once as Loopers does: right after start; idle 3 s and 60 s (quick: 10 s) after the last of 20 requests (10 plain, 10 streamed, one at a time); the peak while 1,000 streams are open at once (sampled every 100 ms); and 45 s (quick: 5 s) or more after those streams ended (each target holds its streams in turn, all are read 45 s after the last ended) (Loopers returns a burst\'s memory after 30 s without requests, LOOPERS_IDLE_RELEASE_MS).',
  ]
}
