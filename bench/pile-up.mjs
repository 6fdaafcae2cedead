// What a measured open-loop run's stalls were made of: the side's main thread waiting for a core (sampled from
// /proc/<pid>/task/<pid>/schedstat while the run lasts), the load generator sending late or collecting, and the
// connections opened on either hop. A run whose main thread waited WAIT_FLAG_MS or more within any WAIT_SPAN_MS, or
// whose generator sent a request GENERATOR_LAG_FLAG_MS or more late, is flagged as a pile-up: shown beside the
// figures, never dropped from them.
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

/**
 * The pile-up rule: the causes (of 'core wait', 'generator lag') a run's stats show over their thresholds; empty
 * when neither. `stats`: { mainWaitMaxMs, generatorLateMaxMs }, either null when it was not read.
 */
export function pileUpCauses({ mainWaitMaxMs, generatorLateMaxMs }) {
  const causes = []
  if (mainWaitMaxMs !== null && mainWaitMaxMs >= WAIT_FLAG_MS) causes.push('core wait')
  if (generatorLateMaxMs !== null && generatorLateMaxMs >= GENERATOR_LAG_FLAG_MS) causes.push('generator lag')
  return causes
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

/**
 * Starts watching a run: the main thread of `pid` (its core waits; null: not watched), the CPU its other threads
 * (V8's compilers and collectors, libuv's pool) took on the same core, and this process's garbage collections.
 * `stop()` returns { mainWaitMaxMs, mainWaitMs, otherThreadsCpuMs, gcs, gcLongestMs }.
 */
export function watchRun(pid) {
  const othersBefore = otherThreadsCpuMs(pid)
  const samples = []
  let fd = null
  const buffer = Buffer.alloc(128)
  const sample = () => {
    if (fd === null) return
    try {
      const read = parseSchedstat(buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0)))
      if (read !== null) samples.push({ at: performance.now(), waitNs: read.waitNs })
    } catch {
      fd = null // the process ended
    }
  }
  if (pid !== null) {
    try {
      fd = openSync(`/proc/${pid}/task/${pid}/schedstat`, 'r')
    } catch {}
  }
  sample()
  const timer = fd === null ? null : setInterval(sample, WAIT_SAMPLE_MS)
  const gcs = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcs.push(entry.duration)
  })
  observer.observe({ entryTypes: ['gc'] })
  return {
    stop() {
      sample()
      if (timer !== null) clearInterval(timer)
      if (fd !== null) closeSync(fd)
      for (const entry of observer.takeRecords()) gcs.push(entry.duration)
      observer.disconnect()
      const read = samples.length >= 2
      const othersAfter = otherThreadsCpuMs(pid)
      return {
        mainWaitMaxMs: read ? longestWaitMs(samples) : null,
        mainWaitMs: read ? (samples.at(-1).waitNs - samples[0].waitNs) / 1e6 : null,
        otherThreadsCpuMs: othersBefore === null || othersAfter === null ? null : othersAfter - othersBefore,
        gcs: gcs.length,
        gcLongestMs: Math.max(0, ...gcs),
      }
    },
  }
}

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
