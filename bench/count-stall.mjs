// Count stall (issue 8 point 5): while a 10 MiB prompt is counted exactly (its byte bound does not fit its
// key's budget, so the proxy counts its tokens in the counting worker), small requests through the same
// proxy keep their p99 (target: grows by at most 10 ms) and none gets a 503. The big request's budget
// stops at 95% of its token count: the count runs through most of the body, then the request is refused.
// The proxy here is its own, started with bench/loop-delay.mjs: it records every block of its event loop
// over 5 ms or holding over 1 ms of its own work, and every collection's pause, so the report says how long
// the loop was held while the big request was read, parsed, counted, and by what.
// The load generator's own event loop is watched too (its longest delay, baseline and during): it times the
// small requests, so a stall of its own (a busy core of its own) reads as latency the proxy did not add. It
// sends them with node:http on kept-alive connections, not fetch: fetch's garbage paused this process in
// scavenges of up to ~40 ms (12 of 24 collections over 5 ms in 5 s of this load), which p99 then read as the
// proxy's. And the proxy's threads are read from /proc (schedstat: CPU time and time waiting for a core), so
// the report says how long the main thread waited for the core while the count ran against the baseline,
// and how much CPU the counting worker and V8's platform threads (JIT, GC helpers; not lowered) took.
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { smallLoad } from './load.mjs'
import { ROOT, waitForQuiet } from './procs.mjs'
import { countChatTokens } from '../dist/tokens/tiktoken.js'

const PROMPT_BYTES = 10 * 1024 * 1024
// perf_hooks' kind of a full (mark-compact) collection.
const MARK_COMPACT = 4
// Long enough for the proxy's request path to be optimized: with 1 s its JIT was still compiling (~1 s of CPU on
// V8's threads, beside the main thread) through the first trial.
const WARM_MS = 3_000
const BASELINE_MS = 3_000
/** CPU and run-queue wait (ms) of the proxy's threads by kind: main, counting worker (its thread WorkerThread), V8 platform; null off Linux. */
function proxyThreads(pid) {
  const kinds = { main: { cpuMs: 0, waitMs: 0 }, worker: { cpuMs: 0, waitMs: 0 }, v8: { cpuMs: 0, waitMs: 0 } }
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
      const kind = Number(tid) === pid ? 'main' : name === 'WorkerThread' ? 'worker' : name.startsWith('V8') ? 'v8' : null
      if (kind === null) continue
      const [cpu, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number)
      kinds[kind].cpuMs += cpu / 1e6
      kinds[kind].waitMs += wait / 1e6
    }
  } catch {
    return null
  }
  return kinds
}

/** `after` − `before` of proxyThreads, per kind; null when either is. */
function threadsDelta(before, after) {
  if (before === null || after === null) return null
  return Object.fromEntries(Object.entries(after).map(([k, a]) => [k, { cpuMs: a.cpuMs - before[k].cpuMs, waitMs: a.waitMs - before[k].waitMs }]))
}

const forMs = (ms) => {
  const until = performance.now() + ms
  return () => performance.now() >= until
}

const fixed = (n) => (n === null ? '-' : n.toFixed(1))

function percentile(results, p) {
  const sorted = results.map((r) => r.ms).sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? null
}

/** Watches this process's event loop (the load generator's); the returned function stops and gives its longest block in ms. */
function watchLoop() {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  return () => {
    histogram.disable()
    return Math.round(histogram.max / 1e4) / 100
  }
}

/** Blocks of the proxy's event loop (loop-delay.mjs) between `from` and `to` (epoch ms). */
function blocksBetween(file, from, to) {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l))
    .filter((b) => b.at >= from && b.at <= to + 50)
}

export async function countStall(ctx) {
  const delayFile = join(ctx.dir, 'count-stall-loop-delay.jsonl')
  rmSync(delayFile, { force: true })
  const proxy = await ctx.startProxy({
    name: 'proxy-count-stall',
    nodeOptions: ['--import', join(ROOT, 'bench/loop-delay.mjs')],
    extraEnv: { LOOPERS_MAX_BODY_BYTES: String(PROMPT_BYTES + 1024 * 1024), LOOPERS_BENCH_LOOP_DELAY_FILE: delayFile },
  })
  try {
    // One long prompt (one string of 10 MiB), and as many bytes of short messages (a long agent transcript):
    // the second costs the event loop far more per byte (parse, walks, scan), the first the counting worker.
    const prose = 'The quick brown fox jumps over the lazy dog while the budget holds. '.repeat(Math.floor((PROMPT_BYTES - 200) / 68))
    const proseBody = { model: 'bench-model', max_tokens: 5, messages: [{ role: 'user', content: prose }] }
    const turns = Array.from({ length: Math.floor(PROMPT_BYTES / 50) }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `step ${i} ok` }))
    const denseBody = { model: 'bench-model', max_tokens: 5, messages: turns }
    const bodies = []
    for (const [kind, body] of [['one 10 MiB prompt', proseBody], ['short messages (a long transcript)', denseBody]]) bodies.push({ kind, ...(await measure(ctx, proxy, delayFile, kind, body)) })
    return { bodies }
  } finally {
    await proxy.stop()
  }
}

