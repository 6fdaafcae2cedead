// CPU profiles of the proxy's and the floor's main threads over the measured requests only: each is fed the bench's
// non-streamed chat request open-loop at --rate (a warm-up of 4 s, then --duration ms profiled), one after the
// other, profiled by bench/window-profile-probe.mjs (preloaded; started and stopped by SIGUSR2), and summarised
// side by side by self time per function and per origin (bench/profile.mjs). For where CPU per request goes
// beyond the floor's at a given rate: `node bench/window-profile.mjs [--cli=dist/cli.js] [--rate=500]
// [--duration=6000] [--out=DIR]` after `npm run build`. The profiler adds its own cost (`post` in node:inspector)
// to both sides alike.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createPool, openLoop } from './load.mjs'
import { summarizeProfile } from './profile.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '500'))
const durationMs = Number(arg('duration', '6000'))
const out = resolve(arg('out', mkdtempSync(join(tmpdir(), 'loopers-window-profile-'))))
const PROBE = join(ROOT, 'bench/window-profile-probe.mjs')
const BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })
const WARM_UP_MS = 4000

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-window-', { watchdogMs: 5 * 60_000, fake: { completionTokens: 16 } })
try {
  const files = { proxy: join(out, 'proxy.cpuprofile'), floor: join(out, 'floor.cpuprofile') }
  process.env.WINDOW_PROFILE_OUT = files.floor
  const floor = await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url, nodeArgs: ['--import', PROBE] })
  started.push(floor)
  const proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath, nodeOptions: ['--import', PROBE], extraEnv: { WINDOW_PROFILE_OUT: files.proxy } })
  started.push(proxy)
  const request = requestPair(await createBenchKey(redis.url, 'bench-window'), BODY).proxied
  const served = {}
  for (const [name, side] of [['proxy', proxy], ['floor', floor]]) {
    const pool = createPool(side.url, 64)
    await openLoop({ origin: side.url, request, rate, durationMs: WARM_UP_MS, pool })
    process.kill(side.pid, 'SIGUSR2')
    await sleep(200)
    served[name] = (await openLoop({ origin: side.url, request, rate, durationMs, pool })).ok
    process.kill(side.pid, 'SIGUSR2')
    await sleep(1500)
    await pool.close()
  }
  for (const name of ['proxy', 'floor']) {
    const s = summarizeProfile(files[name], 12)
    const perRequest = (ms) => ((1000 * ms) / served[name]).toFixed(1)
    console.log(`\n${name}: ${served[name]} requests at ${rate}/s, ${perRequest(s.totalMs)} µs sampled a request (${files[name]})`)
    for (const f of s.top) console.log(`  ${perRequest(f.ms).padStart(6)} µs  ${f.name}  ${f.where}`)
    console.log('  by origin: ' + s.byOrigin.map((g) => `${g.origin} ${g.pct.toFixed(1)}%`).join(', '))
  }
} finally {
  await close()
}
