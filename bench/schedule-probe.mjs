// Preloaded (`--import`) into a process by bench/open-schedule.mjs. On each SIGUSR2 it writes
// `<tmpdir>/loopers-schedule-<pid>.json`: since start, the async resources created by type (async_hooks `init`:
// Timeout, Immediate, TickObject, PROMISE, the sockets' and parsers' own), the callbacks entered by type (`before`:
// a timer or immediate firing, a nextTick, a promise reaction job, an I/O callback), the main thread's CPU
// (process.threadCpuUsage) and the heap bytes allocated (as bench/alloc-probe.mjs counts them).
// SCHEDULE_PROBE_HOOKS=0 leaves the hooks off (promise hooks cost far more than the work they count): CPU only.
import { createHook } from 'node:async_hooks'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import v8 from 'node:v8'

const created = new Map()
const entered = new Map()
const typeOf = new Map()
if (process.env.SCHEDULE_PROBE_HOOKS !== '0') {
  createHook({
    init(id, type) {
      created.set(type, (created.get(type) ?? 0) + 1)
      typeOf.set(id, type)
    },
    before(id) {
      const type = typeOf.get(id) ?? 'unknown'
      entered.set(type, (entered.get(type) ?? 0) + 1)
    },
    destroy(id) {
      typeOf.delete(id)
    },
    promiseResolve() {},
  }).enable()
}

let allocated = 0
let lastAfter = v8.getHeapStatistics().used_heap_size
let profiler = new v8.GCProfiler()
profiler.start()

process.on('SIGUSR2', () => {
  const data = profiler.stop()
  profiler = new v8.GCProfiler()
  for (const s of data.statistics) {
    allocated += s.beforeGC.heapStatistics.usedHeapSize - lastAfter
    lastAfter = s.afterGC.heapStatistics.usedHeapSize
  }
  const cpu = process.threadCpuUsage()
  const snapshot = {
    created: Object.fromEntries(created),
    entered: Object.fromEntries(entered),
    mainCpuUs: cpu.user + cpu.system,
    mainUserUs: cpu.user,
    allocated: allocated + v8.getHeapStatistics().used_heap_size - lastAfter,
  }
  profiler.start()
  writeFileSync(join(tmpdir(), `loopers-schedule-${process.pid}.json`), JSON.stringify(snapshot))
})
