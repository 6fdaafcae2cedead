// CPU per request of two or more sides measured fairly on a shared host: each side's open loop runs in short slices,
// the sides alternating (A B A B …, `order: 'alternate'`, as the bench runs it, after `leadIn` unmeasured slices of each)
// or in mirrored pairs (A B, B A, A B, …), so a drift of the host's state (another tenant's load,
// Redis's or the fake's state left by the previous run, which side goes first) lands on every side alike. Each side's
// CPU is counted over its own slices and the first TAIL_MS of the slice after each (what its last requests left to
// do), not over the rest of the phase: a side idle for two slices (1 s at 500 ms) meets the proxy's idle release there
// (its 1 s lull: a scavenge, or a full collection once the old generation has grown 32 MiB; src/idle-release.ts), a
// cost continuous load never pays, which the whole phase counted: the proxy used 3-19 ms of CPU between its slices in
// a phase (the floor 2-4), and one A/A of two proxies read 0.852 over the whole phase, 0.882 over its own slices,
// where one proxy took a 49 ms lull collection between them (node bench/interleave-bias.mjs). The whole phase's
// figures stay beside them (`usPerRequest`, `ratio`). A slice's start from idle and its drain cost both sides alike:
// CPU per request over a 500 ms slice read 3.7 % (proxy) and 2.8 % (floor) above its steady state from 150 ms on
// (means over 19 and 17 phases), 1.7 % and 0.3 % over 2.5 s slices: within 1 % on a ratio, not corrected.
import { performance } from 'node:perf_hooks'
import { openLoop } from './load.mjs'
import { threadsCpuMs } from './procs.mjs'

/**
 * The order of `slices` slices of each of `names`: 'mirrored', names then names reversed, and so on (each side runs
 * two slices back to back, then waits two); 'alternate', names again and again (no side waits more than one slice).
 */
export function sliceOrder(names, slices, order = 'mirrored') {
  const out = []
  for (let k = 0; k < slices; k++) out.push(...(k % 2 === 0 || order === 'alternate' ? names : [...names].reverse()))
  return out
}

/**
 * The figures of an interleaved phase. `slices`: [{ side, ok, cpuMs: { side: ms of CPU each side used during the
 * slice } }] in the order run; `between`: { side: ms each side used outside every slice (before the first, between
 * slices' reads) }, zero when absent. Per side: { served, cpuMs, usPerRequest (null when it served nothing),
 * ownSliceShare (its CPU inside its own slices ÷ all of it) }; `pairs`: for each mirrored pair of slices of `a` and
 * `b`, a's CPU per request ÷ b's over that pair alone (what one slice pair would have read).
 */
export function summarizeSlices(slices, between = {}, a = 'proxied', b = 'floor', rate = null) {
  const counted = countedCpuMs(slices)
  const names = [...new Set(slices.map((s) => s.side))]
  const sides = {}
  for (const side of names) {
    const own = slices.filter((s) => s.side === side)
    const served = own.reduce((n, s) => n + s.ok, 0)
    const inOwn = own.reduce((ms, s) => ms + (s.cpuMs[side] ?? 0), 0)
    const cpuMs = slices.reduce((ms, s) => ms + (s.cpuMs[side] ?? 0), 0) + (between[side] ?? 0)
    sides[side] = { served, slices: own.length, cpuMs, usPerRequest: served > 0 ? (cpuMs * 1000) / served : null, ownSliceShare: cpuMs > 0 ? inOwn / cpuMs : null }
    if (counted !== null) sides[side].countedUsPerRequest = served > 0 ? ((counted[side] ?? 0) * 1000) / served : null
    const windows = own.map((s) => s.steady ?? null)
    if (rate !== null && own.length > 0 && windows.every((w) => w !== null)) {
      const sent = windows.reduce((n, w) => n + (rate * w.ms) / 1000, 0)
      sides[side].steadyUsPerRequest = sent > 0 ? (windows.reduce((ms, w) => ms + (w.cpuMs[side] ?? 0), 0) * 1000) / sent : null
    }
  }
  const pairs = []
  if (sides[a] !== undefined && sides[b] !== undefined) {
    const perSide = Math.min(sides[a].slices, sides[b].slices)
    const ofSide = (side) => slices.filter((s) => s.side === side)
    for (let k = 0; k < perSide; k++) {
      const usOf = (side) => {
        const s = ofSide(side)[k]
        return s.ok > 0 ? ((s.cpuMs[side] ?? 0) * 1000) / s.ok : null
      }
      const ua = usOf(a)
      const ub = usOf(b)
      pairs.push(ua === null || ub === null || ub <= 0 ? null : ua / ub)
    }
  }
  const ratio = sides[a]?.usPerRequest != null && sides[b]?.usPerRequest ? sides[a].usPerRequest / sides[b].usPerRequest : null
  const steadyRatio = sides[a]?.steadyUsPerRequest != null && sides[b]?.steadyUsPerRequest ? sides[a].steadyUsPerRequest / sides[b].steadyUsPerRequest : null
  const countedRatio = sides[a]?.countedUsPerRequest != null && sides[b]?.countedUsPerRequest ? sides[a].countedUsPerRequest / sides[b].countedUsPerRequest : null
  return { sides, ratio, pairs, ...(steadyRatio === null ? {} : { steadyRatio }), ...(countedRatio === null ? {} : { countedRatio }) }
}

