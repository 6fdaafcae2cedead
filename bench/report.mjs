// Turns scenario results into figures (median and spread over trials, judged against targets) and
// renders them as Markdown.
import { flaggedTrials, GENERATOR_LAG_FLAG_MS, REDIS_LATENCY_FLAG_MS, RELATIVE_FLAG, WAIT_FLAG_MS, WAIT_SPAN_MS } from './pile-up.mjs'

/** min / median / max of the numbers in `values` (nulls dropped). */
export function spread(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return { min: null, median: null, max: null, n: 0 }
  const mid = Math.floor(v.length / 2)
  return { min: v[0], median: v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2, max: v[v.length - 1], n: v.length }
}

/**
 * A figure: `value` is judged by `target` ({ op: '<=' | '>=' | '==', limit }) on its median, or with
 * `worst` on its worst trial (for invariants that must hold every time).
 */
function figure(scenario, metric, values, unit, target = null, note = '', worst = false, floorValues = null) {
  const s = spread(Array.isArray(values) ? values : [values])
  const floor = floorValues === null ? null : spread(Array.isArray(floorValues) ? floorValues : [floorValues]).median
  let status = '—'
  if (target !== null && s.median !== null) {
    const m = !worst ? s.median : target.op === '>=' ? s.min : target.op === '<=' ? s.max : [s.min, s.max].find((v) => v !== target.limit) ?? s.min
    const ok = target.op === '<=' ? m <= target.limit : target.op === '>=' ? m >= target.limit : m === target.limit
    status = ok ? 'PASS' : 'MISS'
  } else if (target !== null) status = 'MISS'
  return { scenario, metric, unit, ...s, floor, target, status, note, judgedOn: worst ? 'worst trial' : 'median' }
}

const errorsOf = (run) => run.non2xx + run.transportErrors
const pileUpRule = `the side's, Redis's or the fake upstream's main thread waited ≥ ${WAIT_FLAG_MS} ms for a core within ${WAIT_SPAN_MS} ms, Redis recorded an event ≥ ${REDIS_LATENCY_FLAG_MS} ms, or the generator sent ≥ ${GENERATOR_LAG_FLAG_MS} ms late, each also ≥ ${RELATIVE_FLAG}× the least the trial's other runs saw of it`
/** Per-trial ratio a ÷ b (null when either is missing or b is not positive). */
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? a / b : null)
const floorNote = 'bench/floor.mjs: Fastify + undici pass-through, same store round trips, same run'
const pctOf = (fraction) => (fraction === null || fraction === undefined ? null : fraction * 100)
/** A warning when other processes took a fifth or more of the proxy's core during the proxied runs. */
function noise(runs) {
  const foreign = spread(runs.map((r) => r.foreignOnProxyCore)).median
  return foreign !== null && foreign >= 0.2 ? `⚠ noisy: other processes used ${Math.round(foreign * 100)}% of the proxy core` : ''
}

