// Latency, streaming and throughput scenarios (memory: bench/memory.mjs). Each proxied run is paired with the same load
// sent straight to the fake upstream in the same trial; "added" is proxied − direct per percentile.
import { statSync } from 'node:fs'
import { agentBody } from './agent-body.mjs'
import { burst, closedLoop, createPool, openLoop, primeConnections } from './load.mjs'
import { collectGarbage } from './collect.mjs'
import { interleave } from './interleave.mjs'
import { gcPausesIn, readRedisStalls, resetRedisStalls, trialPileUps, watchRun } from './pile-up.mjs'
import { coreBusy, coreTimes, cpuSeconds, cpuTimes, sleep, startRelayFloor, waitForQuiet } from './procs.mjs'

const CHAT_BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })

/** Bodies of streamed chat requests; without max_tokens the fake's `chunks` decides the length. */
export function streamBody(maxTokens = null) {
  return JSON.stringify({
    model: 'bench-model',
    messages: [{ role: 'user', content: 'Tell me a story.' }],
    stream: true,
    stream_options: { include_usage: true },
    ...(maxTokens === null ? {} : { max_tokens: maxTokens }),
  })
}

/** The same request to the proxy (with a Loopers key) and straight to the fake upstream. */
export function requestPair(key, body, operation = 'chat/completions') {
  const headers = (auth) => ({ 'content-type': 'application/json', authorization: `Bearer ${auth}` })
  return {
    proxied: { path: `/openai/v1/${operation}`, headers: headers(key), body },
    direct: { path: `/v1/${operation}`, headers: headers('sk-bench-upstream'), body },
  }
}

/**
 * Before any measured trial, each process serves this many requests back to back (closed loop, at most
 * JIT_WARM_MAX_MS): V8 tiers a process's hot code up to TurboFan over its first ~9,000-10,500 such requests
 * (the proxy's and the floor's alike, counted with `node bench/perf-profile.mjs --curve`), and CPU per request
 * during that warm-up reads ~15-40 % above what the same process costs after it. A latency trial at 500 req/s
 * that began after a 1,500-request warm-up measured the tier-up, not the proxy.
 */
const JIT_WARM_REQUESTS = 12_000
const JIT_WARM_MAX_MS = 15_000

/**
 * Then each serves an open loop at the first measured rate this long: the switch from a closed loop compiles
 * paths a closed loop never takes (a Redis command's timeout, the client's send path; each request on its own
 * wake-up), and the proxy ran 14-16 TurboFan jobs (50-54 ms of CPU) in the first 5 s after it against the
 * floor's 3-9 (`node bench/open-curve.mjs`): with 3 s, the first trial at 500 req/s measured that.
 */
const OPEN_WARM_MS = 10_000
const QUICK_OPEN_WARM_MS = 2_000

/**
 * A side that served nothing for this long before its measured run is warmed again first (warmJit, then the open
 * loop at the trial's rate for REWARM_OPEN_MS), unmeasured, the floor alike: past 30 s of quiet the proxy's idle
 * release (LOOPERS_IDLE_RELEASE_MS) runs full collections that deoptimize its request path (~130-180 functions,
 * bench/idle-retier.mjs), and a trial after it measured the re-tiering (the first trial of a series read 1.60× the
 * floor's CPU where the others read 1.09-1.39×). Gaps reach ~31 s when quiet() waits its longest between trials. What
 * a quiet period costs the requests after it is idle-retier's figure, not this scenario's.
 */
const REWARM_AFTER_IDLE_MS = 25_000
const REWARM_OPEN_MS = 3_000

/** Serves `request` JIT_WARM_REQUESTS times through `pool` (64 at a time); the result is not measured. */
async function warmJit(origin, request, pool) {
  await closedLoop({ origin, request, concurrency: 64, durationMs: JIT_WARM_MAX_MS, maxRequests: JIT_WARM_REQUESTS, pool })
}

/**
 * Each measured latency run starts on a pool of its own with this many connections opened just before it, on every
 * side: with one pool kept for the whole series, the connections the JIT warm-up had opened (64) sat idle past the
 * servers' 72 s keep-alive at different trials on each side (the proxy was warmed ~25 s before the floor), so a stall
 * on one side made its pool open new connections and the other's not. More than this many requests in flight still
 * open new ones, on either side alike.
 */
