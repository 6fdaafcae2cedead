// The loop guard's cost: CPU per request with the guard on (the default) and off (`--loop-limit 0`), for a
// growing 24-message agent conversation whose every request is a new step (so the guard checks and records,
// and never refuses). --store=sqlite (default): the proxy's CPU; --store=redis: the proxy's and redis-server's
// (the Lua script runs there). One proxy serves a guard-on and a guard-off key, 8 requests at a time, in slices of
// SLICE requests alternating in mirrored pairs (on off off on …); each trial's ratio is each key's CPU over its own
// slices, the result the median of the trials'. The method before (slices of 40, 240 requests a key a trial) read
// A/A trials from −21 % to +45 % (medians −7 % to +8 %); this one −13 % to +14 % at 1,200 requests a key a trial and
// −10 % to +10 % at 2,000 (medians −4 % to +1 %), on a host at load 10-14 on 2 cores. Bounded: (TRIALS × 2 + 1) × N
// requests and the warm-up, to 127.0.0.1 only; every process it starts is stopped. `npm run bench -- --only=loopGuard`
// runs it as a scenario (loopGuard below).
// Run: `npm run build && node bench/loop-guard.mjs [--store=sqlite|redis] [--scopes=one|many|growing] [--requests=N]
//       [--trials=T] [--slice=S] [--rate=R (slices as open loops at R/s)] [--control]`.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createFakeUpstream } from './fake-upstream.mjs'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { detectPinning, freePort, OTHERS_CORE, pinSelf, PROXY_CORE, ROOT, spawnChild, startRedis, threadsCpuMs } from './procs.mjs'

const CONCURRENCY = 8

const cpuMs = threadsCpuMs

/**
 * Request i of a conversation that grows by one exchange per request: never the same step twice. Scopes:
 * one: every request in one conversation, whose 256-step scope fills, then is trimmed as it grows (the worst
 * case); many: each request opens its own conversation (a new scope each); growing: conversations of 40
 * requests, a healthy agent's (its scope never needs a trim: the common case).
 */
export function body(i, scopes) {
  const conversation = scopes === 'one' ? '' : ` (${scopes === 'many' ? i : Math.floor(i / 40)})`
  const messages = [{ role: 'system', content: 'You are a coding agent. '.repeat(20) }, { role: 'user', content: `Fix the failing test in src/app.ts${conversation}` }]
  for (let k = 0; k < 11; k++) {
    messages.push({ role: 'assistant', content: null, tool_calls: [{ id: `c${k}`, type: 'function', function: { name: 'read_file', arguments: JSON.stringify({ path: `src/f${k}.ts` }) } }] })
    messages.push({ role: 'tool', tool_call_id: `c${k}`, content: `export const v${k} = ${k};\n`.repeat(8) })
  }
  messages.push({ role: 'user', content: `step ${i}` })
  return JSON.stringify({ model: 'bench-model', messages, max_tokens: 16 })
}

