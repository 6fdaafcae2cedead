// The summary lines of bench/ab.mjs: per side and per trial results in, printable lines out. A trial in which a side
// served nothing has no CPU per request and no latency: it is named as a failure and left out of every median and ratio.
import { summarize } from './load.mjs'

/** Median of the numbers in `xs` (nulls dropped; the lower middle of an even count); null when none. */
export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  return v.length === 0 ? null : v[Math.floor((v.length - 1) / 2)]
}

const fixed = (x, digits) => (x === null ? '—' : x.toFixed(digits))
/** "median unit (min–max)" of `xs` (nulls dropped); "—" when none. */
export function range(xs, digits, unit = '') {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x))
  return v.length === 0 ? '—' : `${fixed(median(v), digits)}${unit} (${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)})`
}
/**
 * Median of the ratios in `xs` (nulls dropped) such that swapping the sides gives its reciprocal: the middle one, or
 * the geometric mean of the two middles of an even count (the lower middle read the second side cheaper in both
 * directions of an A/B); null when none.
 */
export function ratioMedian(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x) && x > 0).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = (v.length - 1) / 2
  return Math.sqrt(v[Math.floor(mid)] * v[Math.ceil(mid)])
}
/** "median (min–max)" of the ratios in `xs`, the median as ratioMedian's; "—" when none. */
export function ratioRange(xs, digits) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x) && x > 0)
  return v.length === 0 ? '—' : `${ratioMedian(v).toFixed(digits)} (${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)})`
}

/**
 * One load run from `runs` of the same side (each kept with openLoop's or closedLoop's `keepLatencies`): requests and
 * errors summed, the rate over their summed time, latency percentiles over every answered request of all of them.
 */
export function mergeRuns(runs) {
  const ok = runs.reduce((n, r) => n + r.ok, 0)
  const elapsedMs = runs.reduce((ms, r) => ms + r.elapsedMs, 0)
  return {
    ok,
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    transportErrors: runs.reduce((n, r) => n + r.transportErrors, 0),
    achievedRate: elapsedMs > 0 ? ok / (elapsedMs / 1000) : 0,
    elapsedMs,
    latencyMs: summarize(runs.flatMap((r) => r.latencies)),
  }
}

/** a ÷ b per trial, null where either is missing or b is not positive. */
const ratios = (as, bs) => as.map((a, i) => (typeof a === 'number' && typeof bs[i] === 'number' && bs[i] > 0 ? a / bs[i] : null))

/**
 * Lines of the sequential A/B report. `per`: { side: [{ us, rps, p50, p99, errors, served, groups?, counts? }] } per
 * trial, one side named `floor`, two named `a` and `b`; `us`, `p50` and `p99` are null in a trial the side served nothing.
 */
export function abReportLines(per) {
  const names = Object.keys(per)
  const lines = []
  const of = (n, field) => per[n].map((r) => r[field] ?? null)
  for (const n of names) {
    const failed = per[n].map((r, i) => (r.served > 0 ? null : `trial ${i + 1} (${r.errors} errors)`)).filter((x) => x !== null)
    const failures = failed.length === 0 ? '' : `; served nothing in ${failed.join(', ')}, left out`
    lines.push(
      `${n}: CPU/request median ${range(of(n, 'us'), 0, ' µs')}, ÷ floor ${range(ratios(of(n, 'us'), of('floor', 'us')), 2)}, rate ÷ floor ${fixed(median(ratios(of(n, 'rps'), of('floor', 'rps'))), 2)}, latency p50 ${fixed(median(of(n, 'p50')), 2)} p99 ${fixed(median(of(n, 'p99')), 2)} ms (medians), errors ${per[n].reduce((s, r) => s + r.errors, 0)}${failures}`,
    )
  }
  // Per thread group (µs a request) and per perf event (count a request): each side's median, and its ratio to the floor's per trial.
  for (const [what, field, digits] of [['µs/request', 'groups', 1], ['per request', 'counts', 3]]) {
    if (per.floor[0]?.[field] == null) continue
    const keys = [...new Set(names.flatMap((n) => per[n].flatMap((r) => Object.keys(r[field] ?? {}))))].sort()
    for (const key of keys) {
      const values = (n) => per[n].map((r) => (r.served > 0 ? (r[field]?.[key] ?? 0) : null))
      // A thread group or event no side used in any trial (an idle inspector thread) says nothing.
      if (names.every((n) => values(n).every((v) => v === null || v < 0.05))) continue
      const cells = names.map((n) => `${n} ${range(values(n), digits)}${n === 'floor' ? '' : ` ÷ floor ${fixed(median(ratios(values(n), values('floor'))), 2)}`}`)
      lines.push(`${key} ${what}: ${cells.join(' | ')}`)
    }
  }
  for (const field of ['us', 'p50', 'p99']) {
    const what = field === 'us' ? 'CPU/request' : `latency ${field}`
    lines.push(`b ÷ a ${what}: median ${ratioRange(ratios(of('b', field), of('a', field)), 3)}`)
  }
  return lines
}