const PRIMED_CONNECTIONS = 64

/**
 * After a trial's latency runs, the proxy's and the floor's CPU per request is measured again with the two interleaved
 * (bench/interleave.mjs): this many slices of each, CPU_SLICE_MS long, in CPU_ORDER after CPU_LEAD_IN, the first side
 * alternating between trials. Read from each side's own back-to-back run, A/A ratios (`--aa`, same build both sides, host load 9 on
 * two cores) spread 0.62-1.55 (proxy against proxy) and 0.65-1.36 (floor against floor) over 10 trials; interleaved, in
 * the same trials, 0.82-1.10 and 0.86-1.21. Each slice's start from idle and its drain cost both sides alike (a 500 ms
 * slice read 3.7 % above its steady state for the proxy, 2.8 % for the floor: node bench/interleave-bias.mjs), within
 * 1 % on a ratio; 20 slices of 250 ms were tighter in one A/A run (0.93-1.07) but read ~18 % above. Each side's CPU is
 * counted over its own slices and the start of the next (bench/interleave.mjs: not the proxy's lull release between).
 */
const CPU_SLICES = 10
const CPU_SLICE_MS = 500
/**
 * Slices of each side served unmeasured before the measured ones: the trial's latency runs leave one side just loaded
 * and the other idle for 5-10 s (their order rotates between trials), so without them each side entered its first
 * measured slices from a state that differed from trial to trial.
 */
const CPU_LEAD_IN = 1
/**
 * Slices alternate plainly (A B A B …), the first side alternating between trials: in mirrored pairs (A B B A …) each
 * side waited two slices (1 s: the proxy's lull release) every other time. A/A phases (node bench/interleave-bias.mjs
 * --phases=pp,ppa,ff,ffa, three rounds) read proxy/proxy 1.006-1.091 and floor/floor 0.975-1.205 mirrored,
 * 1.011-1.036 and 0.984-1.070 alternating.
 */
const CPU_ORDER = 'alternate'
const QUICK_CPU_SLICES = 4
const QUICK_CPU_SLICE_MS = 250

const PERCENTILES = ['p50', 'p90', 'p99', 'max']
function added(direct, proxied) {
  return Object.fromEntries(PERCENTILES.map((p) => [p, proxied[p] === null || direct[p] === null ? null : proxied[p] - direct[p]]))
}

/** A run's result without its bulky parts. */
function slim(run) {
  const { errorSamples, bodySamples, ...rest } = run
  return {
    ...rest,
    ...(errorSamples.length > 0 ? { errorSamples } : {}),
    ...(Object.keys(bodySamples).length > 0 ? { bodySamples } : {}),
  }
}

/**
 * Before a measured trial: waits a bounded while for other tenants to leave the proxy's core alone
 * (the run's whole budget for this is ctx.quietBudgetMs); returns what it saw.
 */
async function quiet(ctx) {
  if (ctx.quietBudgetMs <= 0) return { waitedMs: 0, busy: null }
  const seen = await waitForQuiet({ maxWaitMs: Math.min(10_000, ctx.quietBudgetMs) })
  ctx.quietBudgetMs -= seen.waitedMs
  return seen
}

/**
 * The fake serves every side and this generator sends for every side: a mark-compact of either lands in whichever
 * side's run is under way when its old generation fills (in a 5 s closed loop, ~1-2 % of its throughput). Each
 * measured run starts with both collected; resolves with each collection's ms (upstream null: the fake cannot).
 */
async function collectShared(fake) {
  return { upstreamMs: fake.collect === undefined ? null : (await fake.collect()).ms, generatorMs: collectGarbage() }
}

/** Runs `fn` while reading the proxy's CPU time around it; adds `proxyCpuUsPerRequest`. */
async function withCpu(pid, fn) {
  const before = cpuSeconds(pid)
  const cores = coreTimes()
  const run = await fn()
  const cpu = cpuSeconds(pid) - before
  const busy = coreBusy(cores, coreTimes())
  return {
    ...slim(run),
    proxyCpuSeconds: cpu,
    proxyCpuUsPerRequest: run.ok > 0 ? (cpu * 1e6) / run.ok : null,
    coreBusy: busy,
    // Share of the proxy's core used by other processes during the run (noise on a shared machine).
    foreignOnProxyCore: busy[0] === null ? null : Math.max(0, busy[0] - cpu / (run.elapsedMs / 1000)),
  }
}

