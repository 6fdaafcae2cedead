// A full collection of the calling process, on demand, without `--expose-gc` on its command line: the bench's own
// processes (the load generator, the fake upstream) run one before each measured latency run, so their old
// generation never reaches a mark-compact inside one (the servers measured are never collected this way).
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

let gc = null

/** Runs one full (mark-compact) collection now; resolves with its milliseconds. */
export function collectGarbage() {
  if (gc === null) {
    // `gc` exists only in contexts made after the flag is set, hence the new context.
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc')
  }
  const started = performance.now()
  gc({ type: 'major', execution: 'sync' })
  return performance.now() - started
}