/** Every figure of a results object, in report order. */
export function figures(results) {
  const out = []
  const lat = results.latency
  if (lat?.byRate !== undefined) {
    for (const [rate, trials] of Object.entries(lat.byRate)) {
      const judged = Number(rate) === 1000
      const name = `a. chat, ${rate} req/s open loop`
      const warn = noise(trials.map((t) => t.proxied))
      const fl = trials.every((t) => t.floor !== undefined)
      const floorOf = (get) => (fl ? trials.map(get) : null)
      out.push(figure(name, 'added latency p50', trials.map((t) => t.added.p50), 'ms', judged ? { op: '<=', limit: 1 } : null, warn, false, floorOf((t) => t.floorAdded.p50)))
      out.push(figure(name, 'added latency p90', trials.map((t) => t.added.p90), 'ms', null, '', false, floorOf((t) => t.floorAdded.p90)))
      out.push(figure(name, 'added latency p99', trials.map((t) => t.added.p99), 'ms', judged ? { op: '<=', limit: 5 } : null, warn, false, floorOf((t) => t.floorAdded.p99)))
      const flagged = flaggedTrials(trials)
      const flagNote = flagged.length === 0 ? '' : `; pile-ups (${pileUpRule}) in trial ${flagged.map((f) => `${f.trial} (${f.runs.map((r) => `${r.side}: ${r.causes.join(' + ')}`).join(', ')})`).join(', ')}`
      if (fl) {
        for (const p of ['p50', 'p99']) {
          out.push(figure(name, `added latency ${p} ÷ floor's`, trials.map((t) => ratio(t.added[p], t.floorAdded[p])), 'ratio', { op: '<=', limit: 1.2 }, `per trial, every trial${p === 'p99' ? ` (${trials.map((t) => num(ratio(t.added.p99, t.floorAdded.p99))).join(', ')})` : ''}; ${floorNote}${flagNote}`))
        }
        if (flagged.length > 0) {
          const clean = trials.filter((_, i) => !flagged.some((f) => f.trial === i + 1))
          out.push(figure(name, "added latency p99 ÷ floor's, trials without a pile-up only", clean.map((t) => ratio(t.added.p99, t.floorAdded.p99)), 'ratio', null, `not the judged figure (the row above is): ${clean.length} of ${trials.length} trials`))
        }
        const rewarmed = trials.filter((t) => (t.rewarmed ?? []).length > 0).length
        const rewarmNote = rewarmed === 0 ? '' : `; ${rewarmed} trial(s) warmed a side again after ≥ 25 s of quiet first (the idle release)`
        const sequential = trials.map((t) => ratio(t.proxied.proxyCpuUsPerRequest, t.floor.proxyCpuUsPerRequest))
        const inter = trials.every((t) => t.interleaved !== undefined) ? trials.map((t) => t.interleaved) : null
        if (inter === null) out.push(figure(name, 'CPU per request ÷ floor\'s', sequential, 'ratio', { op: '<=', limit: 1.1 }, `per trial; ${floorNote}${rewarmNote}`))
        else {
          const pairs = spread(inter.flatMap((i) => i.pairs))
          const order = inter[0].order === 'alternate' ? `alternating${inter[0].leadIn > 0 ? ` after ${inter[0].leadIn} unmeasured slice(s) of each` : ''}` : 'alternating in mirrored pairs'
          const how = `${inter[0].slicesPerSide} slices of ${inter[0].sliceMs} ms each at ${inter[0].rate} req/s, ${order} (bench/interleave.mjs)`
          // Results before the counted CPU (bench/interleave.mjs) have the whole phase's ratio only.
          const counted = inter.every((i) => i.countedRatio != null)
          out.push(figure(name, 'CPU per request ÷ floor\'s', inter.map((i) => (counted ? i.countedRatio : i.ratio)), 'ratio', { op: '<=', limit: 1.1 }, `per trial, interleaved: ${how}; ${counted ? 'each side\'s CPU in its own slices and the first 250 ms after each; ' : ''}one slice pair alone read ${num(pairs.min)}–${num(pairs.max)}; ${floorNote}${rewarmNote}`))
          if (counted) out.push(figure(name, 'CPU per request ÷ floor\'s, over the whole interleaved phase', inter.map((i) => i.ratio), 'ratio', null, 'not the judged figure (the row above is): each side\'s CPU between its slices too, where the proxy\'s idle release may run (its 1 s lull)'))
          out.push(figure(name, 'CPU per request ÷ floor\'s, each side\'s own latency run', sequential, 'ratio', null, 'not the judged figure (the row above is): the two windows run back to back, so a drift of the host between them lands on one side'))
          const us = (i, side) => (counted ? i.sides[side]?.countedUsPerRequest : i.sides[side]?.usPerRequest) ?? null
          out.push(figure(name, 'proxy CPU per request, interleaved', inter.map((i) => us(i, 'proxied')), 'µs', null, how, false, inter.map((i) => us(i, 'floor'))))
        }
      }
      out.push(figure(name, 'added latency max', trials.map((t) => t.added.max), 'ms'))
      out.push(figure(name, 'proxied latency p50 / p99', trials.map((t) => t.proxied.latencyMs.p50), 'ms', null, `p99 median ${num(spread(trials.map((t) => t.proxied.latencyMs.p99)).median)} ms`))
      out.push(figure(name, 'direct latency p50 / p99', trials.map((t) => t.direct.latencyMs.p50), 'ms', null, `p99 median ${num(spread(trials.map((t) => t.direct.latencyMs.p99)).median)} ms`))
      out.push(figure(name, 'achieved rate (proxied)', trials.map((t) => t.proxied.achievedRate), 'req/s'))
      out.push(figure(name, 'errors (proxied, non-2xx + transport)', trials.map((t) => errorsOf(t.proxied)), 'count', { op: '==', limit: 0 }))
      out.push(figure(name, 'proxy CPU per request', trials.map((t) => t.proxied.proxyCpuUsPerRequest), 'µs', null, '', false, floorOf((t) => t.floor.proxyCpuUsPerRequest)))
      if (trials.every((t) => t.proxied.redisUsPerRequest !== undefined)) {
        out.push(figure(name, 'Redis time per request', trials.map((t) => t.proxied.redisUsPerRequest), 'µs', null, 'Lua scripts (INFO commandstats evalsha usec) ÷ requests served: what bounds the requests one Redis carries', false, floorOf((t) => t.floor.redisUsPerRequest)))
      }
      out.push(figure(name, 'other processes on the proxy core', trials.map((t) => pctOf(t.proxied.foreignOnProxyCore)), '%', null, 'noise: share of core 0 used by anything but the proxy'))
      if (trials.every((t) => t.proxied.stalls !== undefined)) {
        const st = (side, field) => trials.map((t) => t[side]?.stalls?.[field] ?? null)
        const beside = fl ? (field) => st('floor', field) : () => null
        out.push(figure(name, `proxy main thread's longest core wait in ${WAIT_SPAN_MS} ms`, st('proxied', 'mainWaitMaxMs'), 'ms', null, `schedstat sampled every 10 ms; a run at ≥ ${WAIT_FLAG_MS} ms and ≥ ${RELATIVE_FLAG}× the floor's in the trial is flagged a pile-up`, false, beside('mainWaitMaxMs')))
        out.push(figure(name, "generator's latest send (proxied run)", st('proxied', 'generatorLateMaxMs'), 'ms', null, `a run at ≥ ${GENERATOR_LAG_FLAG_MS} ms and ≥ ${RELATIVE_FLAG}× the least of the trial's other runs is flagged a pile-up; floor column: the floor's runs`, false, beside('generatorLateMaxMs')))
        const connects = (side) => trials.map((t) => (t[side] === undefined ? null : t[side].connects + (t[side].stalls.upstreamConnects ?? 0)))
        out.push(figure(name, 'new connections during the proxied run (client + upstream)', connects('proxied'), 'count', null, `each run starts on ${trials[0].proxied.stalls.openAtStart} client connections opened just before it, every side alike`, false, fl ? connects('floor') : null))
        if (trials.every((t) => t.proxied.stalls.gc !== undefined)) {
          const gcOf = (side, get) => trials.map((t) => (t[side]?.stalls?.gc == null ? null : get(t[side].stalls.gc)))
          const marks = trials.map((t, i) => (t.proxied.stalls.gc?.marks ?? []).map((m) => `trial ${i + 1}: ${num(m.ms)} ms at ${num(m.atMs / 1000)} s`)).flat()
          out.push(figure(name, "proxy's longest collection pause (its own stall, never a pile-up)", gcOf('proxied', (g) => g.longestMs), 'ms', null, `bench/gc-record.mjs in the proxy, the floor and the fake alike; mark-compacts during proxied runs: ${marks.length === 0 ? 'none' : marks.join(', ')}`, false, fl ? gcOf('floor', (g) => g.longestMs) : null))
          out.push(figure(name, "Redis's longest core wait in 100 ms (proxied run)", st('proxied', 'redisWaitMaxMs'), 'ms', null, `floor column: the floor's runs; Redis's own longest event (LATENCY LATEST) per trial ${trials.map((t) => num(t.proxied.stalls.redis?.latencyMaxMs)).join(', ')} ms`, false, beside('redisWaitMaxMs')))
          out.push(figure(name, "fake upstream's longest core wait in 100 ms (proxied run)", st('proxied', 'upstreamWaitMaxMs'), 'ms', null, "floor column: the floor's runs; the direct run's is the direct side's own core wait", false, beside('upstreamWaitMaxMs')))
        }
        out.push(figure(name, 'runs flagged as pile-ups (any side)', flagged.reduce((n, f) => n + f.runs.length, 0), 'count', null, `${pileUpRule}; flagged runs stay in every figure`))
      }
    }
  }
  const info = results.logging
  if (info?.trials !== undefined) {
    const name = `a. chat, 1000 req/s: LOG_LEVEL=info (production's default) vs warn, two proxies started for it, alternating, ${info.trials.length} trial${info.trials.length === 1 ? '' : 's'}`
    const perTrial = (f) => info.trials.map(f)
    const median = (f) => num(spread(perTrial(f)).median)
    out.push(figure(name, 'proxy CPU per request, info ÷ warn', perTrial((t) => t.proxied.proxyCpuUsPerRequest / t.floor.proxyCpuUsPerRequest), 'ratio', null, `per trial; info ${median((t) => t.proxied.proxyCpuUsPerRequest)} µs, warn ${median((t) => t.floor.proxyCpuUsPerRequest)} µs`))
    for (const p of ['p50', 'p99']) {
      out.push(figure(name, `added latency ${p}, info`, perTrial((t) => t.added[p]), 'ms', null, `warn in the same trials: ${median((t) => t.floorAdded[p])} ms`))
    }
    out.push(figure(name, 'log bytes per request', info.logBytesPerRequest, 'B'))
  }
  const st = results.streams
  if (st?.ttfb !== undefined) {
    const name = `b. streams (${st.ttfb.rate}/s, ${st.ttfb.chunks} chunks)`
    const assumed = 'target assumed: same as a'
    const tf = st.ttfb.trials.every((t) => t.floorAdded !== undefined)
    const floorOf = (p) => (tf ? st.ttfb.trials.map((t) => t.floorAdded[p]) : null)
    out.push(figure(name, 'added time to first byte p50', st.ttfb.trials.map((t) => t.added.p50), 'ms', { op: '<=', limit: 1 }, assumed, false, floorOf('p50')))
    out.push(figure(name, 'added time to first byte p99', st.ttfb.trials.map((t) => t.added.p99), 'ms', { op: '<=', limit: 5 }, assumed, false, floorOf('p99')))
    if (tf) {
      for (const p of ['p50', 'p99']) {
        out.push(figure(name, `added time to first byte ${p} − floor's`, st.ttfb.trials.map((t) => t.added[p] - t.floorAdded[p]), 'ms', null, `per trial; ${floorNote}`))
      }
    }
    const c = st.cpu
    const note = `(CPU of ${c.streams} × ${c.chunksHigh} chunks − ${c.streams} × ${c.chunksLow}) ÷ chunk difference; relay + meter`
    const name2 = `b. streams, ${c.streams} concurrent`
    out.push(figure(name2, 'proxy CPU per chunk', c.trials.map((t) => t.proxy.usPerChunk), 'µs', { op: '<=', limit: 20 }, note, false, c.trials.map((t) => t.floor.usPerChunk)))
    out.push(figure(name2, 'CPU per chunk ÷ plain relay\'s', c.trials.map((t) => ratio(t.proxy.usPerChunk, t.floor.usPerChunk)), 'ratio', { op: '<=', limit: 1.1 }, 'per trial; floor = bench/relay-floor.mjs'))
    out.push(figure(name2, 'of which kernel (system time)', c.trials.map((t) => t.proxy.systemUsPerChunk), 'µs', null, 'socket reads and writes'))
    out.push(figure(name2, 'plain Node relay, CPU per chunk', c.trials.map((t) => t.floor.usPerChunk), 'µs', null, 'bench/relay-floor.mjs: node:http + undici, no parsing, no budget'))
    out.push(figure(name2, 'client reads per 1000-chunk stream', c.trials.map((t) => t.proxy.hi.clientReadsPerStream), 'reads', null, 'near 1000 = chunks arrived one by one, not coalesced'))
  }
  const pk = results.peak
  if (pk?.trials !== undefined) {
    const name = `c. peak, closed loop C=${pk.concurrency}`
    const pf = pk.trials.every((t) => t.floor !== undefined)
    out.push(figure(name, 'throughput through the proxy', pk.trials.map((t) => t.proxied.achievedRate), 'req/s', { op: '>=', limit: 5000 }, noise(pk.trials.map((t) => t.proxied)), false, pf ? pk.trials.map((t) => t.floor.achievedRate) : null))
    if (pf) {
      out.push(figure(name, 'throughput ÷ floor\'s', pk.trials.map((t) => ratio(t.proxied.achievedRate, t.floor.achievedRate)), 'ratio', { op: '>=', limit: 0.9 }, `per trial; ${floorNote}`))
      out.push(figure(name, 'CPU per request ÷ floor\'s', pk.trials.map((t) => ratio(t.proxied.proxyCpuUsPerRequest, t.floor.proxyCpuUsPerRequest)), 'ratio', { op: '<=', limit: 1.1 }, `per trial; ${floorNote}`))
    }
    out.push(figure(name, 'errors through the proxy', pk.trials.map((t) => errorsOf(t.proxied)), 'count', { op: '==', limit: 0 }))
    out.push(figure(name, 'capacity implied by proxy CPU per request', pk.trials.map((t) => (t.proxied.proxyCpuUsPerRequest ? 1e6 / t.proxied.proxyCpuUsPerRequest : null)), 'req/s', null, '1 s ÷ CPU per request: what one whole core would carry, less sensitive to other tenants'))
    out.push(figure(name, 'throughput direct to upstream', pk.trials.map((t) => t.direct.achievedRate), 'req/s'))
    out.push(figure(name, 'proxy core busy (proxied run)', pk.trials.map((t) => t.proxied.coreBusy[0] * 100), '%', null, 'near 100% = the proxy was the bottleneck'))
    out.push(figure(name, 'other core busy (proxied run)', pk.trials.map((t) => t.proxied.coreBusy[1] * 100), '%', null, 'load generator + fake + Redis'))
    out.push(figure(name, 'proxy CPU per request', pk.trials.map((t) => t.proxied.proxyCpuUsPerRequest), 'µs', null, '', false, pf ? pk.trials.map((t) => t.floor.proxyCpuUsPerRequest) : null))
    out.push(figure(name, 'other processes on the proxy core', pk.trials.map((t) => pctOf(t.proxied.foreignOnProxyCore)), '%', null, 'noise: share of core 0 used by anything but the proxy'))
  }
  const ag = results.agent
  if (ag?.bySize !== undefined) {
    for (const { bodyBytes, trials } of Object.values(ag.bySize)) {
      const name = `h. agent request of ${Math.round(bodyBytes / 1024)} KiB, closed loop C=${ag.concurrency}`
      out.push(figure(name, 'CPU per request ÷ floor\'s', trials.map((t) => ratio(t.proxied.proxyCpuUsPerRequest, t.floor.proxyCpuUsPerRequest)), 'ratio', { op: '<=', limit: 1.1 }, `per trial; ${floorNote}; the floor forwards the body unread`))
      out.push(figure(name, 'proxy CPU per request', trials.map((t) => t.proxied.proxyCpuUsPerRequest), 'µs', null, noise(trials.map((t) => t.proxied)), false, trials.map((t) => t.floor.proxyCpuUsPerRequest)))
      out.push(figure(name, 'throughput through the proxy', trials.map((t) => t.proxied.achievedRate), 'req/s', null, '', false, trials.map((t) => t.floor.achievedRate)))
      out.push(figure(name, 'errors through the proxy', trials.map((t) => errorsOf(t.proxied)), 'count', { op: '==', limit: 0 }))
    }
  }
  const sto = results.stores
  if (sto?.sqlite?.peak !== undefined && sto?.redis?.peak !== undefined) {
    const trialsOf = sto.sqlite.peak.trials.length
    const order = sto.latencyOrder === 'interleaved' ? 'latency interleaved, peak back to back' : 'back to back'
    const name = `f. embedded SQLite store beside Redis (same machine, ${order}, ${trialsOf} trial${trialsOf === 1 ? '' : 's'} each)`
    // Every trial: latency runs per trial, peak trials with the floor measured beside each; ratios per trial.
    const lats = (store) => sto[store].latency.byRate[sto.rate]
    const peaks = (store) => sto[store].peak.trials
    const pk = (store) => peaks(store).map((t) => t.proxied)
    for (const store of ['redis', 'sqlite']) {
      const label = store === 'redis' ? 'Redis' : 'embedded'
      const floors = peaks(store).map((t) => t.floor)
      const hasFloor = floors.every((f) => f !== undefined)
      out.push(figure(name, `${label}: added latency p50 / p99 at ${sto.rate} req/s`, lats(store).map((t) => t.added.p50), 'ms', null, `p99 ${num(spread(lats(store).map((t) => t.added.p99)).median)} ms`))
      out.push(figure(name, `${label}: peak throughput (C=${sto[store].peak.concurrency})`, pk(store).map((r) => r.achievedRate), 'req/s', null, `errors ${pk(store).map(errorsOf).reduce((a, b) => a + b, 0)}`, false, hasFloor ? floors.map((f) => f.achievedRate) : null))
      out.push(figure(name, `${label}: proxy CPU per request at peak`, pk(store).map((r) => r.proxyCpuUsPerRequest), 'µs', null, store === 'redis' ? 'Redis itself runs on the other core, not counted' : 'SQLite runs inside the proxy process', false, hasFloor ? floors.map((f) => f.proxyCpuUsPerRequest) : null))
      if (hasFloor) {
        out.push(figure(name, `${label}: peak throughput ÷ floor's`, pk(store).map((r, i) => ratio(r.achievedRate, floors[i].achievedRate)), 'ratio', { op: '>=', limit: 0.9 }, `floor on the same store (${store === 'redis' ? 'two EVALSHA' : 'two SQLite transactions'} per request)`))
        out.push(figure(name, `${label}: CPU per request ÷ floor's`, pk(store).map((r, i) => ratio(r.proxyCpuUsPerRequest, floors[i].proxyCpuUsPerRequest)), 'ratio', { op: '<=', limit: 1.1 }, `floor on the same store`))
      }
    }
    // "Not slower": the embedded store's peak within measurement noise (5%) of Redis's, or above it.
    out.push(figure(name, 'embedded ÷ Redis peak throughput', pk('sqlite').map((r, i) => ratio(r.achievedRate, pk('redis')[i]?.achievedRate)), 'ratio', { op: '>=', limit: 0.95 }, noise([...pk('sqlite'), ...pk('redis')])))
    out.push(figure(name, `embedded − Redis added latency p50 at ${sto.rate} req/s`, lats('sqlite').map((t, i) => t.added.p50 - (lats('redis')[i]?.added.p50 ?? Number.NaN)), 'ms', { op: '<=', limit: 0.1 }, sto.latencyOrder === 'interleaved' ? 'per trial: both stores against the same direct run' : ''))
  }
  const lk = results.leakage
  if (lk?.floods !== undefined) {
    const groups = new Map()
    for (const f of lk.floods) {
      const id = `${f.kind}|${f.proxies}|${f.cold === true}`
      groups.set(id, [...(groups.get(id) ?? []), f])
    }
    for (const fs of groups.values()) {
      const f = fs[0]
      const what = `${lk.requests} ${f.kind === 'stream' ? 'streams' : 'embeddings'}, ${f.proxies} ${f.cold ? 'freshly started ' : ''}prox${f.proxies === 1 ? 'y' : 'ies'}`
      const name = `d. flood: ${what}`
      const statuses = fs.map((x) => JSON.stringify(x.clientStatuses)).join('; ')
      out.push(figure(name, 'overshoot at the ledger', fs.map((x) => x.overshootMicros), 'µUSD', { op: '==', limit: 0 }, `budget ${f.budgetMicros} µUSD; worst trial judged`, true))
      out.push(figure(name, 'admitted ÷ what the budget holds', fs.map((x) => x.admittedRatio * 100), '%', { op: '>=', limit: 98 }, `holds ${f.holds}; worst trial judged; statuses ${statuses}`, true))
    }
  }
  const pf = results.floods
  if (pf?.floods !== undefined) {
    const groups = new Map()
    for (const f of pf.floods) {
      const id = `${f.provider}|${f.stream}|${f.proxies}`
      groups.set(id, [...(groups.get(id) ?? []), f])
    }
    for (const fs of groups.values()) {
      const f = fs[0]
      const name = `d. flood: ${pf.requests} ${f.provider} ${f.stream ? 'streams' : 'requests'}, ${f.proxies} prox${f.proxies === 1 ? 'y' : 'ies'}`
      const statuses = fs.map((x) => JSON.stringify(x.clientStatuses)).join('; ')
      out.push(figure(name, 'overshoot at the ledger', fs.map((x) => x.overshootMicros), 'µUSD', { op: '==', limit: 0 }, `budget ${f.budgetMicros} µUSD (one request ${f.inputTokens} in + ${f.outputTokens} out at the provider's counts); worst trial judged`, true))
      out.push(figure(name, 'admitted ÷ what the budget holds', fs.map((x) => x.admittedRatio * 100), '%', { op: '>=', limit: f.target * 100 }, `holds ${f.holds}; worst trial judged; statuses ${statuses}`, true))
      out.push(figure(name, '503 budget_unavailable answers', fs.map((x) => x.clientStatuses['503'] ?? 0), 'count', { op: '==', limit: 0 }, 'the store answered too late (a refusal, not an overspend); worst trial judged', true))
    }
  }
  for (const cs of results.countStall?.bodies ?? []) {
    const name = `d. count stall: ${cs.kind} (${num(cs.bodyBytes / 1_048_576)} MiB) counted exactly while small requests flow`
    const ts = cs.trials
    out.push(figure(name, 'small requests\' p99 growth', ts.map((t) => t.p99GrowthMs), 'ms', { op: '<=', limit: 10 }, `p99 before ${ts.map((t) => num(t.baselineP99Ms)).join(', ')} ms → during ${ts.map((t) => num(t.p99Ms)).join(', ')} ms; worst trial judged`, true))
    out.push(figure(name, 'small requests answered 503 during the count', ts.map((t) => t.small503), 'count', { op: '==', limit: 0 }, `of ${ts.map((t) => t.small).join(', ')}; big request ${ts.map((t) => t.bigStatus).join(', ')}`, true))
    out.push(figure(name, 'exact count of the big request', ts.map((t) => t.countMs), 'ms', null, 'until its refusal (budget = 95% of its tokens)'))
    if (ts.some((t) => t.mainWaitMsPerS != null)) {
      out.push(figure(name, 'proxy main thread\'s wait for a core during the count', ts.map((t) => t.mainWaitMsPerS ?? null), 'ms/s', null, `baseline ${ts.map((t) => num(t.baselineMainWaitMsPerS ?? null)).join(', ')} ms/s (schedstat; others on the core count too); CPU in the count: counting worker ${ts.map((t) => num(t.workerCpuMs ?? null)).join(', ')} ms, V8's threads ${ts.map((t) => num(t.v8CpuMs ?? null)).join(', ')} ms`))
    }
    out.push(figure(name, 'longest block of the proxy\'s event loop', ts.map((t) => t.longestBlockMs), 'ms', null, `baseline ${ts.map((t) => num(t.baselineLongestBlockMs)).join(', ')} ms; blocked ${ts.map((t) => num(t.blockedMs)).join(', ')} ms in all during the count`))
    out.push(figure(name, 'longest block of the proxy\'s event loop, in its own CPU time', ts.map((t) => t.longestCpuBlockMs ?? null), 'ms', null, `baseline ${ts.map((t) => num(t.baselineLongestCpuBlockMs ?? null)).join(', ')} ms (main-thread CPU between two 2 ms timer ticks: the machine's load does not count, but this clock moves in whole 4 ms ticks here)`))
    out.push(figure(name, 'longest block of the proxy\'s event loop, its own work (wall less idle and core waits)', ts.map((t) => t.longestOwnBlockMs ?? null), 'ms', null, `baseline ${ts.map((t) => num(t.baselineLongestOwnBlockMs ?? null)).join(', ')} ms (time between two timer ticks less idle time and time waiting for a core); mark-compact pauses during the count ${ts.map((t) => (t.majorGcs ?? []).map((g) => num(g.pauseMs)).join('+') || 'none').join(', ')} ms`))
  }
  for (const [store, lg] of Object.entries(results.loopGuard?.stores ?? {})) {
    const name = `g. loop guard on ÷ off, ${store === 'redis' ? 'Redis (proxy + redis-server)' : 'embedded SQLite (proxy)'}`
    const aa = lg.control.trial_overhead_pct
    const control = `A/A control ${num(lg.control.overhead_pct)}% (trials ${num(Math.min(...aa))} to ${num(Math.max(...aa))}%)`
    for (const [label, run] of [['worst case: one conversation past 256 steps', lg.worst], ['common case: conversations of 40 requests', lg.common]]) {
      const redis = run.redis_guard_us_per_request === undefined ? '' : `; redis-server +${num(run.redis_guard_us_per_request)} µs (${num(run.redis_guard_pct_of_total)}% of both)`
      out.push(figure(name, `CPU per request added, ${label}`, run.trial_overhead_pct, '%', { op: '<=', limit: 3 }, `${run.cpu_us_per_request.guard_on} vs ${run.cpu_us_per_request.guard_off} µs${redis}; ${control}`))
    }
  }
  const mem = results.memory
  if (mem?.idleMb !== undefined) {
    // The floor column is bench/floor.mjs (Fastify + undici + two EVALSHA); the note adds the plain relay.
    const beside = (field) => (mem.floor === undefined ? [null, ''] : [mem.floor[field], `floor (Fastify) ${num(mem.floor[field])}, plain relay ${num(mem.relay?.[field])} MiB`])
    const row = (metric, field, target, extra = '') => {
      const [floorValue, note] = beside(field)
      out.push(figure('e. memory', metric, mem[field], 'MiB', target, [note, extra].filter(Boolean).join('; '), false, floorValue))
    }
    row('RSS right after start', 'afterStartMb', null)
    row(`idle RSS ${mem.idleAfterS} s after the last of ${mem.warmRequests} requests`, 'idleMb', { op: '<=', limit: 80 })
    if (mem.idleLateMb !== undefined) row(`idle RSS ${mem.idleLateAfterS} s after the last of ${mem.warmRequests} requests`, 'idleLateMb', { op: '<=', limit: 80 }, idleSplit(mem))
    row(`RSS with ${mem.streams} concurrent streams`, 'underLoadMb', { op: '<=', limit: 150 }, `at most ${mem.maxOpenUpstream} were open upstream at once`)
    if (mem.afterLoadS !== undefined) row(`RSS ${mem.afterLoadS} s or more after the ${mem.streams} streams ended`, 'afterLoadMb', null)
    out.push(figure('e. memory', 'streams completed', mem.completed, 'count', { op: '==', limit: mem.streams }, `in ${num(mem.elapsedMs / 1000)} s for ${mem.streamSeconds} s streams`))
    out.push(figure('e. memory', 'time to first byte p50 / p99, 1000 streams at once', mem.ttfbMs.p50, 'ms', null, `p99 ${num(mem.ttfbMs.p99)} ms`))
  }
  return out
}