/** Redis's time in Lua scripts so far (EVALSHA and EVAL, INFO commandstats), µs; null without a Redis client. */
async function scriptUsec(redis) {
  if (!redis) return null
  const text = await redis.info('commandstats')
  let usec = 0
  for (const m of text.matchAll(/^cmdstat_(?:evalsha|eval):calls=\d+,usec=(\d+)/gm)) usec += Number(m[1])
  return usec
}

/**
 * (a) Non-streamed chat through budget enforcement, open loop at each rate, paired with direct and with
 * the floor (bench/floor.mjs: the same store round trips on a bare Fastify + undici pass-through) when
 * `floor` is given; the order of the sides rotates between trials.
 */
// Issue 12 judges added latency at 500 and 1,000 req/s over at least 5 trials (the full run's default).
const LATENCY_RATES = [500, 1000]
const MIN_LATENCY_TRIALS = 5

export async function latency(ctx, { rates = LATENCY_RATES, proxy = ctx.proxy, floor = ctx.floor ?? null, trials = ctx.quick ? ctx.trials : Math.max(ctx.trials, MIN_LATENCY_TRIALS), label = 'warn' } = {}) {
  const durationMs = ctx.quick ? 2_000 : 5_000
  const pair = requestPair(ctx.key, CHAT_BODY)
  pair.floor = pair.proxied
  await ctx.fake.reset({ completionTokens: 16 })
  // pid: whose CPU a run reads (direct: the proxy's, idle); waitPid: whose main thread's core waits it watches.
  // gcFile: the side's own collection pauses (bench/gc-record.mjs), null when not recorded.
  const targets = {
    direct: { url: ctx.fake.url, pid: proxy.pid, waitPid: ctx.fake.pid ?? null, gcFile: ctx.fake.gcFile ?? null },
    proxied: { url: proxy.url, pid: proxy.pid, waitPid: proxy.pid, gcFile: proxy.gcFile ?? null },
    ...(floor === null ? {} : { floor: { url: floor.url, pid: floor.pid, waitPid: floor.pid, gcFile: floor.gcFile ?? null } }),
  }
  // Redis and the fake upstream serve every side but direct (which only the fake serves): their stalls are every side's.
  // ctx.redisPid null: the sides measured use no Redis (the embedded store), whose stalls are then none of theirs.
  const watchesRedis = (ctx.redisPid ?? null) !== null && Boolean(ctx.redis)
  const shared = { ...(watchesRedis ? { redis: ctx.redisPid } : {}), upstream: ctx.fake.pid ?? null }
  const names = Object.keys(targets)
  const pools = Object.fromEntries(names.map((side) => [side, createPool(targets[side].url, 256)]))
  const began = performance.now()
  const at = () => Math.round((performance.now() - began) / 100) / 10
  const timeline = []
  try {
    const warmMs = ctx.quick ? QUICK_OPEN_WARM_MS : OPEN_WARM_MS
    const servedAt = {}
    for (const side of names) {
      if (side !== 'direct') await warmJit(targets[side].url, pair[side], pools[side])
      await openLoop({ origin: targets[side].url, request: pair[side], rate: rates[0], durationMs: warmMs, pool: pools[side] })
      servedAt[side] = performance.now()
      timeline.push({ atS: at(), side, what: 'warmed' })
    }
    const byRate = {}
    for (const rate of rates) {
      const runs = []
      for (let t = 0; t < trials; t++) {
        const sides = names.map((_, i) => names[(i + t) % names.length])
        const trial = { quiet: await quiet(ctx), rewarmed: [] }
        for (const side of sides) {
          const { url, pid, waitPid, gcFile } = targets[side]
          if (side !== 'direct' && performance.now() - servedAt[side] > REWARM_AFTER_IDLE_MS) {
            await warmJit(url, pair[side], pools[side])
            await openLoop({ origin: url, request: pair[side], rate, durationMs: REWARM_OPEN_MS, pool: pools[side] })
            trial.rewarmed.push(side)
          }
          // After any warm-up: its closed loop leaves more connections open (up to twice its concurrency).
          await pools[side].close()
          pools[side] = createPool(url, 256)
          const primed = await primeConnections({ origin: url, request: pair[side], pool: pools[side], connections: PRIMED_CONNECTIONS })
          const collected = await collectShared(ctx.fake)
          await sleep(300)
          const scriptsBefore = side === 'direct' ? null : await scriptUsec(ctx.redis)
          const acceptedBefore = (await ctx.fake.ledger()).connections
          timeline.push({ atS: at(), side, what: `${rate}/s trial ${t + 1}`, open: primed.open })
          if (watchesRedis) await resetRedisStalls(ctx.redis)
          const watch = watchRun(waitPid, { also: side === 'direct' ? {} : shared })
          trial[side] = await withCpu(pid, () => openLoop({ origin: url, request: pair[side], rate, durationMs, pool: pools[side] }))
          const seen = watch.stop()
          const window = [trial[side].startedAtMs, trial[side].startedAtMs + trial[side].elapsedMs]
          const redisStalls = side === 'direct' || !watchesRedis ? null : await readRedisStalls(ctx.redis)
          servedAt[side] = performance.now()
          const accepted = (await ctx.fake.ledger()).connections - acceptedBefore
          const generatorLateMaxMs = trial[side].sendLagMs.max
          trial[side].stalls = {
            openAtStart: primed.open,
            collectedBefore: collected,
            // The fake's accepted connections during the run: the direct client's own, else the side's upstream hop's.
            upstreamConnects: side === 'direct' ? null : accepted,
            mainWaitMaxMs: seen.mainWaitMaxMs,
            mainWaitMs: seen.mainWaitMs,
            otherThreadsCpuMs: seen.otherThreadsCpuMs,
            generatorLateMaxMs,
            generatorGcs: seen.gcs,
            generatorGcLongestMs: seen.gcLongestMs,
            // The side's own collection pauses of 1 ms or more (the fake's, for direct), and the fake's on the other sides.
            gc: gcPausesIn(gcFile, ...window),
            upstreamGc: side === 'direct' ? null : gcPausesIn(ctx.fake.gcFile ?? null, ...window),
            redisWaitMaxMs: seen.alsoWaitMaxMs.redis ?? null,
            upstreamWaitMaxMs: seen.alsoWaitMaxMs.upstream ?? null,
            redis: redisStalls,
            pileUp: [], // once every side of the trial has run (trialPileUps)
          }
          if (scriptsBefore !== null && trial[side].ok > 0) trial[side].redisUsPerRequest = ((await scriptUsec(ctx.redis)) - scriptsBefore) / trial[side].ok
        }
        if (trial.floor !== undefined) {
          const cpuSides = t % 2 === 0 ? ['proxied', 'floor'] : ['floor', 'proxied']
          await collectShared(ctx.fake)
          await sleep(300)
          const cpuTargets = Object.fromEntries(cpuSides.map((side) => [side, { url: targets[side].url, pid: targets[side].pid, request: pair[side], pool: pools[side] }]))
          const slices = ctx.cpuSlices?.slices ?? (ctx.quick ? QUICK_CPU_SLICES : CPU_SLICES)
          const sliceMs = ctx.cpuSlices?.sliceMs ?? (ctx.quick ? QUICK_CPU_SLICE_MS : CPU_SLICE_MS)
          trial.interleaved = await interleave({ targets: cpuTargets, rate, sliceMs, slices, order: CPU_ORDER, leadIn: CPU_LEAD_IN })
          for (const side of cpuSides) servedAt[side] = performance.now()
        }
        // A run's stalls are flagged beside what the trial's other runs saw of the same threads.
        const causes = trialPileUps(Object.fromEntries(sides.map((side) => [side, { ...trial[side].stalls, redisLatencyMaxMs: trial[side].stalls.redis?.latencyMaxMs ?? null }])))
        for (const side of sides) trial[side].stalls.pileUp = causes[side]
        trial.added = added(trial.direct.latencyMs, trial.proxied.latencyMs)
        if (trial.floor !== undefined) trial.floorAdded = added(trial.direct.latencyMs, trial.floor.latencyMs)
        runs.push(trial)
        const inter = trial.interleaved
        const vsFloor = trial.floor === undefined ? '' : `; floor added p50 ${fmt(trial.floorAdded.p50)} ms, p99 ${fmt(trial.floorAdded.p99)} ms, CPU/request proxy ${fmt(trial.proxied.proxyCpuUsPerRequest)} µs vs floor ${fmt(trial.floor.proxyCpuUsPerRequest)} µs (interleaved ${fmt(inter.sides.proxied.countedUsPerRequest)} vs ${fmt(inter.sides.floor.countedUsPerRequest)} µs, ÷ ${fmt(inter.countedRatio)}; over the whole phase ÷ ${fmt(inter.ratio)}), Redis/request ${fmt(trial.proxied.redisUsPerRequest)} µs vs ${fmt(trial.floor.redisUsPerRequest)} µs`
        const rewarmed = trial.rewarmed.length === 0 ? '' : `; warmed again after a quiet period first: ${trial.rewarmed.join(', ')}`
        ctx.log(`  latency ${label} ${rate}/s trial ${t + 1}: added p50 ${fmt(trial.added.p50)} ms, p99 ${fmt(trial.added.p99)} ms, proxied errors ${trial.proxied.non2xx + trial.proxied.transportErrors}${vsFloor}; ${connectsNote(trial)}${rewarmed}`)
        ctx.log(`    ${stallsNote(trial)}`)
      }
      byRate[rate] = runs
    }
    return { durationMs, body: CHAT_BODY, primedConnections: PRIMED_CONNECTIONS, timeline, byRate }
  } finally {
    await Promise.all(Object.values(pools).map((p) => p.close()))
  }
}

