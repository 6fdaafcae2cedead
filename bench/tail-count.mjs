// How bench/tail-causes.mjs counts a request's causes: which recorded events overlapped it, and tallies of them.

/** The causes in the order a request's first cause is picked (see bench/tail-causes.mjs's header). */
export const CAUSES = ['gc', 'workers', 'wait', 'own', 'gen', 'redis', 'fake', 'lull']

/**
 * The causes whose events (`events[cause]`: spans `{ from, to }`, epoch ms) overlap a request due at `due` that took
 * `ms`, plus `gen` when it was sent `lateMs` ≥ 1 late and `lull` when its run followed a quiet-period mark-compact.
 */
export function causesOf({ due, ms, lateMs }, events, lull) {
  const hit = new Set()
  for (const cause of CAUSES) {
    const list = events[cause]
    if (list !== undefined && list.some((e) => e.to >= due && e.from <= due + ms)) hit.add(cause)
  }
  if (lateMs >= 1) hit.add('gen')
  if (lull) hit.add('lull')
  return hit
}

/** An empty tally: requests, those with no cause, and per cause those it overlapped (`share`) and first (`first`). */
export function createTally() {
  return { n: 0, none: 0, share: Object.fromEntries(CAUSES.map((c) => [c, 0])), first: Object.fromEntries(CAUSES.map((c) => [c, 0])) }
}

/** Counts one request's causes (`causesOf`'s set) into `tally`. */
export function addCauses(tally, hit) {
  tally.n++
  for (const c of hit) tally.share[c]++
  const first = CAUSES.find((c) => hit.has(c))
  if (first === undefined) tally.none++
  else tally.first[first]++
}
