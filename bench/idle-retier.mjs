// What a quiet period costs the requests after it: one proxy (`node <cli> serve`, the launcher's flags, node's
// --trace-opt --trace-deopt) warmed past V8's tier-up, then CPU per request (every thread, /proc) and the functions
// TurboFan optimized (a count load does not move) for: lone requests (one at a time) and a closed loop of 64, before
// and after --idle ms with no request (longer than LOOPERS_IDLE_RELEASE_MS, 30 s: the proxy's idle release runs),
// and the optimized functions V8 marked for deoptimization during that quiet period, by reason.
//   npm run build && node bench/idle-retier.mjs [--cli=dist/cli.js] [--idle=40000] [--release-ms=30000 (the proxy's
//     LOOPERS_IDLE_RELEASE_MS; 0 turns the release off: the control)] [--node=FLAG,… (more node flags)]
//     [--env=NAME=VALUE,… (the proxy's environment)] [--cycles=N (quiet periods, each with the phases after it)]
//     [--keep-log=FILE (the proxy's trace: with --node=--print-opt-code, each optimized function's embedded objects)]
//     [--shape=chat|stream|gemini-key (the request: a one-line chat, a streamed chat, a Gemini chat with its key in
//     `?key=`)] [--names (each quiet period's marked functions and each phase's bailouts, by name, grouped ours /
//     undici / deps / node: a name defined in dist/, in undici, in another runtime dependency, or none of them)]
// Each phase also counts the functions marked "embedded weak objects cleared" and, with --node=--trace-gc, the
// full collections: none in the 21,000 requests before the quiet period, so optimized code can embed objects dead
// since the warm-up, and each later quiet period marks as many again (165, 182, 151 in three; the re-optimized
// code embeds new ones). In that --print-opt-code trace, 42% of the maps embedded in the marked code were in no code
// after (8-10% of strings and functions, which compaction moves): maps die, not only the last requests' objects.
// Measured (this build, Redis): a lone request 258 µs before, 739 µs in the 500 after the quiet period, 221 and 108 µs
// a request in the next two closed loops of 3,000 (70 before); 168 functions optimized anew in the first; ~130 optimized
// functions (Node's http and streams, Fastify, the pipeline, ioredis) marked for deoptimization in the release's
// full collections, "embedded weak objects cleared" (maps only the last requests' objects held). With the release
// off: 272 µs, 94 and 97 µs, 3 functions. A major collection without the last-resort flavor, one round instead of
// four, --no-flush-bytecode or --no-flush-baseline-code each changed nothing (170-188 re-optimized).
// With --names (--idle=14000 --release-ms=5000, against the build before keeping requests with a URL key and the
// picked usage members): a one-line chat's first quiet period marked 30-32 functions (40-44 before; the usage readers
// gone), a Gemini `?key=` chat's 30-43 (101-106: its request, reply, router and Node's server side were never kept).
// Then (a blank copy of undici's last Request kept through the release, src/proxy/keep-undici-request.ts): a one-line
// chat's quiet period 9-16 (25-31 before it; undici's group 9-15 -> 0), a stream's 25 (39-43); a stream's functions
// TurboFan optimized anew after it 67-68 (103-104). Left: Node's IncomingMessage/ReadableState construction and socket
// write path (clearBuffer, writevGeneric, Socket._writeGeneric); a stream's adds its parser and meter (14).
// Loads 127.0.0.1 only, bounded in count and time; stops every process it starts.
import { copyFileSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ONE_LINE_BODY } from './body-option.mjs'
import { closedLoop, createPool } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy, threadsCpuMs } from './procs.mjs'
import { requestPair, streamBody } from './scenarios.mjs'
import { groupNames } from './deopt-names.mjs'

const option = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cli = resolve(option('cli', join(ROOT, 'dist/cli.js')))
const idleMs = Number(option('idle', 40_000))
const releaseMs = option('release-ms', null)
const cycles = Number(option('cycles', 1))
const keepLog = option('keep-log', null)
const nodeFlags = option('node', '').split(',').filter(Boolean)
const shape = option('shape', 'chat')
const withNames = process.argv.includes('--names')
const envPairs = Object.fromEntries(option('env', '').split(',').filter(Boolean).map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]))

