// What a burst of requests on new connections costs the proxy and the floor, beside the same burst on kept-alive
// ones: after the warm-up (which leaves 64 connections open), each round sends `--burst` requests at once, first
// each on a connection of its own opened for it, then on the warm pool's open connections, and counts each side's
// CPU time (all threads, /proc schedstat) and the burst's wall time. When a server has closed idle keep-alive
// connections, a stall that piles requests up makes the client open new ones: what each costs says whether that
// lengthens the stall.
//   node bench/new-connections.mjs [--cli=dist/cli.js] [--burst=40] [--rounds=10]
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { closedLoop, createPool } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy, threadsCpuMs } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const burst = Number(arg('burst', '40'))
const rounds = Number(arg('rounds', '10'))

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-new-connections-', { fake: { completionTokens: 16 } })
try {
  const sides = {
    floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, store: 'redis', redisUrl: redis.url }),
    proxy: await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name: 'proxy', cliPath }),
  }
  started.push(...Object.values(sides))
  const request = requestPair(await createBenchKey(redis.url, 'bench-connections'), ONE_LINE_BODY).proxied
  const pools = { proxy: createPool(sides.proxy.url, 256), floor: createPool(sides.floor.url, 256) }
  for (const name of Object.keys(sides)) {
    await closedLoop({ origin: sides[name].url, request, concurrency: 64, durationMs: 15_000, maxRequests: 12_000, pool: pools[name] })
  }
  const tally = { proxy: { fresh: [], kept: [] }, floor: { fresh: [], kept: [] } }
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 === 0 ? ['proxy', 'floor'] : ['floor', 'proxy']) {
      for (const kind of ['fresh', 'kept']) {
        await sleep(200)
        const pool = kind === 'fresh' ? createPool(sides[name].url, burst) : pools[name]
        const cpuBefore = threadsCpuMs(sides[name].pid)
        const from = performance.now()
        await Promise.all(
          Array.from({ length: burst }, () =>
            pool.request({ path: request.path, method: 'POST', headers: request.headers, body: request.body }).then(({ statusCode, body }) => {
              if (statusCode !== 200) throw new Error(`status ${statusCode}`)
              return body.dump()
            }),
          ),
        )
        const wallMs = performance.now() - from
        const cpuMs = threadsCpuMs(sides[name].pid) - cpuBefore
        if (kind === 'fresh') await pool.close()
        tally[name][kind].push({ wallMs, cpuMs })
      }
    }
  }
  const med = (xs) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]
  for (const name of Object.keys(tally)) {
    const line = ['fresh', 'kept'].map((kind) => {
      const rows = tally[name][kind]
      return `${kind} connections: CPU ${med(rows.map((x) => x.cpuMs)).toFixed(1)} ms per burst (${((med(rows.map((x) => x.cpuMs)) * 1000) / burst).toFixed(0)} µs per request), wall ${med(rows.map((x) => x.wallMs)).toFixed(1)} ms`
    })
    process.stdout.write(`${name}, ${burst} requests at once, medians of ${rounds}: ${line.join('; ')}\n`)
  }
  await Promise.all(Object.values(pools).map((p) => p.close()))
} finally {
  await close()
}