/** Where each late idle RSS goes (private memory + mapped files), and a bare Node process's beside it. */
function idleSplit(mem) {
  const split = (s) => (s === null || s === undefined ? '—' : `${num(s.anon)} + ${num(s.file)}`)
  if (mem.idleLateSplitMb === undefined) return ''
  const bare = mem.bareNode === undefined ? '' : `; a bare Node process with the same flags ${num(mem.bareNode.rssMb)} MiB (${split(mem.bareNode.splitMb)})`
  return `private + mapped-file MiB: proxy ${split(mem.idleLateSplitMb)}, floor ${split(mem.floor?.idleLateSplitMb)}, relay ${split(mem.relay?.idleLateSplitMb)}${bare} (mapped files: nearly all the node binary's pages, shared and clean)`
}

export function num(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—'
  const abs = Math.abs(n)
  return abs >= 1000 ? String(Math.round(n)) : abs >= 100 ? n.toFixed(0) : abs >= 10 ? n.toFixed(1) : n.toFixed(2)
}

function target(t) {
  if (t === null) return '—'
  return `${t.op === '==' ? '=' : t.op === '<=' ? '≤' : '≥'} ${t.limit}`
}

/** The Markdown report: environment, figures against targets, method, and any profile. */
export function renderMarkdown({ env, mode, startedAt, durationS, quietWaitedS = 0, results, figures: rows, profile, notes }) {
  const lines = []
  lines.push('# Loopers benchmark', '')
  lines.push(`Run ${startedAt} (${mode}, ${Math.round(durationS)} s). Medians over trials; spread is min – max. Generated by \`npm run bench\`.`, '')
  lines.push('## Environment', '', '| | |', '| --- | --- |')
  lines.push(`| CPU | ${env.cpu} (${env.cores} cores, ${env.memoryGb} GiB) |`)
  lines.push(`| Kernel | ${env.kernel} |`)
  lines.push(`| Node | ${env.node} |`)
  lines.push(`| redis-server | ${env.redis} |`)
  lines.push(`| Commit | ${env.commit} |`)
  lines.push(`| taskset used | ${env.taskset ? 'yes' : 'no'}: ${env.pinning} |`)
  lines.push(`| Load average at start | ${env.loadAverage.join(' / ')} |`)
  lines.push(`| Waited for a quiet proxy core | ${num(quietWaitedS)} s in all |`)
  lines.push('', '## Results', '', '| Scenario | Metric | Median | Spread (min – max) | n | Floor (median) | Target | Status | Note |', '| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |')
  for (const r of rows) {
    const range = r.n > 1 ? `${num(r.min)} – ${num(r.max)}` : '—'
    lines.push(`| ${r.scenario} | ${r.metric} | ${num(r.median)} ${r.unit} | ${range} | ${r.n} | ${r.floor === null || r.floor === undefined ? '—' : `${num(r.floor)} ${r.unit}`} | ${target(r.target)} | ${r.status} | ${r.note} |`)
  }
  const errors = Object.entries(results).filter(([, v]) => v?.error !== undefined)
  if (errors.length > 0) {
    lines.push('', '## Scenarios that failed to run', '')
    for (const [name, v] of errors) lines.push(`- ${name}: ${v.error}`)
  }
  if (notes.length > 0) lines.push('', '## Method', '', ...notes.map((n) => `- ${n}`))
  if (profile !== null) {
    lines.push('', `## Proxy CPU profile (${profile.file})`, '', `${num(profile.totalMs)} ms sampled; GC ${num(profile.gcPct)}%, idle excluded.`, '')
    lines.push('| Self % | Self ms | Function | Where |', '| ---: | ---: | --- | --- |')
    for (const f of profile.top) lines.push(`| ${num(f.pct)} | ${num(f.ms)} | ${f.name} | ${f.where} |`)
    lines.push('', '| Inclusive % | Inclusive ms | Our function | Where |', '| ---: | ---: | --- | --- |')
    for (const f of profile.inclusive) lines.push(`| ${num(f.pct)} | ${num(f.ms)} | ${f.name} | ${f.where} |`)
    lines.push('', '| Self % by origin | |', '| ---: | --- |')
    for (const g of profile.byOrigin) lines.push(`| ${num(g.pct)} | ${g.origin} |`)
  }
  return `${lines.join('\n')}\n`
}
