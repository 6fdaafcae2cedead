// Where the small requests' added latency comes from while a 10 MiB prompt is counted exactly (the count-stall
// scenario, bench/count-stall.mjs, taken apart): `node bench/count-probe.mjs [--cli=dist/cli.js] [--trials=5]
// [--body=prose|dense] [--conc=4] [--nice=N] [--send=buffer|string] [--idle] [--timeline]
// [--node-options='--trace-gc …' --keep-log=FILE]`.
// Each trial runs small requests (`--conc` at a time, node:http on kept-alive connections) for 2 s, then sends
// the big request and keeps them running until it is answered. It reads every thread of the proxy
// (/proc/<pid>/task/<tid>/schedstat: CPU time and time spent waiting on a run queue; name and nice from stat)
// at the start and end of both windows and every 10 ms during the count, and prints per thread kind (MainThread,
// the counting worker, V8's platform threads, libuv's) CPU and run-queue wait per second of each window, the
// count's duration, the small requests' p50/p99/max in each window, and with `--timeline` 50 ms bins (small
// requests' worst latency, this process's own timer lateness, main-thread CPU and wait, worker and V8 CPU).
// `--nice=N` sets the counting worker's thread to nice N from here (root) after the warm-up, to compare values;
// `--send=string` hands fetch the big body as a string (encoded on this process's loop in each trial);
// `--idle` sends the big request with no small load. Proxy on core 0, everything else on core 1 (taskset).
import { copyFileSync, readdirSync, readFileSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import { setPriority } from 'node:os'
import { isAbsolute, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { ROOT, startBenchStack, startProxy } from './procs.mjs'
import { countChatTokens } from '../dist/tokens/tiktoken.js'

const args = Object.fromEntries(process.argv.slice(2).map((a) => /^--([a-z-]+)(?:=(.*))?$/.exec(a)?.slice(1) ?? [a, '']).map(([k, v]) => [k, v ?? true]))
const cli = typeof args.cli === 'string' ? (isAbsolute(args.cli) ? args.cli : join(process.cwd(), args.cli)) : join(ROOT, 'dist/cli.js')
const trials = Number(args.trials ?? 5)
const bodyKind = args.body ?? 'prose'
const sendAs = args.send ?? 'buffer'
const idle = args.idle === true
const concurrency = Number(args.conc ?? 4)
const nice = args.nice === undefined ? null : Number(args.nice)
const PROMPT_BYTES = 10 * 1024 * 1024
const SMALL = Buffer.from('{"model":"bench-model","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}')
const BASELINE_MS = 2_000
const log = (line) => process.stdout.write(`${line}\n`)

/** Every thread of `pid`: kind (name: WorkerThread is the counting worker), CPU ns and run-queue wait ns. */
function threads(pid) {
  const out = new Map()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
      const [cpu, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number)
      const kind = name === 'WorkerThread' ? `counting worker (nice ${nice})` : name.startsWith('V8') ? 'V8 platform' : name.startsWith('libuv') ? 'libuv pool' : name
      out.set(tid, { kind, cpu, wait })
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out
}

/** CPU and wait ms per kind between two `threads` readings. */
function delta(before, after) {
  const kinds = {}
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { cpu: 0, wait: 0 }
    const k = (kinds[a.kind] ??= { cpuMs: 0, waitMs: 0 })
    k.cpuMs += (a.cpu - b.cpu) / 1e6
    k.waitMs += (a.wait - b.wait) / 1e6
  }
  return kinds
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(s.length * p))]
}
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-')

function perSecond(kinds, ms) {
  return Object.entries(kinds)
    .filter(([, v]) => v.cpuMs > 0.5 || v.waitMs > 0.5)
    .map(([k, v]) => `${k}: cpu ${f1((v.cpuMs * 1000) / ms)} wait ${f1((v.waitMs * 1000) / ms)}`)
    .join('; ')
}

