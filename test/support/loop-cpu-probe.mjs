// Preloaded (`NODE_OPTIONS=--import …`) into a proxy process under test: a timer due every millisecond on
// the main thread records, whenever the main thread spent more than 1 ms of its own CPU time since the
// timer last fired, one line `{"at": epoch ms, "cpuMs": …}` in the file LOOPERS_TEST_LOOP_CPU_FILE names.
// A stretch the event loop could not turn, measured in CPU time: the machine's load does not inflate it.
import { appendFileSync } from 'node:fs'
import { isMainThread } from 'node:worker_threads'

const file = process.env.LOOPERS_TEST_LOOP_CPU_FILE
if (isMainThread && file !== undefined) {
  const cpuMs = () => {
    const { user, system } = process.threadCpuUsage()
    return (user + system) / 1000
  }
  let last = cpuMs()
  setInterval(() => {
    const now = cpuMs()
    if (now - last > 1) appendFileSync(file, `${JSON.stringify({ at: Date.now(), cpuMs: Math.round((now - last) * 10) / 10 })}\n`)
    last = cpuMs()
  }, 1).unref()
}