const { dir, started, redis, fake, close } = await startBenchStack('idle-retier-', { watchdogMs: 5 * 60_000, fake: { completionTokens: 16 } })
try {
  const proxy = await startProxy({
    pin: false, redisUrl: redis.url, upstreamUrl: fake.url, dir, cliPath: cli, nodeOptions: ['--trace-opt', '--trace-deopt', ...nodeFlags],
    extraEnv: {
      ...(releaseMs === null ? {} : { LOOPERS_IDLE_RELEASE_MS: releaseMs }),
      ...(shape === 'gemini-key' ? { LOOPERS_GEMINI_BASE_URL: fake.url, LOOPERS_GEMINI_API_KEY: 'gemini-bench-upstream' } : {}),
      ...envPairs,
    },
  })
  started.push(proxy)
  const request = await shapedRequest(shape, redis.url)
  const pool = createPool(proxy.url, 64)
  const trace = () => readFileSync(proxy.logFile, 'utf8')
  const optimized = (text) => (text.match(/\[completed optimizing /g) ?? []).length
  const weakDeopts = (text) => (text.match(/reason: embedded weak objects cleared/g) ?? []).length
  // Only with --node=--trace-gc (0 otherwise).
  const fullGcs = (text) => (text.match(/Mark-Compact/g) ?? []).length
  // Each as `name (reason)`; a function without a name is `(anonymous)`.
  const marked = (text) => [...text.matchAll(/\[marking dependent code .*?<SharedFunctionInfo ?([^>]*)>\) \(opt id \d+\) for deoptimization, reason: ([^\]]+)\]/g)].map((m) => `${m[1] || '(anonymous)'} (${m[2]})`)
  const bailouts = (text) => [...text.matchAll(/\[bailout \(kind: ([^,]+), reason: ([^)]*)\): begin\. deoptimizing \S+ <JSFunction (?:([^ >(]+) )?\(sfi/g)].map((m) => `${m[3] || '(anonymous)'} (${m[1]}: ${m[2]})`)
  const rows = []
  const phase = async (label, n, concurrency) => {
    const before = { text: trace().length, cpu: threadsCpuMs(proxy.pid) }
    await closedLoop({ origin: proxy.url, request, concurrency, durationMs: 60_000, maxRequests: n, pool })
    const us = ((threadsCpuMs(proxy.pid) - before.cpu) * 1000) / n
    const text = trace().slice(before.text)
    rows.push({
      phase: label, requests: n, cpu_us_per_request: Math.round(us), optimized: optimized(text), weak_deopts: weakDeopts(text), full_gcs: fullGcs(text),
      ...(withNames ? { bailouts: groupNames(bailouts(text)) } : {}),
    })
  }
  await phase('warm-up', 12_000, 64)
  await phase('lone, before', 500, 1)
  await phase('closed loop, before', 3_000, 64)
  const quietPeriods = []
  for (let cycle = 1; cycle <= cycles; cycle++) {
    const quietFrom = trace().length
    await sleep(idleMs)
    const reasons = {}
    for (const m of trace().slice(quietFrom).matchAll(/\[marking dependent code .*? for deoptimization, reason: ([^\]]+)\]/g)) reasons[m[1]] = (reasons[m[1]] ?? 0) + 1
    quietPeriods.push(withNames ? { reasons, marked: groupNames(marked(trace().slice(quietFrom))) } : reasons)
    await phase(`lone, after ${idleMs / 1000} s quiet${cycle > 1 ? ` (${cycle})` : ''}`, 500, 1)
    await phase('closed loop, after', 3_000, 64)
    await phase('closed loop, after (2)', 3_000, 64)
  }
  await pool.close()
  if (keepLog !== null) copyFileSync(proxy.logFile, keepLog)
  const reasons = quietPeriods[0]
  console.log(JSON.stringify({ cli, idle_ms: idleMs, release_ms: releaseMs ?? 'default', node_flags: nodeFlags, phases: rows, deoptimized_while_quiet: reasons, ...(cycles > 1 ? { deoptimized_while_quiet_each: quietPeriods } : {}) }))
} finally {
  await close()
}

/** The one request every phase sends, of `shape`, with a new key of the bench's Redis. */
async function shapedRequest(shape, redisUrl) {
  if (shape === 'chat') return requestPair(await createBenchKey(redisUrl, 'bench-idle'), ONE_LINE_BODY).proxied
  if (shape === 'stream') return requestPair(await createBenchKey(redisUrl, 'bench-idle'), streamBody(16)).proxied
  if (shape === 'gemini-key') {
    const key = await createBenchKey(redisUrl, 'bench-idle', false, ['gemini'])
    const body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'Say hello.' }] }], generationConfig: { maxOutputTokens: 16 } })
    return { path: `/gemini/v1beta/models/gemini-bench:generateContent?key=${key}`, headers: { 'content-type': 'application/json' }, body }
  }
  throw new Error(`--shape=${shape}: chat, stream or gemini-key`)
}