/**
 * The cost of production's log level: the same open loop at 1,000 req/s through two proxies started for it, one
 * logging at info and one at warn (in the floor's slot), alternating within each trial, so each trial's ratio
 * compares the two levels in the same minute and in processes of the same age (the main proxy has run every
 * scenario before). Log bytes are read once the info proxy has stopped (stdout is written in blocks; its exit
 * writes the rest).
 */
export async function infoLogging(ctx) {
  const proxy = await ctx.startProxy({ name: 'proxy-info', logLevel: 'info' })
  let run
  try {
    const warn = await ctx.startProxy({ name: 'proxy-warn', logLevel: 'warn' })
    try {
      run = await latency(ctx, { rates: [1000], proxy, floor: warn, trials: ctx.trials, label: 'info (warn in the floor slot)' })
    } finally {
      await warn.stop()
    }
  } finally {
    await proxy.stop()
  }
  const trials = run.byRate[1000]
  // The info proxy served its warm-ups (JIT_WARM_REQUESTS, then 1,000 req/s for the open warm-up) and every measured run.
  const warmed = JIT_WARM_REQUESTS + (ctx.quick ? QUICK_OPEN_WARM_MS : OPEN_WARM_MS)
  const served = trials.reduce((sum, t) => sum + t.proxied.ok, 0)
  return { trials, logBytesPerRequest: statSync(proxy.logFile).size / (served + warmed) }
}

