// The loop guard's cost: the proxy's CPU per request with the guard on (the default) and off
// (`--loop-limit 0`), on the embedded store, for a growing 24-message agent conversation whose every
// request is a new step (so the guard checks and records, and never refuses). Bounded: ROUNDS × 2 × N
// requests, 8 at a time, to 127.0.0.1 only; every process it starts is stopped.
// Run: `npm run build && node bench/loop-guard.mjs [--requests=N] [--rounds=R]`.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createFakeUpstream } from './fake-upstream.mjs'
import { createServer } from 'node:net'
import { ROOT } from './procs.mjs'

const arg = (name, fallback) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback)
const N = arg('requests', 400)
const ROUNDS = arg('rounds', 4)
const CONCURRENCY = 8
// --scopes=one (default): one conversation whose 256-step scope fills, then evicts on every request (the worst case);
// --scopes=many: each request opens its own conversation (a read and a write per request, no eviction).
const ONE_SCOPE = !process.argv.includes('--scopes=many')
const TICKS = 100 // USER_HZ on Linux

/** utime + stime of a process in ms, from /proc. */
function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS
}

/** Request i of a conversation that grows by one exchange per request: never the same step twice. */
function body(i) {
  const messages = [{ role: 'system', content: 'You are a coding agent. '.repeat(20) }, { role: 'user', content: `Fix the failing test in src/app.ts${ONE_SCOPE ? '' : ` (${i})`}` }]
  for (let k = 0; k < 11; k++) {
    messages.push({ role: 'assistant', content: null, tool_calls: [{ id: `c${k}`, type: 'function', function: { name: 'read_file', arguments: JSON.stringify({ path: `src/f${k}.ts` }) } }] })
    messages.push({ role: 'tool', tool_call_id: `c${k}`, content: `export const v${k} = ${k};\n`.repeat(8) })
  }
  messages.push({ role: 'user', content: `step ${i}` })
  return JSON.stringify({ model: 'bench-model', messages, max_tokens: 16 })
}

async function run(url, key, offset) {
  let next = 0
  const worker = async () => {
    while (next < N) {
      const i = offset + next++
      const r = await fetch(`${url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: body(i),
      })
      await r.arrayBuffer()
      if (r.status !== 200) throw new Error(`request ${i}: ${r.status}`)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
}

const dir = mkdtempSync(join(tmpdir(), 'loopers-bench-loop-'))
const fake = createFakeUpstream({ promptTokens: 100 })
await new Promise((resolve) => fake.server.listen(0, '127.0.0.1', resolve))
const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port: free } = probe.address()
    probe.close(() => resolve(free))
  })
})
const env = {
  PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), LOOPERS_ADMIN_PORT: '0', LOG_LEVEL: 'warn',
  LOOPERS_DB: join(dir, 'loopers.db'), LOOPERS_PRICING_PATH: join(ROOT, 'bench/prices.json'),
  LOOPERS_OPENAI_BASE_URL: `http://127.0.0.1:${fake.server.address().port}`, LOOPERS_OPENAI_API_KEY: 'sk-bench',
}
const proxy = spawn(process.execPath, [join(ROOT, 'dist/cli.js'), 'serve'], { env, stdio: 'ignore' })
try {
  const url = `http://127.0.0.1:${port}`
  for (let t = 0; !(await fetch(`${url}/health`).then((r) => r.ok, () => false)); t++) {
    if (t > 300) throw new Error('the proxy did not start')
    await new Promise((r) => setTimeout(r, 50))
  }
  const { createDb } = await import('../dist/budget/sqlite/database.js')
  const { createSqliteKeyAdmin } = await import('../dist/budget/sqlite/admin.js')
  const db = createDb(env.LOOPERS_DB)
  const admin = createSqliteKeyAdmin(db)
  const on = (await admin.createKey('guard-on', ['openai'], { unlimited: true })).key
  const off = (await admin.createKey('guard-off', ['openai'], { unlimited: true, loopLimit: 0 })).key
  db.close()
  await run(url, on, 1e6) // warm-up
  const totals = { on: 0, off: 0 }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, key] of round % 2 === 0 ? [['on', on], ['off', off]] : [['off', off], ['on', on]]) {
      const before = cpuMs(proxy.pid)
      await run(url, key, (round * 2 + (name === 'on' ? 0 : 1)) * N)
      totals[name] += cpuMs(proxy.pid) - before
    }
  }
  const perRequest = (ms) => (ms * 1000) / (ROUNDS * N)
  const on_ = perRequest(totals.on)
  const off_ = perRequest(totals.off)
  console.log(JSON.stringify({ scopes: ONE_SCOPE ? 'one' : 'many', requests: ROUNDS * N, cpu_us_per_request: { guard_on: Math.round(on_), guard_off: Math.round(off_) }, overhead_pct: Math.round(((on_ - off_) / off_) * 1000) / 10 }))
} finally {
  proxy.kill('SIGTERM')
  fake.server.close()
  rmSync(dir, { recursive: true, force: true })
}
