// What a measured open-loop run's stalls were made of: the side's main thread waiting for a core (sampled from
// /proc/<pid>/task/<pid>/schedstat while the run lasts), the load generator sending late or collecting, and the
// connections opened on either hop. A run whose main thread waited WAIT_FLAG_MS or more within any WAIT_SPAN_MS, or
// whose generator sent a request GENERATOR_LAG_FLAG_MS or more late, is flagged as a pile-up: shown beside the
// figures, never dropped from them. A stall that every run of the trial saw alike is not flagged (RELATIVE_FLAG).
import { closeSync, openSync, readFileSync, readSync } from 'node:fs'
import { PerformanceObserver } from 'node:perf_hooks'
import { threadsCpuMs } from './procs.mjs'

/** The span over which a main thread's core wait is summed, and how often it is sampled. */
export const WAIT_SPAN_MS = 100
export const WAIT_SAMPLE_MS = 10
/** A main thread that waited this long for a core within WAIT_SPAN_MS stalled every request it held. */
export const WAIT_FLAG_MS = 10
/** A request sent this late by the generator is late before any server sees it. */
export const GENERATOR_LAG_FLAG_MS = 10

/** Fields of a schedstat line: ns on a core, ns waiting on a run queue, time slices; null for anything else. */
export function parseSchedstat(text) {
  const fields = text.trim().split(/\s+/)
  if (fields.length !== 3 || !fields.every((f) => /^\d+$/.test(f))) return null
  return { runNs: Number(fields[0]), waitNs: Number(fields[1]), slices: Number(fields[2]) }
}

/**
 * The most a thread waited for a core within any `spanMs`, from cumulative samples `[{ at: ms, waitNs }]` in time
 * order (ms): the largest growth of waitNs between two samples at most `spanMs` apart. 0 with fewer than two samples.
 * The kernel adds a wait when it ends, so one longer than `spanMs` reads whole in the span where it ended.
 */
export function longestWaitMs(samples, spanMs = WAIT_SPAN_MS) {
  let longest = 0
  let from = 0
  for (let to = 1; to < samples.length; to++) {
    while (samples[to].at - samples[from].at > spanMs) from++
    if (from < to) longest = Math.max(longest, (samples[to].waitNs - samples[from].waitNs) / 1e6)
  }
  return longest
}

/** A Redis latency event (LATENCY LATEST: a command, the expire cycle, a fork…) this long stalled every request behind it. */
export const REDIS_LATENCY_FLAG_MS = 10

/**
 * A stall is flagged only where a run differs: its measure must also reach RELATIVE_FLAG × the calmest value the same
 * measure read in the trial's other runs. On a 2-core host Redis's and the fake's main threads waited 14-33 ms in every
 * proxied and floor run alike, so an absolute threshold alone flagged all of them and said nothing.
 */
export const RELATIVE_FLAG = 2

/** Each cause: the stats field it reads and the absolute threshold it must reach first. */
const CAUSES = [
  ['core wait', 'mainWaitMaxMs', WAIT_FLAG_MS],
  ['generator lag', 'generatorLateMaxMs', GENERATOR_LAG_FLAG_MS],
  ['Redis core wait', 'redisWaitMaxMs', WAIT_FLAG_MS],
  ['upstream core wait', 'upstreamWaitMaxMs', WAIT_FLAG_MS],
  ['Redis latency', 'redisLatencyMaxMs', REDIS_LATENCY_FLAG_MS],
]

/**
 * The pile-up rule: the causes (of 'core wait', 'generator lag', 'Redis core wait', 'upstream core wait', 'Redis
 * latency') a run's stats show at or over their thresholds and, where `calmest` has the field, at or over RELATIVE_FLAG
 * times it; empty when none. `stats`: { mainWaitMaxMs, generatorLateMaxMs, redisWaitMaxMs, upstreamWaitMaxMs,
 * redisLatencyMaxMs }, any null (or absent) when it was not read; `calmest`: the same fields, the lowest the trial's
 * other runs read (trialPileUps), absent where none read it. The side's own collections are never a cause.
 */
export function pileUpCauses(stats, calmest = {}) {
  const causes = []
  for (const [cause, field, threshold] of CAUSES) {
    const value = stats[field] ?? null
    const other = calmest[field] ?? null
    if (value !== null && value >= threshold && (other === null || value >= RELATIVE_FLAG * other)) causes.push(cause)
  }
  return causes
}

