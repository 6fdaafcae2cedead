// Preloaded by bench/window-profile.mjs (`--import`): the first SIGUSR2 starts a CPU profile of the main thread
// (100 µs sampling), the next writes it to WINDOW_PROFILE_OUT, so a profile holds the measured requests only —
// not start-up, module loading or warm-up, which a whole-process `--cpu-prof` mixes in.
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'

const session = new Session()
session.connect()
let profiling = false
process.on('SIGUSR2', () => {
  if (!profiling) {
    profiling = true
    session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 100 }, () => session.post('Profiler.start')))
    return
  }
  profiling = false
  session.post('Profiler.stop', (err, result) => {
    if (err === null && process.env.WINDOW_PROFILE_OUT !== undefined) writeFileSync(process.env.WINDOW_PROFILE_OUT, JSON.stringify(result.profile))
  })
})
