// CPU per request of two or more sides measured fairly on a shared host: each side's open loop runs in short slices,
// the sides alternating in mirrored pairs (A B, B A, A B, …), so a drift of the host's state (another tenant's load,
// Redis's or the fake's state left by the previous run, which side goes first) lands on every side alike. Each side's
// CPU is read across the whole interleaved phase (what it did between its slices too: its idle-time collections are
// its own) and divided by the requests it served.
import { openLoop } from './load.mjs'
import { threadsCpuMs } from './procs.mjs'

/** The order of `slices` slices of each of `names`: mirrored pairs, names then names reversed, and so on. */
export function sliceOrder(names, slices) {
  const order = []
  for (let k = 0; k < slices; k++) order.push(...(k % 2 === 0 ? names : [...names].reverse()))
  return order
}

/**
 * The figures of an interleaved phase. `slices`: [{ side, ok, cpuMs: { side: ms of CPU each side used during the
 * slice } }] in the order run; `between`: { side: ms each side used outside every slice (before the first, between
 * slices' reads) }, zero when absent. Per side: { served, cpuMs, usPerRequest (null when it served nothing),
 * ownSliceShare (its CPU inside its own slices ÷ all of it) }; `pairs`: for each mirrored pair of slices of `a` and
 * `b`, a's CPU per request ÷ b's over that pair alone (what one slice pair would have read).
 */
export function summarizeSlices(slices, between = {}, a = 'proxied', b = 'floor') {
  const names = [...new Set(slices.map((s) => s.side))]
  const sides = {}
  for (const side of names) {
    const own = slices.filter((s) => s.side === side)
    const served = own.reduce((n, s) => n + s.ok, 0)
    const inOwn = own.reduce((ms, s) => ms + (s.cpuMs[side] ?? 0), 0)
    const cpuMs = slices.reduce((ms, s) => ms + (s.cpuMs[side] ?? 0), 0) + (between[side] ?? 0)
    sides[side] = { served, slices: own.length, cpuMs, usPerRequest: served > 0 ? (cpuMs * 1000) / served : null, ownSliceShare: cpuMs > 0 ? inOwn / cpuMs : null }
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
  return { sides, ratio, pairs }
}

/**
 * Runs `slices` open-loop slices of `sliceMs` at `rate` for each of `targets` ({ side: { url, pid, request, pool } }),
 * in sliceOrder, reading every side's CPU (all threads, schedstat) at each slice's edges; resolves with
 * summarizeSlices' figures and the slices themselves.
 */
export async function interleave({ targets, rate, sliceMs, slices, a = 'proxied', b = 'floor' }) {
  const names = Object.keys(targets)
  const readAll = () => Object.fromEntries(names.map((side) => [side, threadsCpuMs(targets[side].pid)]))
  const between = Object.fromEntries(names.map((side) => [side, 0]))
  const runs = []
  let last = readAll()
  for (const side of sliceOrder(names, slices)) {
    const { url, request, pool } = targets[side]
    const before = readAll()
    for (const n of names) between[n] += before[n] - last[n]
    const run = await openLoop({ origin: url, request, rate, durationMs: sliceMs, pool })
    last = readAll()
    runs.push({ side, ok: run.ok, errors: run.non2xx + run.transportErrors, p99: run.latencyMs.p99, cpuMs: Object.fromEntries(names.map((n) => [n, last[n] - before[n]])) })
  }
  return { rate, sliceMs, slicesPerSide: slices, ...summarizeSlices(runs, between, a, b), slices: runs }
}