/**
 * The causes of each run of one latency trial: `trial` maps a side (direct, proxied, floor) to its run's stats (as
 * pileUpCauses takes them) or undefined. Each measure is compared with what the trial's other runs read of the same
 * thread: the direct run's main thread is the fake upstream's, so its core wait stands beside the other runs' upstream
 * core wait (theirs only beside each other's). Returns { side: causes } for each side present.
 */
export function trialPileUps(trial) {
  // What each run read of each watched thread, by thread: the side's own main thread, the fake's, Redis's.
  const read = (side, stats) => ({
    own: side === 'direct' ? null : (stats.mainWaitMaxMs ?? null),
    upstream: side === 'direct' ? (stats.mainWaitMaxMs ?? null) : (stats.upstreamWaitMaxMs ?? null),
    redis: stats.redisWaitMaxMs ?? null,
    redisLatency: stats.redisLatencyMaxMs ?? null,
    generator: stats.generatorLateMaxMs ?? null,
  })
  const sides = SIDES.filter((side) => trial[side] !== undefined)
  const reads = Object.fromEntries(sides.map((side) => [side, read(side, trial[side])]))
  const lowest = (side, thread) => {
    // The fake waits less in the direct run (Redis idle beside it): a proxied or floor run's fake wait is compared with
    // the other run that loads Redis as it does, never with the direct run's.
    const peers = sides.filter((other) => other !== side && !(thread === 'upstream' && side !== 'direct' && other === 'direct'))
    const values = peers.map((other) => reads[other][thread]).filter((v) => v !== null)
    return values.length === 0 ? null : Math.min(...values)
  }
  return Object.fromEntries(
    sides.map((side) => {
      const calmest = {
        mainWaitMaxMs: lowest(side, side === 'direct' ? 'upstream' : 'own'),
        generatorLateMaxMs: lowest(side, 'generator'),
        redisWaitMaxMs: lowest(side, 'redis'),
        upstreamWaitMaxMs: lowest(side, 'upstream'),
        redisLatencyMaxMs: lowest(side, 'redisLatency'),
      }
      return [side, pileUpCauses(trial[side], calmest)]
    }),
  )
}

/** Makes Redis record every event of 1 ms or more (LATENCY) and every command that ran 1 ms or more (SLOWLOG). */
export async function watchRedis(redis) {
  await redis.call('CONFIG', 'SET', 'latency-monitor-threshold', '1')
  await redis.call('CONFIG', 'SET', 'slowlog-log-slower-than', '1000')
  await resetRedisStalls(redis)
}

/** Forgets Redis's latency events and slow commands so far (before a run). */
export async function resetRedisStalls(redis) {
  await redis.call('LATENCY', 'RESET')
  await redis.call('SLOWLOG', 'RESET')
}

/**
 * What Redis recorded since the last reset: { latencyMaxMs, events: [{ event, maxMs }], slowest: [{ usec, command }]
 * (up to 5) }. LATENCY LATEST answers [event, unix s, latest ms, max ms] per event; SLOWLOG GET [id, unix s, µs, argv, …].
 */
export async function readRedisStalls(redis) {
  const latest = await redis.call('LATENCY', 'LATEST')
  const slow = await redis.call('SLOWLOG', 'GET', '5')
  return parseRedisStalls(latest, slow)
}

export function parseRedisStalls(latest, slow) {
  const events = latest.map((row) => ({ event: String(row[0]), maxMs: Number(row[3]) }))
  return {
    latencyMaxMs: Math.max(0, ...events.map((e) => e.maxMs)),
    events,
    slowest: slow.map((row) => ({ usec: Number(row[2]), command: String(row[3]?.[0] ?? '') })),
  }
}

/** CPU time (ms) of every thread of `pid` but its main thread, from schedstat; null when it cannot be read. */
function otherThreadsCpuMs(pid) {
  if (pid === null) return null
  try {
    const main = parseSchedstat(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'latin1'))
    return main === null ? null : threadsCpuMs(pid) - main.runNs / 1e6
  } catch {
    return null
  }
}

