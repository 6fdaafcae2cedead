// Where the bytes that outlive the young generation are allocated: a proxy build with bench/survivor-probe.mjs
// preloaded serves the latency scenario's warm-up (12,000 requests, 64 at a time, then 10 s of the open loop), then
// `--phases` open-loop runs of `--duration` ms at `--rate` with `--gap` ms of quiet after each (as between the bench's
// runs), sampled by V8's heap profiler keeping only objects no scavenge collected (promoted, or allocated in old
// space by V8's pretenuring). Prints the bytes a request by allocating function (the sampled stack's top frame) and
// by the first frame in the proxy's own code (dist/) under it. Sampling counts what survives, which load barely moves.
//   node bench/survivors.mjs [--cli=dist/cli.js] [--rate=1000] [--phases=4] [--duration=5000] [--gap=2000]
//                            [--warm=12000] [--interval=256 (bytes between samples)] [--top=25] [--flags=… (more node flags)]
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const rate = Number(arg('rate', '1000'))
const phases = Number(arg('phases', '4'))
const durationMs = Number(arg('duration', '5000'))
const gapMs = Number(arg('gap', '2000'))
const warm = Number(arg('warm', '12000'))
const top = Number(arg('top', '25'))
/** The build's own code: a frame from this folder is the proxy's. */
const DIST = `${dirname(cliPath)}/`

/** `frame` as `name file:line` (the file relative to the repository, or node's own module name). */
function where(frame) {
  const url = frame.url.replace(/^file:\/\//, '')
  const file = url === '' ? '(native)' : url.startsWith('/') ? relative(ROOT, url) : url
  return `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`
}

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-survivors-', { watchdogMs: 20 * 60_000, fake: { completionTokens: 16 } })
try {
  const file = join(dir, 'survivors.heapprofile')
  const proxy = await startProxy({
    pin: pinning.used,
    redisUrl: redis.url,
    upstreamUrl: fake.url,
    dir,
    cliPath,
    nodeOptions: ['--import', join(ROOT, 'bench/survivor-probe.mjs'), ...arg('flags', '').split(/\s+/).filter(Boolean)],
    extraEnv: { SURVIVOR_PROBE_FILE: file, SURVIVOR_PROBE_INTERVAL: arg('interval', '256') },
  })
  started.push(proxy)
  const request = requestPair(await createBenchKey(redis.url, 'bench-survivors'), ONE_LINE_BODY).proxied
  const warmPool = createPool(proxy.url, 256)
  await closedLoop({ origin: proxy.url, request, concurrency: 64, durationMs: 30_000, maxRequests: warm, pool: warmPool })
  await openLoop({ origin: proxy.url, request, rate, durationMs: 10_000, pool: warmPool })
  await warmPool.close().catch(() => undefined)
  process.kill(proxy.pid, 'SIGUSR2')
  await sleep(200)
  let requests = 0
  for (let p = 0; p < phases; p++) {
    const pool = createPool(proxy.url, 256)
    requests += (await openLoop({ origin: proxy.url, request, rate, durationMs, pool })).ok
    await pool.close().catch(() => undefined)
    await sleep(gapMs)
  }
  process.kill(proxy.pid, 'SIGUSR2')
  // Written in one call, but seen between its creation and its last byte: read until it parses.
  let profile = null
  for (let i = 0; i < 300 && profile === null; i++) {
    await sleep(100)
    try {
      profile = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null
    } catch {
      profile = null
    }
  }
  if (profile === null) throw new Error('no heap profile from the proxy')
  const byTop = new Map()
  const byOwn = new Map()
  let total = 0
  const walk = (node, stack) => {
    const here = [...stack, node.callFrame]
    if (node.selfSize > 0) {
      total += node.selfSize
      const topKey = where(node.callFrame)
      byTop.set(topKey, (byTop.get(topKey) ?? 0) + node.selfSize)
      const own = [...here].reverse().find((f) => f.url.includes(DIST))
      const ownKey = own === undefined ? '(no proxy frame)' : `${where(own)}  <- ${topKey}`
      byOwn.set(ownKey, (byOwn.get(ownKey) ?? 0) + node.selfSize)
    }
    for (const child of node.children) walk(child, here)
  }
  walk(profile.head, [])
  const perRequest = (bytes) => (bytes / Math.max(1, requests)).toFixed(0).padStart(6)
  process.stdout.write(`${requests} requests at ${rate}/s (${relative(ROOT, cliPath) || cliPath}): ${perRequest(total).trim()} B a request outlived the young generation (sampled)\n\nB/request  allocated by\n`)
  for (const [key, bytes] of [...byTop].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`${perRequest(bytes)}  ${key}\n`)
  process.stdout.write('\nB/request  first proxy frame  <- allocated by\n')
  for (const [key, bytes] of [...byOwn].sort((x, y) => y[1] - x[1]).slice(0, top)) process.stdout.write(`${perRequest(bytes)}  ${key}\n`)
} finally {
  await close()
}
