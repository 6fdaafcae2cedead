// Preloaded (`node --import`) into the proxy the count-stall scenario starts: a timer due every 2 ms on
// the main thread; each time it fires more than 5 ms late, or the main thread spent more than 3 ms of CPU
// since it last fired, one line `{"at": epoch ms, "blockedMs": …, "cpuMs": …}` is appended to the file
// LOOPERS_BENCH_LOOP_DELAY_FILE names. The event loop's blocks, seen from inside: `blockedMs` is wall
// time (it includes time the OS ran other processes), `cpuMs` the main thread's own CPU time in that span
// (what the proxy's code held the loop for, whatever the machine's load).
import { appendFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

const file = process.env.LOOPERS_BENCH_LOOP_DELAY_FILE
if (isMainThread && file !== undefined) {
  const EVERY_MS = 2
  const cpuMs = () => {
    const { user, system } = process.threadCpuUsage()
    return (user + system) / 1000
  }
  let last = performance.now()
  let lastCpu = cpuMs()
  setInterval(() => {
    const now = performance.now()
    const cpu = cpuMs()
    const blockedMs = now - last - EVERY_MS
    const spentMs = cpu - lastCpu
    last = now
    lastCpu = cpu
    if (blockedMs > 5 || spentMs > 3) {
      appendFileSync(file, `${JSON.stringify({ at: Date.now(), blockedMs: Math.round(blockedMs * 10) / 10, cpuMs: Math.round(spentMs * 10) / 10 })}\n`)
    }
  }, EVERY_MS).unref()
}
