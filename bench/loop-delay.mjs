// Preloaded (`node --import`) into the proxy the count-stall scenario starts: a timer due every 2 ms on
// the main thread; each time it fires more than 5 ms late, one line `{"at": epoch ms, "blockedMs": …}` is
// appended to the file LOOPERS_BENCH_LOOP_DELAY_FILE names. The event loop's blocks, seen from inside.
import { appendFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

const file = process.env.LOOPERS_BENCH_LOOP_DELAY_FILE
if (isMainThread && file !== undefined) {
  const EVERY_MS = 2
  let last = performance.now()
  setInterval(() => {
    const now = performance.now()
    const blockedMs = now - last - EVERY_MS
    last = now
    if (blockedMs > 5) appendFileSync(file, `${JSON.stringify({ at: Date.now(), blockedMs: Math.round(blockedMs * 10) / 10 })}\n`)
  }, EVERY_MS).unref()
}
