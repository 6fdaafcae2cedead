// Preloaded (`node --import`) into the latency scenario's proxy, floor and fake upstream alike: every garbage
// collection that paused the main thread GC_RECORD_MS or more is appended to the file LOOPERS_BENCH_GC_FILE names,
// one line `{"at": epoch ms when it began, "ms": pause, "kind"}` (kind: 1 scavenge, 2 minor mark-sweep,
// 4 mark-compact, 8 incremental marking, 16 weak callbacks). Nothing runs between collections (no timer), so it
// costs a side one observer callback per collection and a write per long one.
import { appendFileSync } from 'node:fs'
import { performance, PerformanceObserver } from 'node:perf_hooks'
import { isMainThread } from 'node:worker_threads'

const GC_RECORD_MS = 1

const file = process.env.LOOPERS_BENCH_GC_FILE
if (isMainThread && file !== undefined) {
  new PerformanceObserver((list) => {
    let lines = ''
    for (const entry of list.getEntries()) {
      if (entry.duration < GC_RECORD_MS) continue
      const at = Math.round((performance.timeOrigin + entry.startTime) * 100) / 100
      lines += `${JSON.stringify({ at, ms: Math.round(entry.duration * 100) / 100, kind: entry.detail?.kind ?? null })}\n`
    }
    if (lines !== '') appendFileSync(file, lines)
  }).observe({ entryTypes: ['gc'] })
}
