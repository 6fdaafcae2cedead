/**
 * Gives back the memory a burst of traffic left behind, once the proxy has gone quiet. V8 keeps the young
 * generation it grew under load (up to 128 MiB on a large machine) and the pages of a collected old
 * generation resident for good (the launcher turns V8's memory reducer off: src/cli.ts says why); only a
 * memory-reducing full collection returns them to the OS. It runs once per quiet period (or `rounds` times, a
 * second apart), after `idleMs` with no request in flight and none begun, so the pause (tens of milliseconds,
 * ~150 on a busy core) never lands among traffic; a request arriving during one waits that long. Loading the modules grows the young
 * generation the same way (to ~16 MiB resident), so the proxy also releases once before it listens, when no
 * request can wait on the pause.
 * Sooner, after `lullMs` of the same quiet, one scavenge (1-3 ms) frees what the last requests left in the young
 * generation, with the buffers only those objects held (the first stream's tokenizer rank file, bodies): ~1.6 MiB
 * of a lightly used proxy's resident set seconds after its last request rather than half a minute. When the old
 * generation has grown by `lullCollectBytes` since the last full collection, that release is a full collection
 * instead (not memory-reducing: V8's sizes stay), so the one V8 would start once old space nears its limit, a
 * pause of up to ~25 ms on a busy core, comes in the lull rather than among the next burst's requests.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

interface IdleReleaseOptions {
  /** Quiet time before a release, in ms; 0 turns releasing off. */
  idleMs: number
  /** Requests begun so far (never decreases) and requests in flight now. */
  activity(): { begun: number; inflight: number }
  /** The release itself (tests); default: V8's memory-reducing full collection. */
  collect?: () => void
  /** Quiet time before the short release, in ms (default `LULL_MS`); 0, or not less than `idleMs`, turns it off. */
  lullMs?: number
  /** The short release (tests); default: one scavenge of the young generation. */
  scavenge?: () => void
  /** Old-generation growth, in bytes, since the last full collection that makes the short release a full one; 0 (default): never. */
  lullCollectBytes?: number
  /** The short release when it is a full one (tests); default: one full collection, not memory-reducing. */
  lullCollect?: () => void
  /** Bytes the old generation holds now (tests); default: V8's every space but the young generation's. */
  oldGeneration?: () => number
  /** Release once at once, before the first check (start-up, before listening). */
  atStart?: boolean
  /**
   * Releases per quiet period (default 1), `roundGapMs` apart (default 1 s), so no pause is longer than one
   * collection's. Each is two or more full collections, and V8 drops the compiled code of a function that has not
   * run through six of them (optimized code stays): four let go of what ran only at start-up or before the lull.
   */
  rounds?: number
  roundGapMs?: number
  /** Called just before each release (the kept examples' client data is blanked: src/proxy/keep-shapes.ts). */
  beforeRelease?: () => void
  /** Told after each release: why, how long it took and the resident set before and after, in bytes. */
  onRelease?: (release: { after: 'start' | 'lull' | 'idle'; ms: number; rssBefore: number; rssAfter: number }) => void
}

export interface IdleRelease {
  stop(): void
}

/**
 * Checks for quiet every quarter of `idleMs`, or every half of `lullMs` with the short release (an unref'd timer:
 * it never keeps the process alive). Start-up counts as activity, so a proxy that was never used also sheds what
 * the rest of its start-up left.
 */