/**
 * (b) Streams: added time to first byte (beside the floor's, bench/floor.mjs, when `ctx.floor` is set: the
 * same store round trip before forwarding), and the proxy's CPU per relayed and metered chunk.
 */
export async function streams(ctx) {
  const pair = requestPair(ctx.key, streamBody(64))
  pair.floor = pair.proxied
  const rate = 100
  const durationMs = ctx.quick ? 1_500 : 3_000
  await ctx.fake.reset({ chunks: 20, chunkDelayMs: 5, word: ' tok' })
  const origins = { direct: ctx.fake.url, proxied: ctx.proxy.url, ...(ctx.floor ? { floor: ctx.floor.url } : {}) }
  const names = Object.keys(origins)
  const pools = Object.fromEntries(names.map((side) => [side, createPool(origins[side], 256)]))
  const ttfb = []
  try {
    // The stream path's code (relay, event parser, meter) is not the one-liner's: it is brought to TurboFan too,
    // as a proxy serving streams all day runs it (with 1 s at 100/s alone it ran mostly unoptimized in trial 1).
    for (const side of names) {
      if (side !== 'direct') await warmJit(origins[side], pair[side], pools[side])
      await openLoop({ origin: origins[side], request: pair[side], rate, durationMs: 1_000, pool: pools[side] })
    }
    for (let t = 0; t < ctx.trials; t++) {
      const trial = { quiet: await quiet(ctx) }
      for (const side of names.map((_, i) => names[(i + t) % names.length])) {
        await collectShared(ctx.fake)
        await sleep(300)
        trial[side] = slim(await openLoop({ origin: origins[side], request: pair[side], rate, durationMs, pool: pools[side] }))
      }
      trial.added = added(trial.direct.ttfbMs, trial.proxied.ttfbMs)
      if (trial.floor !== undefined) trial.floorAdded = added(trial.direct.ttfbMs, trial.floor.ttfbMs)
      ttfb.push(trial)
      const vsFloor = trial.floor === undefined ? '' : `; floor added p50 ${fmt(trial.floorAdded.p50)} ms, p99 ${fmt(trial.floorAdded.p99)} ms`
      ctx.log(`  streams ttfb trial ${t + 1}: added p50 ${fmt(trial.added.p50)} ms, p99 ${fmt(trial.added.p99)} ms${vsFloor}; ${connectsNote(trial)}`)
    }
  } finally {
    await Promise.all(Object.values(pools).map((p) => p.close()))
  }

  // CPU per chunk: K streams of M_HI chunks minus K streams of M_LO chunks, divided by the chunk difference;
  // the same for a plain relay (bench/relay-floor.mjs) shows what relaying alone costs in Node here.
  const K = ctx.quick ? 10 : 20
  const M_HI = 1000
  const M_LO = 10
  const delayMs = 2
  const floor = await startRelayFloor({ pin: ctx.pin, upstreamUrl: ctx.fake.url })
  const targets = {
    proxy: { url: ctx.proxy.url, pid: ctx.proxy.pid, request: requestPair(ctx.key, streamBody()).proxied },
    floor: { url: floor.url, pid: floor.pid, request: requestPair(ctx.key, streamBody()).direct },
  }
  const cpu = []
  try {
    for (const target of Object.values(targets)) {
      target.pool = createPool(target.url, K)
      await ctx.fake.reset({ chunks: M_LO, chunkDelayMs: delayMs, word: ' tok' })
      await burst({ origin: target.url, requests: Array(K).fill(target.request), pool: target.pool })
    }
    for (let t = 0; t < ctx.trials; t++) {
      const trial = { quiet: await quiet(ctx) }
      for (const [name, target] of Object.entries(targets)) {
        const measure = async (chunks) => {
          await ctx.fake.reset({ chunks, chunkDelayMs: delayMs, word: ' tok' })
          await sleep(200)
          const before = cpuTimes(target.pid)
          const run = await burst({ origin: target.url, requests: Array(K).fill(target.request), pool: target.pool })
          const after = cpuTimes(target.pid)
          const ledger = await ctx.fake.ledger()
          return { user: after.user - before.user, system: after.system - before.system, ok: run.ok, completed: ledger.streamsCompleted, chunks: ledger.outputTokens, clientReadsPerStream: run.readsPerResponse, elapsedMs: run.elapsedMs }
        }
        const hi = await measure(M_HI)
        const lo = await measure(M_LO)
        const chunks = hi.chunks - lo.chunks
        trial[name] = { hi, lo, usPerChunk: ((hi.user + hi.system - lo.user - lo.system) * 1e6) / chunks, userUsPerChunk: ((hi.user - lo.user) * 1e6) / chunks, systemUsPerChunk: ((hi.system - lo.system) * 1e6) / chunks }
      }
      cpu.push(trial)
      const p = trial.proxy
      ctx.log(`  streams cpu trial ${t + 1}: proxy ${fmt(p.usPerChunk)} µs/chunk (user ${fmt(p.userUsPerChunk)}, kernel ${fmt(p.systemUsPerChunk)}; ${p.hi.completed}/${K} complete, ${fmt(p.hi.clientReadsPerStream)} client reads per stream), plain relay ${fmt(trial.floor.usPerChunk)} µs/chunk`)
    }
  } finally {
    await Promise.all(Object.values(targets).map((t) => t.pool?.close()))
    await floor.stop()
  }
  return { ttfb: { rate, durationMs, chunks: 20, chunkDelayMs: 5, trials: ttfb }, cpu: { streams: K, chunksHigh: M_HI, chunksLow: M_LO, chunkDelayMs: delayMs, trials: cpu } }
}

