// Preloaded (`node --import`) into the proxy the count-stall scenario starts: a timer due every 2 ms on the
// main thread. Each time it fires, the span since it last fired is read four ways: `blockedMs`, how late it
// fired (wall time, including time the OS ran other processes); `busyMs`, the span less the loop's idle time
// (libuv's wait for events); `ownMs`, that less the time the thread waited for a core (Linux:
// /proc/thread-self/schedstat), so what the proxy itself held the loop for (its code, and collections) on
// a loaded machine too (it reads low by a core wait that follows a wake-up, counted in both; `busyMs` is
// the bound above); and `cpuMs`, the thread's CPU time by process.threadCpuUsage, which on a kernel with
// tick-based accounting moves in whole ticks (4 ms at HZ=250): 0 or ~4 ms for anything shorter. A line
// `{"at": epoch ms, "blockedMs", "busyMs", "ownMs", "cpuMs"}` is appended to the file
// LOOPERS_BENCH_LOOP_DELAY_FILE names when the timer fired more than 5 ms late, or the span held over 1 ms of
// own work or 3 ms of CPU time; and `{"at", "gcMs", "gcKind"}` for each garbage collection that paused the
// thread 1 ms or more (gcKind: 1 scavenge, 4 mark-compact, 8 incremental marking, 16 weak callbacks).
import { appendFileSync, openSync, readSync } from 'node:fs'
import { performance, PerformanceObserver } from 'node:perf_hooks'
import { isMainThread } from 'node:worker_threads'

const file = process.env.LOOPERS_BENCH_LOOP_DELAY_FILE
if (isMainThread && file !== undefined) {
  const EVERY_MS = 2
  const round = (ms) => Math.round(ms * 100) / 100
  const cpuMs = () => {
    const { user, system } = process.threadCpuUsage()
    return (user + system) / 1000
  }
  // The second field of schedstat: nanoseconds this thread has waited on a run queue. Zero where there is none.
  let schedstat = null
  try {
    schedstat = openSync('/proc/thread-self/schedstat', 'r')
  } catch {}
  const text = Buffer.alloc(128)
  const waitedMs = () => {
    if (schedstat === null) return 0
    const n = readSync(schedstat, text, 0, text.length, 0)
    return Number(text.toString('latin1', 0, n).split(' ')[1]) / 1e6
  }
  let last = performance.now()
  let lastCpu = cpuMs()
  let lastWaited = waitedMs()
  let lastIdle = performance.eventLoopUtilization().idle
  setInterval(() => {
    const now = performance.now()
    const cpu = cpuMs()
    const waited = waitedMs()
    const idle = performance.eventLoopUtilization().idle
    const blockedMs = now - last - EVERY_MS
    const busyMs = now - last - (idle - lastIdle)
    const ownMs = busyMs - (waited - lastWaited)
    const spentMs = cpu - lastCpu
    last = now
    lastCpu = cpu
    lastWaited = waited
    lastIdle = idle
    if (blockedMs > 5 || ownMs > 1 || spentMs > 3) {
      appendFileSync(file, `${JSON.stringify({ at: Date.now(), blockedMs: round(blockedMs), busyMs: round(busyMs), ownMs: round(ownMs), cpuMs: round(spentMs) })}\n`)
    }
  }, EVERY_MS).unref()
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.duration >= 1) appendFileSync(file, `${JSON.stringify({ at: Date.now(), gcMs: round(entry.duration), gcKind: entry.detail?.kind })}\n`)
    }
  }).observe({ entryTypes: ['gc'] })
}
