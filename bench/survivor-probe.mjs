// Preloaded (`--import`) into a process by bench/survivors.mjs: on the first SIGUSR2 it starts V8's sampling heap
// profiler keeping only objects that outlived the young generation (collected by a mark-compact or still alive:
// promoted by a scavenge or allocated in old space by V8's pretenuring); on the second it writes the profile to
// SURVIVOR_PROBE_FILE.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'

const file = process.env.SURVIVOR_PROBE_FILE
let session = null
process.on('SIGUSR2', () => {
  if (session === null) {
    session = new Session()
    session.connect()
    session.post('HeapProfiler.startSampling', { samplingInterval: Number(process.env.SURVIVOR_PROBE_INTERVAL ?? 256), includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false })
    return
  }
  session.post('HeapProfiler.stopSampling', (error, result) => {
    writeFileSync(file, error === null ? JSON.stringify(result.profile) : JSON.stringify({ error: String(error) }))
    session.disconnect()
  })
})
