// Preloaded (`node --import`) into the proxy and the floor by bench/tail-causes.mjs: a timer every 2 ms on the main
// thread reads, for the span since it last fired, the main thread's wait for a core (/proc/thread-self/schedstat),
// its own work (the span less libuv's idle time and the wait), and the CPU of every other thread of the process
// (V8's compilers and concurrent markers, libuv's pool: /proc/self/task/<tid>/schedstat, listed again each second).
// A span with a wait ≥ 0.5 ms, own work ≥ 1 ms or other threads' CPU ≥ 0.5 ms is kept as
// `{"from", "to" (epoch ms), "waitMs", "ownMs", "workersMs"}`; each collection pause ≥ 0.5 ms as
// `{"from", "to", "gcMs", "gcKind"}` (1 scavenge, 4 mark-compact, 8 incremental marking, 16 weak callbacks).
// Lines are buffered and appended every 250 ms to the file LOOPERS_BENCH_TAIL_FILE names. Both sides carry it alike.
import { appendFileSync, closeSync, openSync, readdirSync, readSync } from 'node:fs'
import { performance, PerformanceObserver } from 'node:perf_hooks'
import { isMainThread } from 'node:worker_threads'

const file = process.env.LOOPERS_BENCH_TAIL_FILE
if (isMainThread && file !== undefined) {
  const EVERY_MS = 2
  const round = (ms) => Math.round(ms * 1000) / 1000
  const epoch = (t) => performance.timeOrigin + t
  const text = Buffer.alloc(128)
  const field = (fd, i) => {
    const n = readSync(fd, text, 0, text.length, 0)
    return Number(text.toString('latin1', 0, n).split(' ')[i]) / 1e6
  }
  const main = openSync('/proc/thread-self/schedstat', 'r')
  // The other threads' schedstat descriptors, by thread id; threads come and go (libuv's pool starts lazily).
  let others = new Map()
  const listOthers = () => {
    const next = new Map()
    for (const tid of readdirSync('/proc/self/task')) {
      if (Number(tid) === process.pid) continue
      const fd = others.get(tid) ?? (() => {
        try {
          return openSync(`/proc/self/task/${tid}/schedstat`, 'r')
        } catch {
          return null
        }
      })()
      if (fd !== null) next.set(tid, fd)
    }
    for (const [tid, fd] of others) if (!next.has(tid)) closeSync(fd)
    others = next
  }
  const othersCpu = () => {
    let ms = 0
    for (const fd of others.values()) {
      try {
        ms += field(fd, 0)
      } catch {}
    }
    return ms
  }
  listOthers()
  let lines = []
  let last = performance.now()
  let lastWait = field(main, 1)
  let lastIdle = performance.eventLoopUtilization().idle
  let lastOthers = othersCpu()
  let ticks = 0
  setInterval(() => {
    if (++ticks % 500 === 0) {
      listOthers()
      lastOthers = othersCpu()
    }
    const now = performance.now()
    const wait = field(main, 1)
    const idle = performance.eventLoopUtilization().idle
    const workers = othersCpu()
    const waitMs = wait - lastWait
    const ownMs = now - last - (idle - lastIdle) - waitMs
    const workersMs = workers - lastOthers
    if (waitMs >= 0.5 || ownMs >= 1 || workersMs >= 0.5) {
      lines.push(JSON.stringify({ from: epoch(last), to: epoch(now), waitMs: round(waitMs), ownMs: round(ownMs), workersMs: round(workersMs) }))
    }
    last = now
    lastWait = wait
    lastIdle = idle
    lastOthers = workers
  }, EVERY_MS).unref()
  setInterval(() => {
    if (lines.length === 0) return
    appendFileSync(file, `${lines.join('\n')}\n`)
    lines = []
  }, 250).unref()
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.duration >= 0.5) {
        lines.push(JSON.stringify({ from: epoch(entry.startTime), to: epoch(entry.startTime + entry.duration), gcMs: round(entry.duration), gcKind: entry.detail?.kind }))
      }
    }
  }).observe({ entryTypes: ['gc'] })
}
