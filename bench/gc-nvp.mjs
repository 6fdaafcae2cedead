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

/** The median of `pick` over `list` (load.mjs's nearest-rank p50; 0 when none): a pile-up's few scavenges do not move it as they move the mean. */
export function medianOf(list, pick) {
  return summarize(list.map((item) => { const value = pick(item); return typeof value === 'number' ? value : 0 })).p50 ?? 0
}

/**
 * Of the bytes each scavenge kept in the young generation (`new_space_survived`), the share the next scavenge promoted
 * (the sum over consecutive pairs, 0–1; null with fewer than two scavenges or nothing kept). A request's objects are
 * done long before the next scavenge, so a high share says something still held them: what the nursery keeps should
 * mostly be dead by then.
 */
export function carriedOver(scavenges) {
  let kept = 0
  let promoted = 0
  for (let i = 1; i < scavenges.length; i++) {
    kept += Number(scavenges[i - 1].new_space_survived ?? 0)
    promoted += Number(scavenges[i].promoted ?? 0)
  }
  return kept > 0 ? promoted / kept : null
}

/** `NAME=VALUE,NAME=VALUE` as an environment (a value may hold `=`; empty text: none). */
export function envPairs(text) {
  const env = {}
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) {
      if (pair.trim() !== '') throw new Error(`not NAME=VALUE: ${pair}`)
      continue
    }
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return env
}
