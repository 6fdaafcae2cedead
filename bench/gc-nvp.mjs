// Reading V8's --trace-gc-nvp lines for bench/scavenge-nvp.mjs: one collection's name=value pairs, the part of a
// scavenge's main-thread time its own phases do not account for, and a pause distribution.
import { summarize } from './load.mjs'

/** The name=value pairs of one --trace-gc-nvp line (numbers where they parse, a trailing % dropped), or null for another line. */
export function parseNvp(line) {
  const at = line.indexOf(' ms: pause=')
  if (at < 0) return null
  const fields = {}
  for (const pair of line.slice(at + 5).split(' ')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) continue
    const text = pair.slice(eq + 1).replace(/%$/, '')
    const value = Number(text)
    fields[pair.slice(0, eq)] = text !== '' && Number.isFinite(value) ? value : text
  }
  return fields
}

/**
 * A scavenge's main-thread time (`scavenge`) less the sum of its own `scavenge.*` phases (ms, never below 0): where the
 * main thread waited in the parallel phase's join for V8's workers to finish their share (or for a core). Workers'
 * time (`background.*`) is not subtracted: it ran on other threads.
 */
export function joinWaitMs(fields) {
  let phases = 0
  for (const [name, value] of Object.entries(fields)) if (name.startsWith('scavenge.') && typeof value === 'number') phases += value
  return Math.max(0, (typeof fields.scavenge === 'number' ? fields.scavenge : 0) - phases)
}

/** Pause distribution of `pauses` (ms): count, p50, p99, max (load.mjs's nearest-rank `summarize`; 0 when none), and how many reached `longMs`. */
export function pauseStats(pauses, longMs = 1) {
  const { count, p50, p99, max } = summarize(pauses)
  return { n: count, p50: p50 ?? 0, p99: p99 ?? 0, max: max ?? 0, long: pauses.filter((p) => p >= longMs).length }
}
