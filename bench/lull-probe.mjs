// CPU of the first requests after a quiet period: starts each given build's proxy at once (one Redis, one fake
// upstream), warms each with --warm requests (closed loop, 16 at a time, one build after the other), then in
// rounds: waits --lull seconds with no request (past the idle release's 30 s: its collections run), sends each
// build --after requests closed loop, and at once the same number again; prints each build's CPU per request
// (its process's user + system time) for the requests after the lull and for the ones right after them.
//   node bench/lull-probe.mjs --cli=OLD/dist/cli.js --cli=dist/cli.js [--warm=12000] [--lull=55] [--after=2000] [--rounds=2]
import { parseArgs } from 'node:util'
import { closedLoop, createPool } from './load.mjs'
import { cpuSeconds, createBenchKey, sleep, startBenchStack, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const { values: args } = parseArgs({ options: { cli: { type: 'string', multiple: true }, warm: { type: 'string', default: '12000' }, lull: { type: 'string', default: '55' }, after: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '2' } } })

const stack = await startBenchStack('loopers-lull-probe-')
try {
  const key = await createBenchKey(stack.redis.url, 'lull-probe')
  const request = requestPair(key, ONE_LINE_BODY).proxied
  const proxies = []
  for (const [i, cli] of args.cli.entries()) {
    const p = await startProxy({ pin: stack.pinning.used, redisUrl: stack.redis.url, upstreamUrl: stack.fake.url, dir: stack.dir, name: `p${i}`, cliPath: cli })
    stack.started.push(p)
    proxies.push({ cli, p, pool: createPool(p.url, 16) })
  }
  /** CPU µs per request of `count` requests to `x`, closed loop, 16 at a time. */
  const measure = async (x, count) => {
    const before = cpuSeconds(x.p.pid)
    const result = await closedLoop({ origin: x.p.url, request, concurrency: 16, durationMs: 120_000, pool: x.pool, maxRequests: count })
    if (result.ok !== count) console.log(`!! ${x.cli}: ${result.ok} of ${count} answered 2xx`)
    return ((cpuSeconds(x.p.pid) - before) * 1e6) / count
  }
  for (const x of proxies) await measure(x, Number(args.warm))
  for (let round = 1; round <= Number(args.rounds); round++) {
    await sleep(Number(args.lull) * 1000)
    for (const x of proxies) {
      const first = await measure(x, Number(args.after))
      const next = await measure(x, Number(args.after))
      console.log(`round ${round} ${x.cli}: after the lull ${first.toFixed(0)} µs a request, right after ${next.toFixed(0)} µs (${(first / next).toFixed(3)}×)`)
    }
  }
  for (const x of proxies) await x.pool.close()
} finally {
  await stack.close()
}