const stack = await startBenchStack('loopers-count-probe-')
try {
  const { redis, fake, dir, pinning, started } = stack
  const proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, cliPath: cli, nodeOptions: typeof args['node-options'] === 'string' ? args['node-options'].split(/\s+/).filter(Boolean) : [], extraEnv: { LOOPERS_MAX_BODY_BYTES: String(PROMPT_BYTES + 1024 * 1024) } })
  started.push(proxy)
  const { createRedisClient } = await import('../dist/budget/redis/redis-client.js')
  const { createKeyAdmin } = await import('../dist/budget/redis/admin.js')
  const client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: 5_000 })
  await new Promise((ok) => (client.status === 'ready' ? ok() : client.once('ready', ok)))
  const admin = createKeyAdmin(client)
  const small = await admin.createKey('probe-small', ['openai'])
  await admin.setBudget(small.record.hash, { limits: { daily: 10_000_000_000_000 }, loopLimit: 0 })
  const prose = 'The quick brown fox jumps over the lazy dog while the budget holds. '.repeat(Math.floor((PROMPT_BYTES - 200) / 68))
  const turns = Array.from({ length: Math.floor(PROMPT_BYTES / 50) }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `step ${i} ok` }))
  const body = bodyKind === 'dense' ? { model: 'bench-model', max_tokens: 5, messages: turns } : { model: 'bench-model', max_tokens: 5, messages: [{ role: 'user', content: prose }] }
  const bigText = JSON.stringify(body)
  const bigBytes = Buffer.from(bigText)
  const tokens = countChatTokens(body, 'bench-model')
  const big = await admin.createKey('probe-big', ['openai'])
  await admin.setBudget(big.record.hash, { limits: { daily: Math.floor(tokens * 0.95) }, loopLimit: 0 })
  client.disconnect()
  await fake.reset({ promptTokens: 12, completionTokens: 5 })
  const send = () =>
    fetch(`${proxy.url}/openai/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${big.key}`, 'content-type': 'application/json' }, body: sendAs === 'string' ? bigText : bigBytes }).then(async (r) => (await r.arrayBuffer(), r.status))
  const forMs = (ms) => {
    const until = performance.now() + ms
    return () => performance.now() >= until
  }
  /** Small requests, `concurrency` at a time on kept-alive connections (node:http: fetch's garbage pauses this process), each with its start (ms after `t0`). */
  const timedLoad = async (done, t0) => {
    const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
    const target = new URL('/openai/v1/chat/completions', proxy.url)
    const headers = { authorization: `Bearer ${small.key}`, 'content-type': 'application/json', 'content-length': SMALL.length }
    const one = () =>
      new Promise((resolve) => {
        const s = performance.now()
        const req = httpRequest({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers }, (res) => {
          res.resume()
          res.once('end', () => resolve({ at: s - t0, ms: performance.now() - s, status: res.statusCode }))
        })
        req.once('error', () => resolve({ at: s - t0, ms: performance.now() - s, status: 0 }))
        req.end(SMALL)
      })
    const results = []
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (!done()) results.push(await one())
      }),
    )
    agent.destroy()
    return results
  }
  await timedLoad(forMs(3_000), performance.now())
  await send()
  await send()
  if (nice !== null) {
    // The counting worker's thread (10 nice steps below the process as started) set to `nice` from here, for a comparison.
    for (const tid of readdirSync(`/proc/${proxy.pid}/task`)) if (readFileSync(`/proc/${proxy.pid}/task/${tid}/comm`, 'utf8').trim() === 'WorkerThread') setPriority(Number(tid), nice)
  }
  log(`probe: proxy pid ${proxy.pid}, ${cli}; body ${bodyKind} ${(bigBytes.length / 1_048_576).toFixed(1)} MiB (${tokens} tokens), sent as ${sendAs}${idle ? ', idle' : `, ${concurrency} small requests at a time`}; worker nice ${nice ?? 'as started'}`)
  const summary = []
  for (let t = 0; t < trials; t++) {
    const b0 = threads(proxy.pid)
    if (args['keep-log'] !== undefined) log(`trial ${t + 1} baseline from ${Math.round(performance.timeOrigin + performance.now())}`)
    const bt = performance.now()
    const baseline = idle ? [] : await timedLoad(forMs(BASELINE_MS), bt)
    const bMs = performance.now() - bt
    const b1 = threads(proxy.pid)
    let done = false
    const t0 = performance.now()
    const samples = [{ at: 0, threads: b1 }]
    const sampler = setInterval(() => samples.push({ at: performance.now() - t0, threads: threads(proxy.pid) }), 10)
    // This process's own lateness (it times the small requests): a 1 ms timer's delays.
    const lags = []
    let lastTick = performance.now()
    const ticker = setInterval(() => {
      const now = performance.now()
      if (now - lastTick > 3) lags.push({ at: now - t0, ms: now - lastTick - 1 })
      lastTick = now
    }, 1)
    const request = send().finally(() => (done = true))
    const during = idle ? [] : await timedLoad(() => done, t0)
    const status = await request
    const countMs = performance.now() - t0
    clearInterval(sampler)
    clearInterval(ticker)
    const d1 = threads(proxy.pid)
    samples.push({ at: countMs, threads: d1 })
    const base = delta(b0, b1)
    const count = delta(b1, d1)
    const lat = (rs) => rs.map((r) => r.ms)
    log(`trial ${t + 1}: big ${status} in ${f1(countMs)} ms; small n ${baseline.length} → ${during.length}, p50 ${f1(pct(lat(baseline), 0.5))} → ${f1(pct(lat(during), 0.5))}, p99 ${f1(pct(lat(baseline), 0.99))} → ${f1(pct(lat(during), 0.99))}, max ${f1(Math.max(...lat(baseline)))} → ${f1(Math.max(...lat(during)))} ms; not 200: ${during.filter((r) => r.status !== 200).length}`)
    log(`  per second, baseline: ${perSecond(base, bMs)}`)
    log(`  per second, count:    ${perSecond(count, countMs)}`)
    log(`  count window totals: ${Object.entries(count).map(([k, v]) => `${k} cpu ${f1(v.cpuMs)} wait ${f1(v.waitMs)}`).join('; ')}`)
    // Timeline: 50 ms bins after the big request was sent.
    const bins = []
    for (let from = 0; from < countMs; from += 50) {
      const inBin = during.filter((r) => r.at + r.ms >= from && r.at + r.ms < from + 50)
      const s0 = samples.findLast((s) => s.at <= from) ?? samples[0]
      const s1 = samples.find((s) => s.at >= from + 50) ?? samples.at(-1)
      const d = delta(s0.threads, s1.threads)
      const worker = Object.entries(d).find(([k]) => k.startsWith('counting'))?.[1] ?? { cpuMs: 0 }
      const main = d.MainThread ?? { cpuMs: 0, waitMs: 0 }
      const v8 = d['V8 platform'] ?? { cpuMs: 0 }
      const span = s1.at - s0.at
      const lag = Math.max(0, ...lags.filter((l) => l.at >= from && l.at < from + 50).map((l) => l.ms))
      bins.push(`${from}: n${inBin.length} max ${f1(Math.max(0, ...inBin.map((r) => r.ms)))} | generator lag ${f1(lag)} | main cpu ${f1((main.cpuMs / span) * 100)}% wait ${f1((main.waitMs / span) * 100)}% | worker ${f1((worker.cpuMs / span) * 100)}% | v8 ${f1((v8.cpuMs / span) * 100)}%`)
    }
    if (args.timeline === true) for (const line of bins) log(`    ${line}`)
    summary.push({ countMs, baseP99: pct(lat(baseline), 0.99), p99: pct(lat(during), 0.99), mainWaitPerS: ((count.MainThread?.waitMs ?? 0) * 1000) / countMs, baseMainWaitPerS: ((base.MainThread?.waitMs ?? 0) * 1000) / bMs })
  }
  const med = (k) => f1(pct(summary.map((s) => s[k]), 0.5))
  log(`medians: count ${med('countMs')} ms; small p99 ${med('baseP99')} → ${med('p99')} ms; growth ${f1(pct(summary.map((s) => s.p99 - s.baseP99), 0.5))} (${summary.map((s) => f1(s.p99 - s.baseP99)).join(', ')}); main-thread wait ${med('baseMainWaitPerS')} → ${med('mainWaitPerS')} ms/s`)
} finally {
  // --keep-log=FILE: the proxy's stdout (e.g. with --node-options=--trace-gc), copied before the stack is removed.
  if (typeof args['keep-log'] === 'string') for (const s of stack.started) if (s.logFile !== undefined) copyFileSync(s.logFile, args['keep-log'])
  await stack.close()
}