/** Samples the cumulative core wait of `pid`'s main thread; `samples` stays empty when it cannot be read. */
function waitSampler(pid) {
  const samples = []
  let fd = null
  const buffer = Buffer.alloc(128)
  if (pid !== null) {
    try {
      fd = openSync(`/proc/${pid}/task/${pid}/schedstat`, 'r')
    } catch {}
  }
  return {
    samples,
    sample() {
      if (fd === null) return
      try {
        const read = parseSchedstat(buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0)))
        if (read !== null) samples.push({ at: performance.now(), waitNs: read.waitNs })
      } catch {
        closeSync(fd)
        fd = null // the process ended
      }
    },
    close() {
      if (fd !== null) closeSync(fd)
      fd = null
    },
    longestMs: () => (samples.length >= 2 ? longestWaitMs(samples) : null),
  }
}

/**
 * Starts watching a run: the main thread of `pid` (its core waits; null: not watched), the CPU its other threads
 * (V8's compilers and collectors, libuv's pool) took on the same core, this process's garbage collections, and the
 * main threads of the processes `also` names ({ name: pid }: Redis and the fake upstream, whose waits stall every side).
 * `stop()` returns { mainWaitMaxMs, mainWaitMs, otherThreadsCpuMs, gcs, gcLongestMs, alsoWaitMaxMs: { name: ms | null } }.
 */
export function watchRun(pid, { also = {} } = {}) {
  const othersBefore = otherThreadsCpuMs(pid)
  const main = waitSampler(pid)
  const others = Object.entries(also).map(([name, otherPid]) => [name, waitSampler(otherPid)])
  const sampleAll = () => {
    main.sample()
    for (const [, sampler] of others) sampler.sample()
  }
  sampleAll()
  const timer = setInterval(sampleAll, WAIT_SAMPLE_MS)
  const gcs = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcs.push(entry.duration)
  })
  observer.observe({ entryTypes: ['gc'] })
  return {
    stop() {
      sampleAll()
      clearInterval(timer)
      main.close()
      for (const [, sampler] of others) sampler.close()
      for (const entry of observer.takeRecords()) gcs.push(entry.duration)
      observer.disconnect()
      const { samples } = main
      const othersAfter = otherThreadsCpuMs(pid)
      return {
        mainWaitMaxMs: main.longestMs(),
        mainWaitMs: samples.length >= 2 ? (samples.at(-1).waitNs - samples[0].waitNs) / 1e6 : null,
        otherThreadsCpuMs: othersBefore === null || othersAfter === null ? null : othersAfter - othersBefore,
        gcs: gcs.length,
        gcLongestMs: Math.max(0, ...gcs),
        alsoWaitMaxMs: Object.fromEntries(others.map(([name, sampler]) => [name, sampler.longestMs()])),
      }
    },
  }
}

/**
 * The collection pauses bench/gc-record.mjs wrote to `file` that began within [fromMs, toMs] (epoch ms):
 * { count, longestMs, marks: [{ atMs: from fromMs, ms }] (the mark-compacts, kind 4) }; null when `file` is null or
 * unreadable. A line that is not a record is skipped.
 */
export function gcPausesIn(file, fromMs, toMs) {
  if (file === null) return null
  let text
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    if (error.code === 'ENOENT') return { count: 0, longestMs: 0, marks: [] } // no pause of 1 ms or more yet
    return null
  }
  const out = { count: 0, longestMs: 0, marks: [] }
  for (const line of text.split('\n')) {
    let record
    try {
      record = JSON.parse(line)
    } catch {
      continue
    }
    if (typeof record?.at !== 'number' || typeof record.ms !== 'number' || record.at < fromMs || record.at > toMs) continue
    out.count++
    out.longestMs = Math.max(out.longestMs, record.ms)
    if (record.kind === MARK_COMPACT) out.marks.push({ atMs: Math.round(record.at - fromMs), ms: record.ms })
  }
  return out
}
const MARK_COMPACT = 4

const SIDES = ['direct', 'proxied', 'floor']

/**
 * The pile-ups of a latency series, one entry per trial with a flagged run: { trial (1-based), runs: [{ side, causes }] }.
 * A trial whose runs carry no `stalls` (a series recorded before them) is never flagged.
 */
export function flaggedTrials(trials) {
  const out = []
  trials.forEach((trial, i) => {
    const runs = SIDES.filter((side) => (trial[side]?.stalls?.pileUp ?? []).length > 0).map((side) => ({ side, causes: trial[side].stalls.pileUp }))
    if (runs.length > 0) out.push({ trial: i + 1, runs })
  })
  return out
}
