// Bytes promoted a request, and requests until the first mark-compact, of two proxy builds fed the latency
// scenario's open loop: each proxy runs with the launcher's flags plus `--trace-gc-nvp`, serves the bench's JIT
// warm-up (12,000 requests, 64 at a time), then `--phases` open-loop phases of `--duration` ms at `--rate`, the two
// builds alternating phase by phase (A first in odd phases). Per build and phase: requests served (cumulative),
// scavenges, bytes promoted a request, mark-compacts and the longest pause; at the end, the requests served before
// each build's first mark-compact. V8's own trace is the count: load moves when a collection comes, not what survives.
//   node bench/gc-promote.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] [--rate=1000] [--phases=12] [--duration=5000] [--warm=12000]
//                             [--flags-a=… --flags-b=… (more node flags for a side)] [--reasons (`--trace-gc` instead: each
//                             mark-compact's line with V8's reason for it; no bytes promoted)]
//                             [--gap=MS (quiet after each phase, as between the bench's runs: full collections in it counted apart)]
//                             [--keep-pool (one client pool a side for every phase, instead of a new one a phase as the bench's runs)]
//                             [--keep-log=DIR (each side's whole trace, copied there as a.log and b.log)]
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const rate = Number(arg('rate', '1000'))
const phases = Number(arg('phases', '12'))
const durationMs = Number(arg('duration', '5000'))
const warm = Number(arg('warm', '12000'))
const gapMs = Number(arg('gap', '0'))
const reasons = process.argv.includes('--reasons')
const builds = { a: resolve(arg('a', join(ROOT, 'dist/cli.js'))), b: resolve(arg('b', join(ROOT, 'dist/cli.js'))) }

/** V8's `--trace-gc-nvp` lines of `file` from byte `from`: each collection's kind, pause (ms) and bytes promoted. */
function collections(file, from) {
  const text = readFileSync(file, 'utf8').slice(from)
  const out = []
  for (const line of text.split('\n')) {
    if (line.includes('Mark-Compact')) out.push({ kind: 'trace', line: line.replace(/^\[[^\]]*\]\s*/, '') }, { kind: 'mc', pauseMs: 0, promoted: 0 })
    if (line.includes('Scavenge')) out.push({ kind: 's', pauseMs: 0, promoted: 0 })
    const kind = / gc=(\w+) /.exec(line)?.[1]
    if (kind === undefined) continue
    out.push({ kind, pauseMs: Number(/ pause=([\d.]+)/.exec(line)?.[1] ?? 0), promoted: Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0), after: Number(/ end_object_size=(\d+)/.exec(line)?.[1] ?? 0) })
  }
  return { out, size: text.length + from }
}

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-gc-promote-', { watchdogMs: 20 * 60_000, fake: { completionTokens: 16 } })
try {
  const sides = {}
  for (const name of ['a', 'b']) {
    sides[name] = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: fake.url, dir, name, cliPath: builds[name], nodeOptions: [reasons ? '--trace-gc' : '--trace-gc-nvp', ...(arg(`flags-${name}`, '')).split(/\s+/).filter(Boolean)] })
    started.push(sides[name])
  }
  const key = await createBenchKey(redis.url, 'bench-gc-promote', false, ['openai'])
  const request = requestPair(key, ONE_LINE_BODY).proxied
  const state = Object.fromEntries(Object.keys(sides).map((n) => [n, { served: 0, read: 0, firstMarkCompactAt: null, heapAfter: null }]))
  const take = (name) => {
    const { out, size } = collections(sides[name].logFile, state[name].read)
    state[name].read = size
    return out
  }
  for (const name of Object.keys(sides)) {
    const pool = createPool(sides[name].url, 64)
    const run = await closedLoop({ origin: sides[name].url, request, concurrency: 64, durationMs: 120_000, maxRequests: warm, pool })
    await pool.close()
    state[name].served += run.ok
    const gcs = take(name)
    const mcs = gcs.filter((g) => g.kind === 'mc').length
    process.stdout.write(`${name} warm-up: ${run.ok} requests, ${gcs.filter((g) => g.kind === 's').length} scavenges, ${mcs} mark-compacts\n`)
  }
  const keptPools = process.argv.includes('--keep-pool') ? Object.fromEntries(Object.keys(sides).map((n) => [n, createPool(sides[n].url, 256)])) : null
  process.stdout.write(`\nphase side  served  scavenges  promoted/req (B)  mark-compacts  longest pause (ms)  heap growth/req (B)${gapMs > 0 ? '  full GCs in the gap after' : ''}\n`)
  for (let p = 0; p < phases; p++) {
    for (const name of p % 2 === 0 ? ['a', 'b'] : ['b', 'a']) {
      const pool = keptPools?.[name] ?? createPool(sides[name].url, 256)
      const run = await openLoop({ origin: sides[name].url, request, rate, durationMs, pool })
      if (keptPools === null) await pool.close()
      const before = state[name].served
      state[name].served += run.ok
      const gcs = take(name)
      const scavenges = gcs.filter((g) => g.kind === 's')
      const mcs = gcs.filter((g) => g.kind === 'mc')
      if (mcs.length > 0 && state[name].firstMarkCompactAt === null) state[name].firstMarkCompactAt = `${before}-${state[name].served}`
      const promoted = scavenges.reduce((sum, g) => sum + g.promoted, 0)
      const longest = gcs.reduce((max, g) => Math.max(max, g.pauseMs), 0)
      let inGap = ''
      if (gapMs > 0) {
        await sleep(gapMs)
        const quiet = take(name)
        inGap = ` ${String(quiet.filter((g) => g.kind === 'mc').length).padStart(12)}`
        state[name].heapAfter = quiet.filter((g) => g.kind !== 'trace').at(-1)?.after ?? state[name].heapAfter
      }
      // The heap's growth a request from the previous phase's last collection to this one's, when no mark-compact came between.
      const last = scavenges.at(-1)?.after ?? null
      const growth = mcs.length === 0 && last !== null && state[name].heapAfter !== null ? ((last - state[name].heapAfter) / Math.max(1, run.ok)).toFixed(0) : '-'
      state[name].heapAfter = last
      for (const g of gcs) if (g.kind === 'trace') process.stdout.write(`      ${name}: ${g.line}\n`)
      process.stdout.write(`${String(p + 1).padStart(5)} ${name.padEnd(5)} ${String(state[name].served).padStart(7)} ${String(scavenges.length).padStart(10)} ${(promoted / Math.max(1, run.ok)).toFixed(0).padStart(17)} ${String(mcs.length).padStart(14)} ${longest.toFixed(1).padStart(19)} ${String(growth).padStart(17)}${inGap}\n`)
    }
  }
  if (arg('keep-log', null) !== null) {
    mkdirSync(resolve(arg('keep-log')), { recursive: true })
    for (const name of Object.keys(sides)) copyFileSync(sides[name].logFile, join(resolve(arg('keep-log')), `${name}.log`))
  }
  for (const name of Object.keys(sides)) process.stdout.write(`${name} (${builds[name]}): first mark-compact after ${state[name].firstMarkCompactAt ?? `none in ${state[name].served}`} requests\n`)
} finally {
  await close()
}