/** (c) Peak throughput, closed loop: proxied, direct, and the floor when `ctx.floor` is set; sides rotate between trials. */
export async function peak(ctx) {
  const concurrency = 64
  const durationMs = ctx.quick ? 2_000 : 5_000
  const pair = requestPair(ctx.key, CHAT_BODY)
  pair.floor = pair.proxied
  const floor = ctx.floor ?? null
  await ctx.fake.reset({ completionTokens: 16 })
  const targets = { direct: { url: ctx.fake.url, pid: ctx.proxy.pid }, proxied: { url: ctx.proxy.url, pid: ctx.proxy.pid }, ...(floor === null ? {} : { floor: { url: floor.url, pid: floor.pid } }) }
  const names = Object.keys(targets)
  const pools = Object.fromEntries(names.map((side) => [side, createPool(targets[side].url, concurrency)]))
  const trials = []
  try {
    for (const side of names) {
      if (side !== 'direct') await warmJit(targets[side].url, pair[side], pools[side])
      await closedLoop({ origin: targets[side].url, request: pair[side], concurrency, durationMs: 1_000, pool: pools[side] })
    }
    for (let t = 0; t < ctx.trials; t++) {
      const trial = { quiet: await quiet(ctx) }
      for (const side of names.map((_, i) => names[(i + t) % names.length])) {
        const collected = await collectShared(ctx.fake)
        await sleep(500)
        const { url, pid } = targets[side]
        trial[side] = { ...(await withCpu(pid, () => closedLoop({ origin: url, request: pair[side], concurrency, durationMs, pool: pools[side] }))), collectedBefore: collected }
      }
      trials.push(trial)
      const p = trial.proxied
      const vsFloor = trial.floor === undefined ? '' : `, floor ${Math.round(trial.floor.achievedRate)} req/s (CPU/request proxy ${fmt(p.proxyCpuUsPerRequest)} µs vs floor ${fmt(trial.floor.proxyCpuUsPerRequest)} µs)`
      ctx.log(`  peak trial ${t + 1}: proxied ${Math.round(p.achievedRate)} req/s (errors ${p.non2xx + p.transportErrors}, proxy core busy ${pct(p.coreBusy[0])}, other core ${pct(p.coreBusy[1])}), direct ${Math.round(trial.direct.achievedRate)} req/s${vsFloor}`)
    }
  } finally {
    await Promise.all(Object.values(pools).map((p) => p.close()))
  }
  return { concurrency, durationMs, trials }
}