export async function run(url, key, offset, N, scopes) {
  let next = 0
  const worker = async () => {
    while (next < N) {
      const i = offset + next++
      const r = await fetch(`${url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: body(i, scopes),
      })
      const text = await r.text()
      if (r.status !== 200) throw new Error(`request ${i}: ${r.status} ${text.slice(0, 300)}`)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
}

/** Creates the guard-on and guard-off keys in the store the proxy uses; returns their raw keys. */
export async function makeKeys(env, store, control) {
  const make = async (admin) => ({
    on: (await admin.createKey('guard-on', ['openai'], control ? { unlimited: true, loopLimit: 0 } : { unlimited: true })).key,
    off: (await admin.createKey('guard-off', ['openai'], { unlimited: true, loopLimit: 0 })).key,
  })
  if (store === 'sqlite') {
    const { createDb } = await import('../dist/budget/sqlite/database.js')
    const { createSqliteKeyAdmin } = await import('../dist/budget/sqlite/admin.js')
    const db = createDb(env.LOOPERS_DB)
    try {
      return await make(createSqliteKeyAdmin(db))
    } finally {
      db.close()
    }
  }
  const { createRedisClient } = await import('../dist/budget/redis/redis-client.js')
  const { createKeyAdmin } = await import('../dist/budget/redis/admin.js')
  const redis = createRedisClient({ url: env.REDIS_URL, clusterNodes: null, commandTimeoutMs: 2_000 })
  try {
    for (let t = 0; redis.status !== 'ready'; t++) {
      if (t > 100) throw new Error('redis did not connect')
      await new Promise((r) => setTimeout(r, 20))
    }
    return await make(createKeyAdmin(redis))
  } finally {
    redis.disconnect()
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/**
 * Requests a slice sends, CONCURRENCY at a time: on and off alternate in mirrored pairs of slices (on off off on …),
 * ~10 ms of the proxy's CPU each, so a neighbour's burst on the shared core lands on both keys alike (slices of 75
 * read A/A trials of −23 % to +14 %, of 25 −8 % to +4 %, both open loops at 300/s).
 */
export const SLICE = 24
/** With a rate (--rate): slices are open loops at that rate instead (RATE: about a third of an idle core). */
export const RATE = 300

/**
 * The figures of one measurement from its slices: `slices` [{ trial, key: 'on' | 'off', ok, cpuMs: [ms of each
 * measured process] }]. Per trial, each key's CPU per request over its own slices (µs, each process and their total);
 * the guard's cost is on ÷ off per trial, its median across trials the overhead.
 */
export function summarizeGuard(slices) {
  const trials = [...new Set(slices.map((s) => s.trial))].sort((a, b) => a - b)
  const per = trials.map((trial) => {
    const of = (key) => {
      const own = slices.filter((s) => s.trial === trial && s.key === key)
      const served = own.reduce((n, s) => n + s.ok, 0)
      return own[0].cpuMs.map((_, p) => (own.reduce((ms, s) => ms + s.cpuMs[p], 0) * 1000) / served)
    }
    return { on: of('on'), off: of('off') }
  })
  const total = (xs) => xs.reduce((a, b) => a + b, 0)
  const pct = (r) => Math.round((r - 1) * 1000) / 10
  const us = (pick, key) => Math.round(median(per.map((t) => pick(t[key]))))
  const out = {
    cpu_us_per_request: { guard_on: us(total, 'on'), guard_off: us(total, 'off') },
    overhead_pct: pct(median(per.map((t) => total(t.on) / total(t.off)))),
    trial_overhead_pct: per.map((t) => pct(total(t.on) / total(t.off))),
  }
  if (per[0].on.length > 1) {
    out.proxy_overhead_pct = pct(median(per.map((t) => t.on[0] / t.off[0])))
    out.redis_cpu_us_per_request = { guard_on: us((c) => c[1], 'on'), guard_off: us((c) => c[1], 'off') }
    out.redis_overhead_pct = pct(median(per.map((t) => t.on[1] / t.off[1])))
    // Redis's added CPU paired within each trial, and as a share of both processes' CPU with the guard off.
    out.redis_guard_us_per_request = Math.round(median(per.map((t) => t.on[1] - t.off[1])) * 10) / 10
    out.redis_guard_pct_of_total = Math.round(median(per.map((t) => (t.on[1] - t.off[1]) / total(t.off))) * 1000) / 10
  }
  return out
}

/**
 * CPU per request with the guard on vs off: one proxy serving a guard-on and a guard-off key (one process, so no
 * process's own luck of layout or heap sits on one side), fed in slices of `slice` requests (CONCURRENCY at a time, or
 * an open loop at `rate` when given) alternating in mirrored pairs, `requests` per key per trial; control: both keys
 * guard off (an A/A run). pin: the proxy on the proxy core, Redis and this process on the other (as the bench does).
 */
export async function measureLoopGuard({ store = 'sqlite', requests: N = 2000, trials = 6, scopes = 'one', control = false, pin = false, rate = null, slice = SLICE } = {}) {
  if (store !== 'sqlite' && store !== 'redis') throw new Error(`store must be sqlite or redis, not ${store}`)
  if (!['one', 'many', 'growing'].includes(scopes)) throw new Error(`scopes must be one, many or growing, not ${scopes}`)
  const dir = mkdtempSync(join(tmpdir(), 'loopers-bench-loop-'))
  const fake = createFakeUpstream({ promptTokens: 100 })
  await new Promise((resolve) => fake.server.listen(0, '127.0.0.1', resolve))
  const redis = store === 'redis' ? await startRedis({ pin, dir }) : null
  const port = await freePort()
  const env = {
    PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), LOOPERS_ADMIN_PORT: '0', LOG_LEVEL: 'warn',
    LOOPERS_PRICING_PATH: join(ROOT, 'bench/prices.json'),
    LOOPERS_OPENAI_BASE_URL: `http://127.0.0.1:${fake.server.address().port}`, LOOPERS_OPENAI_API_KEY: 'sk-bench',
    // A CPU measurement on a shared machine, not a fail-closed test: a Redis starved for a second is not a 503.
    ...(redis === null ? { LOOPERS_DB: join(dir, 'loopers.db') } : { REDIS_URL: redis.url, LOOPERS_REDIS_TIMEOUT_MS: '10000' }),
  }
  const proxy = spawnChild(process.execPath, [join(ROOT, 'dist/cli.js'), 'serve'], { core: PROXY_CORE, pin, env })
  const url = `http://127.0.0.1:${port}`
  const pool = createPool(url, 64)
  try {
    for (let t = 0; !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); t++) {
      if (t > 300) throw new Error('the proxy did not start')
      await new Promise((r) => setTimeout(r, 50))
    }
    const keys = await makeKeys(env, store, control)
    const pids = redis === null ? [proxy.pid] : [proxy.pid, redis.pid]
    const cpu = () => pids.map(cpuMs)
    const next = { on: 0, off: 0 }
    const requestOf = (name) => (i) => ({
      path: '/openai/v1/chat/completions',
      headers: { authorization: `Bearer ${keys[name]}`, 'content-type': 'application/json' },
      body: body(next[name] + i, scopes),
    })
    const sliceOf = async (name, n) => {
      const r = await (rate === null
        ? closedLoop({ origin: url, request: requestOf(name), concurrency: CONCURRENCY, durationMs: 60_000, maxRequests: n, pool })
        : openLoop({ origin: url, request: requestOf(name), rate, durationMs: (n * 1000) / rate, pool }))
      next[name] += r.sent
      if (r.ok !== r.sent) throw new Error(`loop guard ${name}: ${r.ok} of ${r.sent} answered 2xx (${JSON.stringify(r.statuses)} ${Object.values(r.bodySamples)[0] ?? r.errorSamples[0] ?? ''})`)
      return r
    }
    // Warm-up of both keys past V8's tier-up (a key's first requests cost more; the one scope fills past its 256
    // steps), then a few slices of each as measured.
    await run(url, keys.on, 1e6, Math.max(N, 1000), scopes)
    await run(url, keys.off, 1e6, Math.max(N, 1000), scopes)
    for (let k = 0; k < 8; k++) for (const name of ['on', 'off']) await sliceOf(name, slice)
    const slices = []
    for (let trial = 0; trial < trials; trial++) {
      for (const [k, name] of sliceOrder(trial, Math.ceil(N / slice)).entries()) {
        const n = Math.min(slice, N - Math.floor(k / 2) * slice)
        const before = cpu()
        const r = await sliceOf(name, n)
        const after = cpu()
        slices.push({ trial, key: name, ok: r.ok, cpuMs: after.map((ms, p) => ms - before[p]) })
      }
    }
    return { store, control, scopes, requests: trials * 2 * N, trials, rate, slice, ...summarizeGuard(slices) }
  } finally {
    await pool.close()
    proxy.kill('SIGTERM')
    await new Promise((resolve) => (proxy.exitCode === null ? proxy.once('exit', resolve) : resolve()))
    await redis?.stop()
    fake.server.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The keys of a trial's 2 × `perKey` slices: mirrored pairs (on off, off on, …), the first key alternating between trials. */
export function sliceOrder(trial, perKey) {
  const first = trial % 2 === 0 ? ['on', 'off'] : ['off', 'on']
  return Array.from({ length: perKey }, (_, k) => (k % 2 === 0 ? first : [...first].reverse())).flat()
}

/**
 * Bench scenario (g): the guard's cost on both stores, worst case (one conversation past its 256 steps) and
 * common case (conversations of 40 requests), beside an A/A control run (both halves guard off: the noise).
 */
export async function loopGuard(ctx) {
  const opts = { requests: ctx.quick ? 240 : 2000, trials: ctx.quick ? 2 : 9, pin: ctx.pin }
  const out = { requests: opts.requests, trials: opts.trials, stores: {} }
  for (const store of ['sqlite', 'redis']) {
    ctx.log(`  loopGuard: ${store}`)
    out.stores[store] = {
      worst: await measureLoopGuard({ store, scopes: 'one', ...opts }),
      common: await measureLoopGuard({ store, scopes: 'growing', ...opts }),
      control: await measureLoopGuard({ store, scopes: 'one', ...opts, control: true }),
    }
  }
  return out
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const option = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback
  const pinning = detectPinning()
  if (pinning.used) pinSelf(OTHERS_CORE)
  const result = await measureLoopGuard({
    pin: pinning.used,
    store: option('store', 'sqlite'),
    requests: Number(option('requests', 2000)),
    rate: option('rate', null) === null ? null : Number(option('rate', RATE)),
    slice: Number(option('slice', SLICE)),
    trials: Number(option('trials', option('rounds', 6))),
    scopes: option('scopes', 'one'),
    // --control: both halves use a guard-off key (an A/A run): the spread it shows is the machine's noise.
    control: process.argv.includes('--control'),
  })
  console.log(JSON.stringify(result))
  process.exit(0)
}