/**
 * Each side's CPU in its own slices and in the tail read of each slice that follows one of its own and is another
 * side's (`tailCpuMs`: the first TAIL_MS of that slice); null when a slice has no tail read.
 */
export function countedCpuMs(slices) {
  if (slices.length === 0 || slices.some((s) => s.tailCpuMs == null)) return null
  const counted = {}
  slices.forEach((s, i) => {
    counted[s.side] = (counted[s.side] ?? 0) + (s.cpuMs[s.side] ?? 0)
    const before = slices[i - 1]?.side
    if (before !== undefined && before !== s.side) counted[before] += s.tailCpuMs[before] ?? 0
  })
  return counted
}

/** How long into the next slice a side's CPU still counts: past its last requests' drain and settlement, well before its idle release's lull (1 s). */
export const TAIL_MS = 250

/**
 * Runs `slices` open-loop slices of `sliceMs` at `rate` for each of `targets` ({ side: { url, pid, request, pool } }),
 * in sliceOrder, reading every side's CPU (all threads, schedstat) at each slice's edges; resolves with
 * summarizeSlices' figures and the slices themselves; each slice's CPU is also read TAIL_MS into it (`tailCpuMs`). With `steadyFromMs`, each slice's CPU is also read
 * `steadyFromMs` after its first send and at its last (`steady`: { ms, cpuMs }): the slice's steady state, without
 * what its start from idle and its drain cost. `leadIn`: slices of each side, in the order of `targets`, served unmeasured
 * first, so each side enters the measured slices from the same state whatever it did before (a run of its own, or none).
 */
export async function interleave({ targets, rate, sliceMs, slices, a = 'proxied', b = 'floor', steadyFromMs = null, order = 'mirrored', leadIn = 0 }) {
  const names = Object.keys(targets)
  for (let k = 0; k < leadIn; k++) {
    for (const side of names) await openLoop({ origin: targets[side].url, request: targets[side].request, rate, durationMs: sliceMs, pool: targets[side].pool })
  }
  const readAll = () => Object.fromEntries(names.map((side) => [side, threadsCpuMs(targets[side].pid)]))
  const between = Object.fromEntries(names.map((side) => [side, 0]))
  const runs = []
  let last = readAll()
  for (const side of sliceOrder(names, slices, order)) {
    const { url, request, pool } = targets[side]
    const before = readAll()
    for (const n of names) between[n] += before[n] - last[n]
    const steady = steadyFromMs === null ? null : steadyWindow(readAll, steadyFromMs, sliceMs)
    let tail = null
    const tailTimer = setTimeout(() => (tail = readAll()), TAIL_MS)
    const run = await openLoop({ origin: url, request, rate, durationMs: sliceMs, pool })
    last = readAll()
    clearTimeout(tailTimer)
    tail ??= last
    runs.push({
      side, ok: run.ok, errors: run.non2xx + run.transportErrors, p99: run.latencyMs.p99, cpuMs: Object.fromEntries(names.map((n) => [n, last[n] - before[n]])),
      tailCpuMs: Object.fromEntries(names.map((n) => [n, tail[n] - before[n]])),
      ...(steady === null ? {} : { steady: steady.read() }),
    })
  }
  return { rate, sliceMs, slicesPerSide: slices, order, leadIn, ...summarizeSlices(runs, between, a, b, rate), slices: runs }
}

/**
 * Every side's CPU from `fromMs` after an open loop's first send (openLoop's first is due 5 ms after its call) to its
 * last (`toMs`), read by timers of this process: `read()` gives { ms: the window's length, cpuMs: { side: ms } }.
 */
function steadyWindow(readAll, fromMs, toMs) {
  const FIRST_SEND_MS = 5
  const start = performance.now() + FIRST_SEND_MS
  let first = null
  let end = null
  const at = (ms, then) => setTimeout(then, Math.max(0, start + ms - performance.now()))
  at(fromMs, () => {
    first = { at: performance.now(), cpu: readAll() }
    at(toMs, () => (end = { at: performance.now(), cpu: readAll() }))
  })
  return {
    read() {
      if (first === null || end === null) return null
      return { ms: end.at - first.at, cpuMs: Object.fromEntries(Object.keys(first.cpu).map((n) => [n, end.cpu[n] - first.cpu[n]])) }
    },
  }
}
