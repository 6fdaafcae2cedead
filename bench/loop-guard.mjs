// The loop guard's cost: CPU per request with the guard on (the default) and off (`--loop-limit 0`), for a
// growing 24-message agent conversation whose every request is a new step (so the guard checks and records,
// and never refuses). --store=sqlite (default): the proxy's CPU; --store=redis: the proxy's and redis-server's
// (the Lua script runs there). Trials alternate on/off; the result is the median of the per-trial ratios
// (the machine is shared and noisy). Bounded: (TRIALS × 2 + 1) × N requests, 8 at a time, to 127.0.0.1 only;
// every process it starts is stopped. `npm run bench -- --only=loopGuard` runs it as a scenario (loopGuard below).
// Run: `npm run build && node bench/loop-guard.mjs [--store=sqlite|redis] [--scopes=one|many|growing] [--requests=N] [--trials=T] [--control]`.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createFakeUpstream } from './fake-upstream.mjs'
import { freePort, PROXY_CORE, ROOT, spawnChild, startRedis, threadsCpuMs } from './procs.mjs'

const CONCURRENCY = 8
const CHUNK = 40

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
 * CPU per request with the guard on vs off, `trials` alternating pairs of `requests` each; control: both
 * halves guard off (an A/A run). pin: the proxy on the proxy core, Redis on the other (as the bench does).
 */
export async function measureLoopGuard({ store = 'sqlite', requests: N = 400, trials = 6, scopes = 'one', control = false, pin = false } = {}) {
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
  try {
    const url = `http://127.0.0.1:${port}`
    for (let t = 0; !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); t++) {
      if (t > 300) throw new Error('the proxy did not start')
      await new Promise((r) => setTimeout(r, 50))
    }
    const keys = await makeKeys(env, store, control)
    const pids = redis === null ? [proxy.pid] : [proxy.pid, redis.pid]
    const cpu = () => pids.map(cpuMs)
    // Warm-up of both keys (a key's first requests cost more), and the one scope fills past its 256 steps.
    await run(url, keys.on, 1e6, Math.max(N, 320), scopes)
    await run(url, keys.off, 1e6, Math.max(N, 320), scopes)
    // Each trial alternates on and off every CHUNK requests, so both halves see the same neighbours (other
    // tenants come and go in bursts of seconds, which made whole-trial halves differ by up to ±50%).
    const pairs = []
    const next = { on: 0, off: 0 }
    for (let trial = 0; trial < trials; trial++) {
      const per = { on: pids.map(() => 0), off: pids.map(() => 0) }
      for (let done = 0; done < N; done += CHUNK) {
        const n = Math.min(CHUNK, N - done)
        for (const name of (trial + done / CHUNK) % 2 === 0 ? ['on', 'off'] : ['off', 'on']) {
          const before = cpu()
          await run(url, keys[name], next[name], n, scopes)
          next[name] += n
          cpu().forEach((ms, i) => (per[name][i] += ((ms - before[i]) * 1000) / N))
        }
      }
      pairs.push(per)
    }
    const total = (xs) => xs.reduce((a, b) => a + b, 0)
    const ratio = (pick) => median(pairs.map((t) => pick(t.on) / pick(t.off)))
    const pct = (r) => Math.round((r - 1) * 1000) / 10
    const us = (pick, name) => Math.round(median(pairs.map((t) => pick(t[name]))))
    const result = {
      store, control, scopes, requests: trials * 2 * N, trials,
      cpu_us_per_request: { guard_on: us(total, 'on'), guard_off: us(total, 'off') },
      overhead_pct: pct(ratio(total)),
      trial_overhead_pct: pairs.map((t) => pct(total(t.on) / total(t.off))),
    }
    if (redis !== null) {
      result.proxy_overhead_pct = pct(ratio((c) => c[0]))
      result.redis_cpu_us_per_request = { guard_on: us((c) => c[1], 'on'), guard_off: us((c) => c[1], 'off') }
      result.redis_overhead_pct = pct(ratio((c) => c[1]))
      // Redis's added CPU paired within each trial, and as a share of both processes' CPU with the guard off.
      result.redis_guard_us_per_request = Math.round(median(pairs.map((t) => t.on[1] - t.off[1])) * 10) / 10
      result.redis_guard_pct_of_total = Math.round(median(pairs.map((t) => (t.on[1] - t.off[1]) / total(t.off))) * 1000) / 10
    }
    return result
  } finally {
    proxy.kill('SIGTERM')
    await new Promise((resolve) => (proxy.exitCode === null ? proxy.once('exit', resolve) : resolve()))
    await redis?.stop()
    fake.server.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Bench scenario (g): the guard's cost on both stores, worst case (one conversation past its 256 steps) and
 * common case (conversations of 40 requests), beside an A/A control run (both halves guard off: the noise).
 */
export async function loopGuard(ctx) {
  const opts = { requests: ctx.quick ? 80 : 240, trials: ctx.quick ? 2 : 9, pin: ctx.pin }
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
  const result = await measureLoopGuard({
    store: option('store', 'sqlite'),
    requests: Number(option('requests', 400)),
    trials: Number(option('trials', option('rounds', 6))),
    scopes: option('scopes', 'one'),
    // --control: both halves use a guard-off key (an A/A run): the spread it shows is the machine's noise.
    control: process.argv.includes('--control'),
  })
  console.log(JSON.stringify(result))
  process.exit(0)
}
