// Profiles one proxy receiving the count-stall scenario's two big bodies once each (after a warm-up):
// `node bench/profile-big-body.mjs [outDir]` after `npm run build`. Prints each stretch of main-thread
// work over 3 ms (from the CPU profile's samples) with the functions that took most of it.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startFake, startProxy, startRedis } from './procs.mjs'
import { countChatTokens } from '../dist/tokens/tiktoken.js'

const PROMPT_BYTES = 10 * 1024 * 1024
const out = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'loopers-bigprof-'))
const dir = mkdtempSync(join(tmpdir(), 'loopers-bigprof-run-'))
const { createRedisClient } = await import('../dist/budget/redis/redis-client.js')
const { createKeyAdmin } = await import('../dist/budget/redis/admin.js')

const redis = await startRedis({ pin: false, dir })
const fake = await startFake({ pin: false })
const proxy = await startProxy({ pin: false, redisUrl: redis.url, upstreamUrl: fake.url, dir, cpuProfDir: out, extraEnv: { LOOPERS_MAX_BODY_BYTES: String(PROMPT_BYTES + 1024 * 1024) } })
const client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: 5_000 })
if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve))
const admin = createKeyAdmin(client)
try {
  const prose = 'The quick brown fox jumps over the lazy dog while the budget holds. '.repeat(Math.floor((PROMPT_BYTES - 200) / 68))
  const turns = Array.from({ length: Math.floor(PROMPT_BYTES / 50) }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `step ${i} ok` }))
  const cases = [
    ['prose', { model: 'bench-model', max_tokens: 5, messages: [{ role: 'user', content: prose }] }, 0.95],
    ['dense', { model: 'bench-model', max_tokens: 5, messages: turns }, 0.95],
    // Forwarded (the budget holds it): the stream option is spliced in and 10 MiB go upstream.
    ['dense, forwarded stream', { model: 'bench-model', max_tokens: 5, stream: true, messages: turns }, 2],
  ]
  for (const [kind, body, share] of cases) {
    const raw = JSON.stringify(body)
    const big = await admin.createKey(`bigprof-${kind}`, ['openai'])
    await admin.setBudget(big.record.hash, { limits: { daily: Math.floor(countChatTokens(body, 'bench-model') * share) }, loopLimit: 0 })
    for (let i = 0; i < 2; i++) {
      const started = performance.now()
      const r = await fetch(`${proxy.url}/openai/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${big.key}`, 'content-type': 'application/json' }, body: raw })
      await r.arrayBuffer()
      console.log(`${kind} #${i + 1}: ${r.status} in ${Math.round(performance.now() - started)} ms`)
    }
  }
} finally {
  client.disconnect()
  await proxy.stop()
  await fake.stop()
  await redis.stop()
}

// Stretches of main-thread work (consecutive non-idle samples) and their heaviest functions.
// The main thread's profile: the first one the process wrote (workers' come after it).
const file = readdirSync(out).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${proxy.pid}.0.`)).map((f) => join(out, f))[0]
const profile = JSON.parse(readFileSync(file, 'utf8'))
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const label = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`
const idle = new Set(['(idle)', '(program)', '(garbage collector)'])
let stretch = null
const stretches = []
let t = profile.startTime
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i]
  const node = byId.get(profile.samples[i])
  const name = node.callFrame.functionName
  if (idle.has(name) && name !== '(garbage collector)') {
    if (stretch !== null) stretches.push(stretch)
    stretch = null
    continue
  }
  stretch ??= { from: t, to: t, frames: new Map() }
  const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000
  stretch.to = t
  // Attribute the sample to its leaf and to the first project frame above it.
  let id = node.id
  let own = null
  while (id !== undefined) {
    const n = byId.get(id)
    if (own === null && n.callFrame.url.includes('/dist/')) own = label(n)
    id = parent.get(id)
  }
  const key = `${label(node)}  <- ${own ?? '?'}`
  stretch.frames.set(key, (stretch.frames.get(key) ?? 0) + dt)
}
for (const s of stretches.filter((s) => (s.to - s.from) / 1000 > 3)) {
  console.log(`\n+${Math.round((s.from - profile.startTime) / 1000)} ms: ${((s.to - s.from) / 1000).toFixed(1)} ms`)
  for (const [k, ms] of [...s.frames].sort((a, b) => b[1] - a[1]).slice(0, 5)) console.log(`   ${ms.toFixed(1)} ms  ${k}`)
}