async function measure(ctx, proxy, delayFile, kind, body) {
  await ctx.fake.reset({ promptTokens: 12, completionTokens: 5 })
  // Encoded once, and sent with node:http as one buffer: fetch would encode a string body on this process's event loop
  // in every trial, and its body stream held this process (which times the small requests) for 20-45 ms a send.
  const bigBody = Buffer.from(JSON.stringify(body))
  const tokens = countChatTokens(body, 'bench-model')
  const big = await ctx.admin.createKey(`bench-count-stall-${kind}`, ['openai'])
  await ctx.admin.setBudget(big.record.hash, { limits: { daily: Math.floor(tokens * 0.95) }, loopLimit: 0 })
  const target = new URL('/openai/v1/chat/completions', proxy.url)
  const headers = { authorization: `Bearer ${big.key}`, 'content-type': 'application/json', 'content-length': bigBody.length }
  const send = () =>
    new Promise((resolve) => {
      const req = httpRequest({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers }, (res) => {
        res.resume()
        res.once('end', () => resolve(res.statusCode))
        res.once('error', () => resolve(0))
      })
      req.once('error', () => resolve(0))
      req.end(bigBody)
    })
  // Warm-up: the small path, and the worker's encoder (one big count before any measured one).
  await smallLoad(proxy.url, ctx.key, forMs(WARM_MS))
  await send()
  await send()
  const trials = []
  for (let t = 0; t < ctx.trials; t++) {
    // On a shared machine: a bounded wait for a quiet proxy core (as the other scenarios do).
    if (ctx.quietBudgetMs > 0) ctx.quietBudgetMs -= (await waitForQuiet({ maxWaitMs: Math.min(10_000, ctx.quietBudgetMs) })).waitedMs
    const baselineFrom = Date.now()
    const baselineGenerator = watchLoop()
    const baselineThreads = proxyThreads(proxy.pid)
    const baselineStarted = performance.now()
    const baseline = await smallLoad(proxy.url, ctx.key, forMs(BASELINE_MS))
    const baselineSpanMs = performance.now() - baselineStarted
    const countThreads = proxyThreads(proxy.pid)
    const baselineGeneratorBlockMs = baselineGenerator()
    const baselineSpans = blocksBetween(delayFile, baselineFrom, Date.now())
    const baselineBlocks = baselineSpans.filter((b) => b.blockedMs > 5)
    let done = false
    const started = performance.now()
    const from = Date.now()
    const generator = watchLoop()
    const request = send().finally(() => (done = true))
    const during = await smallLoad(proxy.url, ctx.key, () => done)
    const generatorBlockMs = generator()
    const status = await request
    const countSpanMs = performance.now() - started
    const base = threadsDelta(baselineThreads, countThreads)
    const count = threadsDelta(countThreads, proxyThreads(proxy.pid))
    const spans = blocksBetween(delayFile, from, Date.now())
    const blocks = spans.filter((b) => b.blockedMs > 5)
    const trial = {
      bigStatus: status,
      // The proxy's threads (schedstat): the main thread's wait for a core in ms per second, baseline and during the
      // count (what the count took from it, and what others on the core did), and the CPU ms each kind used in the count.
      baselineMainWaitMsPerS: base === null ? null : (base.main.waitMs * 1000) / baselineSpanMs,
      mainWaitMsPerS: count === null ? null : (count.main.waitMs * 1000) / countSpanMs,
      workerCpuMs: count?.worker.cpuMs ?? null,
      v8CpuMs: count?.v8.cpuMs ?? null,
      baselineV8CpuMsPerS: base === null ? null : (base.v8.cpuMs * 1000) / baselineSpanMs,
      countMs: performance.now() - started,
      small: during.length,
      small503: during.filter((r) => r.status === 503).length,
      smallNot200: during.filter((r) => r.status !== 200).length,
      baselineP99Ms: percentile(baseline, 0.99),
      p99Ms: percentile(during, 0.99),
      // The proxy's event loop: its longest block while the big request was handled, and in the baseline.
      longestBlockMs: Math.max(0, ...blocks.map((b) => b.blockedMs)),
      blockedMs: blocks.reduce((n, b) => n + b.blockedMs, 0),
      baselineLongestBlockMs: Math.max(0, ...baselineBlocks.map((b) => b.blockedMs)),
      // The same by the main thread's CPU clock (the OS running others does not count; it moves in whole ticks, see loop-delay.mjs).
      longestCpuBlockMs: Math.max(0, ...spans.map((b) => b.cpuMs ?? 0)),
      baselineLongestCpuBlockMs: Math.max(0, ...baselineSpans.map((b) => b.cpuMs ?? 0)),
      // The span less idle time and time spent waiting for a core (loop-delay.mjs): finer than the CPU clock's 4 ms ticks.
      longestOwnBlockMs: Math.max(0, ...spans.map((b) => b.ownMs ?? 0)),
      baselineLongestOwnBlockMs: Math.max(0, ...baselineSpans.map((b) => b.ownMs ?? 0)),
      longestOwnBlocks: spans
        .filter((b) => b.ownMs !== undefined)
        .sort((a, b) => b.ownMs - a.ownMs)
        .slice(0, 5)
        .map((b) => ({ afterMs: b.at - from, ownMs: b.ownMs })),
      // The load generator's own event loop (it times the small requests): its longest block, here and in the baseline.
      generatorBlockMs,
      baselineGeneratorBlockMs,
      // Mark-compact pauses (V8's full collections) and when they came.
      majorGcs: spans.filter((b) => b.gcKind === MARK_COMPACT).map((b) => ({ afterMs: b.at - from, pauseMs: b.gcMs })),
      baselineMajorGcs: baselineSpans.filter((b) => b.gcKind === MARK_COMPACT).map((b) => ({ pauseMs: b.gcMs })),
      // The five longest blocks: when (ms after the big request was sent) and how long.
      longestBlocks: blocks
        .sort((a, b) => b.blockedMs - a.blockedMs)
        .slice(0, 5)
        .map((b) => ({ afterMs: b.at - from, blockedMs: b.blockedMs })),
    }
    trial.p99GrowthMs = trial.p99Ms - trial.baselineP99Ms
    trial.pass = status === 429 && trial.small503 === 0 && trial.smallNot200 === 0 && trial.p99GrowthMs <= 10
    ctx.log(
      `  count stall (${kind}) trial ${t + 1}: ${(Buffer.byteLength(bigBody) / 1_048_576).toFixed(1)} MiB count ${Math.round(trial.countMs)} ms (big request ${status}); small p99 ${trial.baselineP99Ms.toFixed(1)} → ${trial.p99Ms.toFixed(1)} ms (+${trial.p99GrowthMs.toFixed(1)}, target ≤ 10) over ${during.length} requests, ${trial.small503} × 503; proxy main thread's wait for a core ${fixed(trial.baselineMainWaitMsPerS)} → ${fixed(trial.mainWaitMsPerS)} ms/s, counting worker ${fixed(trial.workerCpuMs)} ms CPU, V8 threads ${fixed(trial.v8CpuMs)} ms (baseline ${fixed(trial.baselineV8CpuMsPerS)} ms/s); proxy loop: longest block ${trial.longestBlockMs} ms (baseline ${trial.baselineLongestBlockMs} ms), ${trial.longestCpuBlockMs} ms of its CPU (baseline ${trial.baselineLongestCpuBlockMs} ms), its own work ${trial.longestOwnBlockMs} ms (baseline ${trial.baselineLongestOwnBlockMs} ms), mark-compact pauses [${trial.majorGcs.map((g) => `+${g.afterMs} ms: ${g.pauseMs}`).join(', ')}] ms (baseline [${trial.baselineMajorGcs.map((g) => g.pauseMs).join(', ')}]), ${Math.round(trial.blockedMs)} ms blocked in all; load generator's longest block ${trial.generatorBlockMs} ms (baseline ${trial.baselineGeneratorBlockMs} ms); longest at ${trial.longestBlocks.map((b) => `+${b.afterMs} ms (${b.blockedMs})`).join(', ')}`,
    )
    trials.push(trial)
  }
  return { bodyBytes: Buffer.byteLength(bigBody), promptTokens: tokens, trials }
}
