// Preloaded (`--import`) into a process whose heap allocation is measured by bench/alloc.mjs. On each SIGUSR2 it
// writes `<tmpdir>/loopers-alloc-<pid>.json`: bytes allocated on the V8 heap since start (the sum, over every
// collection, of the heap's growth since the previous collection ended, plus the growth since the last one),
// and the scavenges and mark-compacts so far. With ALLOC_PROBE_SAMPLE=DIR, the first SIGUSR2 also starts V8's
// sampling heap profiler (objects collected by either collector kept) and the second writes DIR/<pid>.heapprofile.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import v8 from 'node:v8'

let allocated = 0
let lastAfter = v8.getHeapStatistics().used_heap_size
let scavenges = 0
let markCompacts = 0
let profiler = new v8.GCProfiler()
profiler.start()
const sampleDir = process.env.ALLOC_PROBE_SAMPLE ?? null
let session = null
let marks = 0

process.on('SIGUSR2', () => {
  const data = profiler.stop()
  profiler = new v8.GCProfiler()
  for (const s of data.statistics) {
    allocated += s.beforeGC.heapStatistics.usedHeapSize - lastAfter
    lastAfter = s.afterGC.heapStatistics.usedHeapSize
    if (s.gcType === 'Scavenge' || s.gcType === 'MinorMarkSweep') scavenges++
    else if (s.gcType === 'MarkSweepCompact') markCompacts++
  }
  const now = v8.getHeapStatistics().used_heap_size
  const snapshot = { allocated: allocated + now - lastAfter, scavenges, markCompacts }
  profiler.start()
  writeFileSync(join(tmpdir(), `loopers-alloc-${process.pid}.json`), JSON.stringify(snapshot))
  if (sampleDir === null) return
  marks++
  if (marks === 1) {
    session = new Session()
    session.connect()
    session.post('HeapProfiler.startSampling', { samplingInterval: 128, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  } else if (marks === 2) {
    session.post('HeapProfiler.stopSampling', (error, result) => {
      if (error === null) writeFileSync(join(sampleDir, `${process.pid}.heapprofile`), JSON.stringify(result.profile))
      session.disconnect()
    })
  }
})
