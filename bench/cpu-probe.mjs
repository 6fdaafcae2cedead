// Preloaded (`--import`) into a process whose main thread's CPU bench/agent-phases.mjs splits: the first SIGUSR2
// starts V8's sampling CPU profiler (every 50 µs), the second writes `<tmpdir>/loopers-cpu-<pid>.cpuprofile` and stops it.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import v8 from 'node:v8'

// LOOPERS_BENCH_TRACE=1: V8's --trace-gc, --trace-opt and --trace-deopt from 5 s after start on (after the line a
// side reports its URL on).
if (process.env.LOOPERS_BENCH_TRACE === '1') {
  setTimeout(() => {
    for (const flag of ['--trace-gc', '--trace-opt', '--trace-deopt']) v8.setFlagsFromString(flag)
  }, 5_000).unref()
}

let session = null
process.on('SIGUSR2', () => {
  if (session === null) {
    session = new Session()
    session.connect()
    session.post('Profiler.enable')
    session.post('Profiler.setSamplingInterval', { interval: 50 })
    session.post('Profiler.start')
    return
  }
  const done = session
  session = null
  done.post('Profiler.stop', (error, result) => {
    if (error === null) writeFileSync(join(tmpdir(), `loopers-cpu-${process.pid}.cpuprofile`), JSON.stringify(result.profile))
    done.disconnect()
  })
})