export function startIdleRelease(options: IdleReleaseOptions): IdleRelease {
  const { idleMs } = options
  if (idleMs <= 0) return { stop() {} }
  const collect = options.collect ?? memoryReducingCollection
  const rounds = Math.max(1, options.rounds ?? 1)
  const roundGapMs = options.roundGapMs ?? 1_000
  const lullMs = options.lullMs ?? LULL_MS
  let scavenge: (() => void) | null = lullMs > 0 && lullMs < idleMs ? (options.scavenge ?? youngGenerationCollection) : null
  const lullCollectBytes = options.lullCollectBytes ?? 0
  const lullCollect = options.lullCollect ?? fullCollection
  const oldGeneration = options.oldGeneration ?? oldGenerationBytes
  /** The old generation after the last full collection of this module's (or as it started). */
  let oldAfterFull = lullCollectBytes > 0 ? oldGeneration() : 0
  let seen = options.activity().begun
  let quietSince = Date.now()
  /** This quiet period's releases are still to come. */
  let owed = true
  /** This quiet period's short release is still to come (the full one at start-up leaves nothing for it). */
  let lullOwed = options.atStart !== true
  let gapTimer: NodeJS.Timeout | null = null
  /** One release; false when this runtime offers no such collection (memory then stays as V8 leaves it). */
  const release = (after: 'start' | 'lull' | 'idle', run: () => void = collect): boolean => {
    try {
      options.beforeRelease?.()
    } catch {
      // The release goes on: a fault here must not end the process from a timer.
    }
    const rssBefore = process.memoryUsage.rss()
    const started = performance.now()
    try {
      run()
    } catch {
      return false
    }
    options.onRelease?.({ after, ms: performance.now() - started, rssBefore, rssAfter: process.memoryUsage.rss() })
    if (run !== scavenge && lullCollectBytes > 0) oldAfterFull = oldGeneration()
    return true
  }
  /** The short release: a full collection when the old generation has grown enough since the last, else a scavenge. */
  const lullRelease = (run: () => void): boolean => {
    if (lullCollectBytes > 0 && oldGeneration() - oldAfterFull >= lullCollectBytes) return release('lull', lullCollect)
    return release('lull', run)
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
        lullOwed = true
        return
      }
      const quietMs = Date.now() - quietSince
      if (lullOwed && scavenge !== null && quietMs >= lullMs) {
        lullOwed = false
        // Due with the full release (a coarse check): that one frees the young generation too.
        if (!(owed && quietMs >= idleMs) && !lullRelease(scavenge)) scavenge = null
      }
      if (!owed || quietMs < idleMs) return
      owed = false
      releaseRounds(rounds)
    },
    Math.max(50, Math.floor(scavenge === null ? idleMs / 4 : Math.min(idleMs / 4, lullMs / 2))),
  )
  timer.unref()
  return {
    stop() {
      clearInterval(timer)
      if (gapTimer !== null) clearTimeout(gapTimer)
    },
  }
}

/**
 * Quiet time before the short release: past the gaps inside one client's burst of requests, and soon enough that
 * a proxy a few seconds after its last request already holds no more than what lived through them. Checking
 * twice a second costs a quiet proxy 2 wake-ups a second (0.2 before) and, scavenge included, 0.3 ms of CPU
 * a second over its first 10 s of quiet (0.03 before; bench/idle-cpu.mjs).
 */
const LULL_MS = 1_000

type GcFunction = (options: { type: 'major' | 'minor'; execution: 'sync'; flavor?: 'last-resort' }) => void
let gc: GcFunction | null = null

/** `gc` exists only in contexts made after `--expose-gc`, hence the context. */
function exposedGc(): GcFunction {
  if (gc === null) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as GcFunction
  }
  return gc
}

/** V8's "last resort" collection: full collections until nothing more is freed, with the young generation shrunk and free pages unmapped. */
function memoryReducingCollection(): void {
  exposedGc()({ type: 'major', execution: 'sync', flavor: 'last-resort' })
}

/** One full collection as V8 would start it itself: the young generation's and old space's sizes stay. */
function fullCollection(): void {
  exposedGc()({ type: 'major', execution: 'sync' })
}

/** Bytes held in every heap space but the young generation's (V8 names those `new_…`). */
function oldGenerationBytes(): number {
  let bytes = 0
  for (const space of getHeapSpaceStatistics()) if (!space.space_name.startsWith('new_')) bytes += space.space_used_size
  return bytes
}

/**
 * One scavenge: the young generation's dead objects go, and the buffers only they held are freed (those of a
 * megabyte or more go back to the OS at once: the launcher's malloc threshold). Its pages stay resident.
 */
function youngGenerationCollection(): void {
  exposedGc()({ type: 'minor', execution: 'sync' })
}
