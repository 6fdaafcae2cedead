/**
 * Gives back the memory a burst of traffic left behind, once the proxy has gone quiet. V8 keeps the young
 * generation it grew under load (up to 128 MiB on a large machine) and the pages of a collected old
 * generation resident for good (the launcher turns V8's memory reducer off: src/cli.ts says why); only a
 * memory-reducing full collection returns them to the OS. It runs once per quiet period (or `rounds` times, a
 * second apart), after `idleMs` with no request in flight and none begun, so the pause (tens of milliseconds,
 * ~150 on a busy core) never lands among traffic; a request arriving during one waits that long. Loading the modules grows the young
 * generation the same way (to ~16 MiB resident), so the proxy also releases once before it listens, when no
 * request can wait on the pause.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

interface IdleReleaseOptions {
  /** Quiet time before a release, in ms; 0 turns releasing off. */
  idleMs: number
  /** Requests begun so far (never decreases) and requests in flight now. */
  activity(): { begun: number; inflight: number }
  /** The release itself (tests); default: V8's memory-reducing full collection. */
  collect?: () => void
  /** Release once at once, before the first check (start-up, before listening). */
  atStart?: boolean
  /**
   * Releases per quiet period (default 1), `roundGapMs` apart (default 1 s), so no pause is longer than one
   * collection's. Each is two or more full collections, and V8 drops the compiled code of a function that has not
   * run through six of them (optimized code stays): four let go of what ran only at start-up or before the lull.
   */
  rounds?: number
  roundGapMs?: number
  /** Told after each release: why, how long it took and the resident set before and after, in bytes. */
  onRelease?: (release: { after: 'start' | 'idle'; ms: number; rssBefore: number; rssAfter: number }) => void
}

export interface IdleRelease {
  stop(): void
}

/**
 * Checks for quiet every quarter of `idleMs` (an unref'd timer: it never keeps the process alive). Start-up
 * counts as activity, so a proxy that was never used also sheds what the rest of its start-up left.
 */
export function startIdleRelease(options: IdleReleaseOptions): IdleRelease {
  const { idleMs } = options
  if (idleMs <= 0) return { stop() {} }
  const collect = options.collect ?? memoryReducingCollection
  const rounds = Math.max(1, options.rounds ?? 1)
  const roundGapMs = options.roundGapMs ?? 1_000
  let seen = options.activity().begun
  let quietSince = Date.now()
  /** This quiet period's releases are still to come. */
  let owed = true
  let gapTimer: NodeJS.Timeout | null = null
  /** One release; false when this runtime offers no such collection (memory then stays as V8 leaves it). */
  const release = (after: 'start' | 'idle'): boolean => {
    const rssBefore = process.memoryUsage.rss()
    const started = performance.now()
    try {
      collect()
    } catch {
      return false
    }
    options.onRelease?.({ after, ms: performance.now() - started, rssBefore, rssAfter: process.memoryUsage.rss() })
    return true
  }
  /** Quiet for a whole `idleMs`, as of the last check and now. */
  const stillQuiet = (): boolean => {
    const { begun, inflight } = options.activity()
    return inflight === 0 && begun === seen && Date.now() - quietSince >= idleMs
  }
  /** This release and, while it stays quiet, the `left - 1` after it; a request between two ends the series. */
  const releaseRounds = (left: number): void => {
    gapTimer = null
    if (!stillQuiet()) return
    if (!release('idle')) {
      clearInterval(timer)
      return
    }
    if (left > 1) {
      gapTimer = setTimeout(releaseRounds, roundGapMs, left - 1)
      gapTimer.unref()
    }
  }
  if (options.atStart === true && !release('start')) return { stop() {} }
  const timer = setInterval(
    () => {
      const { begun, inflight } = options.activity()
      if (inflight > 0 || begun !== seen) {
        seen = begun
        quietSince = Date.now()
        owed = true
        return
      }
      if (!owed || Date.now() - quietSince < idleMs) return
      owed = false
      releaseRounds(rounds)
    },
    Math.max(50, Math.floor(idleMs / 4)),
  )
  timer.unref()
  return {
    stop() {
      clearInterval(timer)
      if (gapTimer !== null) clearTimeout(gapTimer)
    },
  }
}

type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void
let gc: GcFunction | null = null

/**
 * V8's "last resort" collection: full collections until nothing more is freed, with the young generation
 * shrunk and free pages unmapped. `gc` exists only in contexts made after `--expose-gc`, hence the context.
 */
function memoryReducingCollection(): void {
  if (gc === null) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as GcFunction
  }
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
}