/** Sizes of the agent requests the `agent` scenario sends (bench/agent-body.mjs), in bytes. */
export const AGENT_BODY_BYTES = [32_768, 131_072]

/**
 * (h) What reading a real agent request costs: closed loop (16 at a time) through the proxy and through the floor,
 * which forwards the body unread, with a coding agent's request of each size in AGENT_BODY_BYTES (system prompt,
 * a dozen tools, a conversation of tool calls and results); the sides alternate within each trial. The bench key's
 * loop guard is off, as in every other scenario (bench/loop-guard.mjs measures the guard).
 */
export async function agentRequests(ctx) {
  const concurrency = 16
  const durationMs = ctx.quick ? 1_500 : 4_000
  const floor = ctx.floor
  // The fake bills a fixed prompt: counting 128 KiB with tiktoken on every request would make it the bottleneck.
  await ctx.fake.reset({ completionTokens: 16, promptTokens: 8_000 })
  const targets = { proxied: { url: ctx.proxy.url, pid: ctx.proxy.pid }, floor: { url: floor.url, pid: floor.pid } }
  const names = Object.keys(targets)
  const pools = Object.fromEntries(names.map((side) => [side, createPool(targets[side].url, concurrency)]))
  const bySize = {}
  try {
    for (const bytes of AGENT_BODY_BYTES) {
      const request = requestPair(ctx.key, agentBody({ bytes })).proxied
      // The first size also tiers both processes' code up on this kind of request (the scenario may run alone).
      for (const side of names) {
        if (bytes === AGENT_BODY_BYTES[0]) await warmJit(targets[side].url, request, pools[side])
        await closedLoop({ origin: targets[side].url, request, concurrency, durationMs: 1_000, pool: pools[side] })
      }
      const trials = []
      for (let t = 0; t < ctx.trials; t++) {
        const trial = { quiet: await quiet(ctx) }
        for (const side of names.map((_, i) => names[(i + t) % names.length])) {
          const collected = await collectShared(ctx.fake)
          await sleep(500)
          const { url, pid } = targets[side]
          trial[side] = { ...(await withCpu(pid, () => closedLoop({ origin: url, request, concurrency, durationMs, pool: pools[side] }))), collectedBefore: collected }
        }
        trials.push(trial)
        ctx.log(`  agent request ${bytes} B, trial ${t + 1}: CPU/request proxy ${fmt(trial.proxied.proxyCpuUsPerRequest)} µs vs floor ${fmt(trial.floor.proxyCpuUsPerRequest)} µs (errors ${trial.proxied.non2xx + trial.proxied.transportErrors})`)
      }
      bySize[bytes] = { bodyBytes: Buffer.byteLength(request.body), trials }
    }
  } finally {
    await Promise.all(Object.values(pools).map((p) => p.close()))
  }
  return { concurrency, durationMs, bySize }
}

