// Per-thread CPU and `perf stat` counts of one process over a window, for bench/ab.mjs's --threads and --perf.
// Threads are grouped by what Node names them (/proc/PID/task/TID/comm): the main thread, V8's platform workers
// (concurrent GC and compilation), V8's delayed-task scheduler, libuv's pool, worker threads (the counting
// worker), and any other name as itself. `perf stat -p PID` counts software events and tracepoints (which load
// does not move as it moves time) over every thread the process had when it started.
import { spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'

const GROUPS = { MainThread: 'main', V8Worker: 'v8-workers', DelayedTaskSche: 'v8-delayed', 'libuv-worker': 'libuv-pool', WorkerThread: 'worker-threads' }

/** CPU ms of each thread of `pid` by its group name (schedstat, ns precision); a thread that ended is left out. */
export function threadGroupsCpuMs(pid) {
  const byTid = new Map()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      byTid.set(tid, { group: GROUPS[comm] ?? comm, ms: ns / 1e6 })
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return byTid
}

/** Per group, the CPU ms `pid`'s threads used between two threadGroupsCpuMs readings (a thread born between counts from 0). */
export function groupDelta(before, after) {
  const out = {}
  for (const [tid, { group, ms }] of after) out[group] = (out[group] ?? 0) + ms - (before.get(tid)?.ms ?? 0)
  return out
}

/**
 * The main thread's own counters (its tid is the pid): user and system CPU ms (/proc/PID/stat utime and stime, in
 * 10 ms ticks: read over thousands of requests), timeslices run (schedstat's third field: one a wake-up or a
 * preemption), and voluntary and involuntary context switches (/proc/PID/status). For mainDelta.
 */
export function mainThreadCounts(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name's closing parenthesis: state is field 3, utime 14 and stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const tickMs = 10
  const status = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8')
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN)
  return {
    'main-user-ms': Number(fields[11]) * tickMs,
    'main-sys-ms': Number(fields[12]) * tickMs,
    'main-timeslices': Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[2]),
    'main-voluntary-switches': field('voluntary_ctxt_switches'),
    'main-involuntary-switches': field('nonvoluntary_ctxt_switches'),
  }
}

/** Each of mainThreadCounts' counters between two readings. */
export function mainDelta(before, after) {
  return Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]))
}

/** Starts `perf stat -e EVENTS -p PID`; `stop()` resolves { event: count } once perf has printed its counts. */
export function startPerfStat(pid, events) {
  const child = spawn('perf', ['stat', '-x', ',', '-e', events.join(','), '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let text = ''
  child.stderr.on('data', (chunk) => (text += chunk))
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return {
    async stop() {
      child.kill('SIGINT')
      await exited
      const counts = {}
      for (const line of text.split('\n')) {
        const fields = line.split(',')
        if (fields.length >= 3 && /^\d+$/.test(fields[0])) counts[fields[2]] = Number(fields[0])
      }
      return counts
    },
  }
}

/** Starts `perf record -g -F 4999 -p PID -o FILE` (every thread); `stop()` resolves once perf has written FILE. */
export function startPerfRecord(pid, file) {
  mkdirSync(dirname(file), { recursive: true })
  const child = spawn('perf', ['record', '-q', '-g', '-F', '4999', '-p', String(pid), '-o', file], { stdio: 'ignore' })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return {
    async stop() {
      child.kill('SIGINT')
      await exited
    },
  }
}
