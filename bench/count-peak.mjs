// How long an exact count of a 10 MiB prompt takes in the counting worker while the event loop is idle, half busy
// or saturated (peak load: runnable all the time, yielding to its loop every ~1 ms), with the worker's thread at
// each nice value: `taskset -c 0 node <the launcher's node flags> bench/count-peak.mjs [--nice=19,10,5,0]`
// (one core, as the bench pins the proxy; setting a nice below the process's needs root). CFS gives the worker
// about 1/70 of the event loop's share at 19 steps below it, 1/10 at 10, 1/3 at 5.
import { readdirSync, readFileSync } from 'node:fs'
import { setPriority } from 'node:os'
import { performance } from 'node:perf_hooks'
import { createTokenCounter } from '../dist/tokens/worker.js'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const nices = arg('nice', '19,10,5,0').split(',').map(Number)
const PROMPT_BYTES = 10 * 1024 * 1024
const prose = 'The quick brown fox jumps over the lazy dog while the budget holds. '.repeat(Math.floor((PROMPT_BYTES - 200) / 68))
const raw = Buffer.from(JSON.stringify({ model: 'gpt-4o', max_tokens: 5, messages: [{ role: 'user', content: prose }] }))
// As the count-stall scenario: the count stops near the end of the body.
const job = { counter: 'chat', model: 'gpt-4o', factor: 1, raw, limit: 2_000_000 }
const counter = createTokenCounter({ timeoutMs: 120_000 })
await counter.warm(['o200k_base'])
await counter.count(job)

/** Keeps the main thread busy until the returned function is called: `saturated` all the time, else 1 ms of every 2. */
function occupy(saturated) {
  let stop = false
  const work = () => {
    const from = performance.now()
    while (performance.now() - from < 1) {}
    if (!stop) (saturated ? setImmediate : (f) => setTimeout(f, 1))(work)
  }
  work()
  return () => (stop = true)
}

for (const nice of nices) {
  for (const tid of readdirSync('/proc/self/task')) if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'WorkerThread') setPriority(Number(tid), nice)
  for (const load of ['idle', 'half busy', 'saturated']) {
    const ms = []
    for (let i = 0; i < 3; i++) {
      const release = load === 'idle' ? () => undefined : occupy(load === 'saturated')
      const from = performance.now()
      await counter.count(job)
      ms.push(performance.now() - from)
      release()
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    process.stdout.write(`nice ${nice}, event loop ${load}: count ${ms.map((m) => m.toFixed(0)).join(', ')} ms\n`)
  }
}
await counter.close()