/**
 * New connections each side's client opened during a trial (load.mjs `connects`): a request that waits for one pays a
 * handshake and an accept, so a side whose server closed its idle connections between runs measures that too.
 */
function connectsNote(trial) {
  const sides = ['direct', 'proxied', 'floor'].filter((side) => trial[side] !== undefined)
  return `new connections ${sides.map((side) => `${side} ${trial[side].connects}`).join(', ')}`
}

/**
 * Per side of a latency trial: its main thread's longest core wait, the generator's worst late send and GCs, the
 * side's own collection pauses, Redis's and the fake's stalls, when its slowest requests were due, pile-ups.
 */
function stallsNote(trial) {
  return ['direct', 'proxied', 'floor']
    .filter((side) => trial[side]?.stalls !== undefined)
    .map((side) => {
      const s = trial[side].stalls
      const flag = s.pileUp.length === 0 ? '' : ` ⚑ pile-up (${s.pileUp.join(', ')})`
      const upstream = s.upstreamConnects === null ? '' : `, upstream connections ${s.upstreamConnects}`
      const shared = side === 'direct' ? '' : `, Redis core wait ≤ ${fmt(s.redisWaitMaxMs)} ms, Redis events ≤ ${fmt(s.redis?.latencyMaxMs)} ms, fake core wait ≤ ${fmt(s.upstreamWaitMaxMs)} ms, fake GC ≤ ${fmt(s.upstreamGc?.longestMs)} ms`
      return `${side}: p99 ${fmt(trial[side].latencyMs.p99)} ms, core wait ≤ ${fmt(s.mainWaitMaxMs)} ms in 100 ms (${fmt(s.mainWaitMs)} ms in all; its other threads' CPU ${fmt(s.otherThreadsCpuMs)} ms), ${gcNote(s.gc)}${shared}, generator late ≤ ${fmt(s.generatorLateMaxMs)} ms, its GCs ${s.generatorGcs} (longest ${fmt(s.generatorGcLongestMs)} ms), ${slowestNote(trial[side].slowest)}, open at start ${s.openAtStart}${upstream}${flag}`
    })
    .join('; ')
}

/** A side's own collection pauses in a run (bench/gc-record.mjs), with each mark-compact's second of the run. */
function gcNote(gc) {
  if (gc === null || gc === undefined) return 'own GC not recorded'
  const marks = gc.marks.length === 0 ? '' : `, mark-compact ${gc.marks.map((m) => `${fmt(m.ms)} ms at ${fmt(m.atMs / 1000)} s`).join(', ')}`
  return `own GC pauses ≥ 1 ms ${gc.count} (longest ${fmt(gc.longestMs)} ms${marks})`
}

/** When the run's slowest requests were due (s into the run): one burst is a stall, a spread is load. */
function slowestNote(slowest) {
  if (slowest === undefined || slowest.length === 0) return 'slowest —'
  const at = slowest.map((r) => r.atMs / 1000)
  return `${slowest.length} slowest ${fmt(slowest.at(-1).ms)}-${fmt(slowest[0].ms)} ms due at ${fmt(Math.min(...at))}-${fmt(Math.max(...at))} s`
}

export function fmt(n) {
  return n === null || n === undefined || Number.isNaN(n) ? '—' : n.toFixed(Math.abs(n) >= 100 ? 0 : 2)
}
function pct(x) {
  return x === null ? '—' : `${Math.round(x * 100)}%`
}
