// A/B of two builds in one run: the floor (bench/floor.mjs) and two proxies, each `node <cli> serve` on the
// proxy core, fed the bench's non-streamed chat request in turn (order rotating every trial), so machine
// noise hits both builds alike. Prints CPU per request of each side, per trial and as medians with spread.
//   node bench/ab.mjs --a=OLD/dist/cli.js [--b=dist/cli.js] [--mode=closed|open] [--rate=1000] [--concurrency=64]
//                     [--trials=6] [--duration=4000] [--together (a and b loaded at once; each trial two halves, each side
//                     sending first in one; a and b started again, the other first, for each of --pairs=2 parts of the
//                     trials)] [--prof=DIR (B and the floor under --cpu-prof; or --import=MODULE, preloaded in all three)]
//                     [--store=redis|sqlite (sqlite: each proxy, and the floor, on its own embedded store file)]
//                     [--log-a=warn] [--log-b=warn] (each side's LOG_LEVEL: --log-a=info --log-b=warn with one build for the cost of info)
//                     [--body=BYTES (every side, the floor included, sends a realistic agent request about BYTES long
//                     (bench/agent-body.mjs), each a new step, instead of the one-liner)] [--stream (the request, agent or one-liner, asks for a
//                     stream)] [--shape=chat|anthropic (with --body: the agent request as OpenAI chat or as Anthropic Messages, to /anthropic/v1/messages)] [--usage (with --stream: the client asks for usage itself, so every side is served the same answer)] [--guard (the key keeps the
//                     default loop guard, off on the bench key; see bench/body-option.mjs)]
//                     [--warm=N (each side first serves N requests closed loop, 64 at a time: 12000 passes V8's tier-up, as the bench does)]
//                     [--threads (per side, CPU per request of each thread group: main, V8 workers, libuv pool, worker threads; and
//                     the main thread's user and system time, timeslices and context switches a request; see bench/thread-probe.mjs)]
//                     [--perf=EVENT,… (per side, `perf stat -e EVENT,… -p PID` over each trial, reported per request; e.g.
//                     context-switches,raw_syscalls:sys_enter,sched:sched_waking,syscalls:sys_enter_epoll_wait)]
//                     [--record=DIR (first trial only: `perf record -g` of each side's every thread into DIR/SIDE.data;
//                     read with `perf report -i DIR/b.data --sort comm,sym`)]
import { join, resolve } from 'node:path'
import { closedLoop, createPool, openLoop } from './load.mjs'
import { createBenchKey, threadsCpuMs, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { bodyOption, guardOn, ONE_LINE_BODY } from './body-option.mjs'
import { abReportLines, mergeRuns, ratioRange } from './ab-report.mjs'
import { groupDelta, mainDelta, mainThreadCounts, startPerfRecord, startPerfStat, threadGroupsCpuMs } from './thread-probe.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const mode = arg('mode', 'closed')
const trials = Number(arg('trials', '6'))
const durationMs = Number(arg('duration', '4000'))
const rate = Number(arg('rate', '1000'))
const concurrency = Number(arg('concurrency', '64'))
const builds = { a: resolve(arg('a', join(ROOT, 'dist/cli.js'))), b: resolve(arg('b', join(ROOT, 'dist/cli.js'))) }
const profDir = arg('prof', null)
const storeKind = arg('store', 'redis')
// LOG_LEVEL of each side (warn, as the bench runs; info is the default users run).
const logLevels = { a: arg('log-a', 'warn'), b: arg('log-b', 'warn') }
if (storeKind !== 'redis' && storeKind !== 'sqlite') throw new Error(`--store must be redis or sqlite, not ${storeKind}`)
// --together: a and b loaded at the same time (each its own closed loop or open loop), no floor trials.
const together = process.argv.includes('--together')
// --import=MODULE: preload MODULE (e.g. an allocation sampler) in b and the floor instead of --cpu-prof.
const profFlags = (dir) =>
  profDir === null ? [] : arg('import', null) !== null ? ['--import', arg('import')] : ['--cpu-prof', `--cpu-prof-dir=${dir}`]
const body = bodyOption()
const guard = guardOn()
const warmRequests = Number(arg('warm', '0'))
const threads = process.argv.includes('--threads')
const perfEvents = arg('perf', null)?.split(',') ?? null
const recordDir = arg('record', null)

const { pinning, dir, started, redis, fake, close } = await startBenchStack('loopers-ab-', { fake: { completionTokens: 16, ...body.fake } })
try {
  const sqlite = storeKind === 'sqlite'
  // On the embedded store each proxy has a file of its own (named by LOOPERS_DB, no REDIS_URL).
  const proxyStore = (name) => (sqlite ? { redisUrl: null, extraEnv: { LOOPERS_DB: join(dir, `${name}.db`), ...body.proxyEnv(fake.url) } } : { redisUrl: redis.url, extraEnv: body.proxyEnv(fake.url) })
  const floorStore = sqlite ? { store: 'sqlite', dbPath: join(dir, 'floor.db') } : { store: 'redis', redisUrl: redis.url }
  const nodeOptions = { a: arg('import', null) === null ? [] : ['--import', arg('import')], b: profFlags(profDir) }
  const startSide = (n) => startProxy({ pin: pinning.used, ...proxyStore(n), upstreamUrl: fake.url, dir, name: n, logLevel: logLevels[n], cliPath: builds[n], nodeOptions: nodeOptions[n] })
  const sides = { floor: await startFloor({ pin: pinning.used, upstreamUrl: fake.url, ...floorStore, nodeArgs: profFlags(`${profDir}/floor`) }) }
  sides.a = await startSide('a')
  sides.b = await startSide('b')
  started.push(...Object.values(sides))
  const keys = sqlite
    ? { a: await createSqliteBenchKey(join(dir, 'a.db'), guard, body.providers), b: await createSqliteBenchKey(join(dir, 'b.db'), guard, body.providers) }
    : // A key per build: an older build books a key's periods in hashes where this one moved them into one string.
      { a: await createBenchKey(redis.url, 'bench-ab', guard, body.providers), b: await createBenchKey(redis.url, 'bench-ab-b', guard, body.providers) }
  keys.b ??= keys.a
  keys.floor = keys.a
  const requests = Object.fromEntries(Object.entries(keys).map(([n, key]) => [n, body.request(requestPair(key, ONE_LINE_BODY).proxied)]))
  const names = Object.keys(sides)
  const pools = Object.fromEntries(names.map((n) => [n, createPool(sides[n].url, mode === 'closed' ? concurrency : 256)]))
  const served = Object.fromEntries(names.map((n) => [n, 0]))
  process.stdout.write(`${body.label}, loop guard ${guard ? 'on' : 'off'}\n`)
  process.stdout.write(`pids: ${names.map((n) => `${n} ${sides[n].pid}`).join(', ')}\n`)
  const run = async (n, ms) => {
    const r = await (mode === 'closed'
      ? closedLoop({ origin: sides[n].url, request: requests[n], concurrency, durationMs: ms, pool: pools[n], keepLatencies: together })
      : openLoop({ origin: sides[n].url, request: requests[n], rate, durationMs: ms, pool: pools[n], keepLatencies: together }))
    served[n] += r.ok
    return r
  }
  const warm = async (n) => {
    if (warmRequests > 0) await closedLoop({ origin: sides[n].url, request: requests[n], concurrency: 64, durationMs: 30_000, maxRequests: warmRequests, pool: pools[n] })
    await run(n, 2_000)
  }
  for (const n of names) await warm(n)
  /** Stops a and b and starts each again, in `order`, with new pools, warmed as at the start. */
  const restart = async (order) => {
    for (const n of order) {
      await pools[n].close()
      await sides[n].stop()
    }
    for (const n of order) {
      sides[n] = await startSide(n)
      started.push(sides[n])
      pools[n] = createPool(sides[n].url, mode === 'closed' ? concurrency : 256)
    }
    for (const n of order) await warm(n)
    process.stdout.write(`restarted ${order.join(' then ')}: pids ${order.map((n) => `${n} ${sides[n].pid}`).join(', ')}\n`)
  }
  const per = Object.fromEntries(names.map((n) => [n, []]))
  if (together) {
    // Both builds loaded at once on the same core: whatever else the machine does hits both alike. The side whose
    // load starts first in a turn (its requests sent first, so its process woken first) read dearer in A/A runs (open
    // loop at 500/s: b ÷ a 0.987 in the halves a started, 1.003 in those b started, means over 6), so each trial is
    // two halves, one started by each side, and each side's CPU per request is taken over both halves.
    // A process's own luck (its layout, its heap) held through a run: A/A runs read b ÷ a 0.97 in one run and 1.06 in
    // another, every trial alike, so a and b are started again (b first this time, and so on) for each of --pairs
    // parts of the trials.
    const pairs = Math.max(1, Math.min(trials, Number(arg('pairs', trials >= 2 ? '2' : '1'))))
    const ratios = []
    for (let t = 0; t < trials; t++) {
      const part = Math.floor((t * pairs) / trials)
      if (t > 0 && part !== Math.floor(((t - 1) * pairs) / trials)) await restart(part % 2 === 0 ? ['a', 'b'] : ['b', 'a'])
      const cpuUs = { a: 0, b: 0 }
      const runs = { a: [], b: [] }
      const halves = []
      for (const first of t % 2 === 0 ? ['a', 'b'] : ['b', 'a']) {
        await sleep(300)
        const order = first === 'a' ? ['a', 'b'] : ['b', 'a']
        const before = { a: threadsCpuMs(sides.a.pid), b: threadsCpuMs(sides.b.pid) }
        const [r0, r1] = await Promise.all(order.map((n) => run(n, durationMs / 2)))
        const half = { [order[0]]: r0, [order[1]]: r1 }
        const used = { a: threadsCpuMs(sides.a.pid) - before.a, b: threadsCpuMs(sides.b.pid) - before.b }
        for (const n of ['a', 'b']) {
          cpuUs[n] += used[n] * 1000
          runs[n].push(half[n])
        }
        halves.push({ first, ratio: half.a.ok > 0 && half.b.ok > 0 ? used.b / half.b.ok / (used.a / half.a.ok) : null })
      }
      const ra = mergeRuns(runs.a)
      const rb = mergeRuns(runs.b)
      // A side that served nothing in a trial has no CPU per request: the trial is named a failure, never a ratio.
      const perRequest = (n, r) => (r.ok > 0 ? cpuUs[n] / r.ok : null)
      const us = { a: perRequest('a', ra), b: perRequest('b', rb) }
      const ratio = us.a === null || us.b === null ? null : us.b / us.a
      ratios.push(ratio)
      const ms = (r) => `p50 ${r.latencyMs.p50?.toFixed(1) ?? '—'} p99 ${r.latencyMs.p99?.toFixed(1) ?? '—'} ms`
      const side = (n, r) => (us[n] === null ? `${n} served nothing (${r.non2xx + r.transportErrors} errors)` : `${n} ${us[n].toFixed(0)} µs ${Math.round(r.achievedRate)}/s ${ms(r)}`)
      process.stdout.write(`together ${t + 1}: ${side('a', ra)} | ${side('b', rb)} | b ÷ a ${ratio === null ? '—' : ratio.toFixed(3)}\n`)
      process.stdout.write(`  halves: ${halves.map((h) => `${h.first} first b ÷ a ${h.ratio === null ? '—' : h.ratio.toFixed(3)}`).join(', ')}\n`)
    }
    const failed = ratios.filter((x) => x === null).length
    process.stdout.write(`together b ÷ a CPU/request: median ${ratioRange(ratios, 3)}${failed === 0 ? '' : `; ${failed} trial(s) where a side served nothing, left out`}\n`)
  }
  for (let t = 0; t < (together ? 0 : trials); t++) {
    const line = []
    for (const n of names.map((_, i) => names[(i + t) % names.length])) {
      await sleep(300)
      const perf = perfEvents === null ? null : startPerfStat(sides[n].pid, perfEvents)
      const record = recordDir === null || t > 0 ? null : startPerfRecord(sides[n].pid, join(resolve(recordDir), `${n}.data`))
      if (perf !== null || record !== null) await sleep(100)
      const groupsBefore = threads ? threadGroupsCpuMs(sides[n].pid) : null
      const mainBefore = threads ? mainThreadCounts(sides[n].pid) : null
      const before = threadsCpuMs(sides[n].pid) / 1000
      const r = await run(n, durationMs)
      const us = r.ok > 0 ? ((threadsCpuMs(sides[n].pid) / 1000 - before) * 1e6) / r.ok : null
      const perRequest = (counts, scale) => Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, (v * scale) / Math.max(1, r.ok)]))
      const groups = groupsBefore === null ? null : perRequest(groupDelta(groupsBefore, threadGroupsCpuMs(sides[n].pid)), 1000)
      // The main thread's user and system time (µs a request, with the groups) and its timeslices and switches (a request, with the counts).
      const main = mainBefore === null ? null : mainDelta(mainBefore, mainThreadCounts(sides[n].pid))
      if (main !== null) {
        groups['main-user'] = (main['main-user-ms'] * 1000) / Math.max(1, r.ok)
        groups['main-sys'] = (main['main-sys-ms'] * 1000) / Math.max(1, r.ok)
      }
      const mainCounts = main === null ? {} : perRequest(Object.fromEntries(Object.entries(main).filter(([k]) => !k.endsWith('-ms'))), 1)
      const counts = perf === null && main === null ? null : { ...(perf === null ? {} : perRequest(await perf.stop(), 1)), ...mainCounts }
      await record?.stop()
      const errors = r.non2xx + r.transportErrors
      per[n].push({ us, rps: r.achievedRate, p50: r.latencyMs.p50, p99: r.latencyMs.p99, errors, served: r.ok, groups, counts })
      line.push(us === null ? `${n} served nothing (${errors} errors)` : `${n} ${us.toFixed(0)} µs ${Math.round(r.achievedRate)}/s p50 ${r.latencyMs.p50?.toFixed(2)} p99 ${r.latencyMs.p99?.toFixed(2)}`)
    }
    process.stdout.write(`trial ${t + 1}: ${line.join(' | ')}\n`)
  }
  if (!together) process.stdout.write(`${abReportLines(per).join('\n')}\n`)
  process.stdout.write(`served in all (warm-up included): ${names.map((n) => `${n} ${served[n]}`).join(', ')}\n`)
  await Promise.all(Object.values(pools).map((p) => p.close()))
} finally {
  await close()
}

/** A bench key (as createBenchKey's, with the default loop guard when `guard`) made on the embedded store file at `path`, as the CLI would. */
async function createSqliteBenchKey(path, guard, providers) {
  const { createDb } = await import('../dist/budget/sqlite/database.js')
  const { createSqliteKeyAdmin } = await import('../dist/budget/sqlite/admin.js')
  const db = createDb(path)
  try {
    const admin = createSqliteKeyAdmin(db)
    const { key, record } = await admin.createKey('bench-ab', providers)
    await admin.setBudget(record.hash, { limits: { daily: 10_000_000_000_000 }, ...(guard ? {} : { loopLimit: 0 }) })
    return key
  } finally {
    db.close()
  }
}
