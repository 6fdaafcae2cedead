// The four classes alone, not prom-client's entry point (default metrics, OpenTelemetry): ./deep-imports.d.ts.
import Counter from 'prom-client/lib/counter.js'
import Gauge from 'prom-client/lib/gauge.js'
import Histogram from 'prom-client/lib/histogram.js'
import Registry from 'prom-client/lib/registry.js'
import type { BudgetStore } from './budget/types.js'

/** Every metric Loopers exports; the Grafana dashboard may use only these. */
export const METRIC_NAMES = [
  'loopers_requests_total',
  'loopers_refusals_total',
  'loopers_cutoffs_total',
  'loopers_spend_usd_total',
  'loopers_tokens_total',
  'loopers_store_errors_total',
  'loopers_store_latency_seconds',
  'loopers_request_duration_seconds',
  'loopers_added_latency_seconds',
  'loopers_inflight_streams',
] as const

const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
const DURATION_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

/** What one finished request contributes to the metrics. */
export interface RequestRecord {
  provider: string
  /** A priced model id, or a placeholder: labels never carry arbitrary client strings. */
  model: string
  outcome: string
  /** Public error code of a refusal, with the budget window when one refused. */
  refusal?: { reason: string; window: string }
  cutoff: boolean
  spendUsd: number
  inputTokens: number
  outputTokens: number
  durationSeconds: number
  /** Time spent in the proxy before the upstream was called; absent when it never was. */
  addedSeconds?: number
  /** Hash prefix of the key, only recorded when per-key labels are enabled. */
  key?: string
}

export interface Metrics {
  registry: Registry
  recordRequest(record: RequestRecord): void
  streamStarted(): void
  streamEnded(): void
  /** A refusal or cut-off the store could not record (counted as a store error, op record_event). */
  eventLost(): void
  /** A budget store whose every call is timed and every fault counted (reserve, extend and settle by the store itself: observeCalls). */
  instrumentStore(store: BudgetStore): BudgetStore
}

/**
 * Memoises one value per distinct label values (up to four; a metric with fewer passes '' for the rest) in a
 * tree of maps: a lookup builds no array or key string.
 */
function children<T>(make: (a: string, b: string, c: string, d: string) => T): (a: string, b?: string, c?: string, d?: string) => T {
  const root = new Map<string, Map<string, Map<string, Map<string, T>>>>()
  return (a, b = '', c = '', d = '') => {
    const three = branch(branch(branch(root, a), b), c)
    let child = three.get(d)
    if (child === undefined) {
      child = make(a, b, c, d)
      three.set(d, child)
    }
    return child
  }
}

function branch<V>(map: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let next = map.get(key)
  if (next === undefined) {
    next = new Map()
    map.set(key, next)
  }
  return next
}

/** One labelled series of a tallied counter (`createTalliedCounter`). */
interface Tally {
  inc(value?: number): void
}

/**
 * A Counter whose series add up here, in plain numbers, and reach prom-client when the registry is read:
 * prom-client hashes and checks a series' labels on every `inc`. Each total is summed in the order
 * prom-client would sum it, so what is exported is the same. Returns the maker of one series' tally
 * (label values in `labelNames` order; values past them are ignored).
 */
function createTalliedCounter(config: { name: string; help: string; labelNames: string[]; registers: Registry[] }) {
  const tallies: Array<{ labels: Record<string, string>; total: number }> = []
  new Counter({
    ...config,
    collect() {
      this.reset()
      for (const tally of tallies) this.inc(tally.labels, tally.total)
    },
  })
  return (values: string[]): Tally => {
    const tally = { labels: Object.fromEntries(config.labelNames.map((name, i) => [name, values[i] ?? ''])), total: 0 }
    tallies.push(tally)
    return {
      inc(value = 1) {
        // prom-client's own checks, here where the value is known (not at the next scrape).
        if (!Number.isFinite(value) || value < 0) throw new TypeError(`a counter cannot add ${value}`)
        tally.total += value
      },
    }
  }
}

/** prom-client's record of one histogram series (lib/histogram.js), which a tallied histogram writes when read. */
interface HistogramSeries {
  labels: Record<string, string>
  bucketValues: Record<number, number>
  sum: number
  count: number
}

/** One labelled series of a tallied histogram (`createTalliedHistogram`). */
interface Observer {
  observe(value: number): void
}

/**
 * A Histogram whose series tally here, in plain numbers, and reach prom-client when the registry is read:
 * prom-client builds a label hash and two objects on every `observe`. Bucket counts, sums (added in
 * observation order) and series order are prom-client's own, so what is exported is the same. Returns the
 * maker of one series' tally (label values in `labelNames` order).
 */
function createTalliedHistogram(config: { name: string; help: string; labelNames: string[]; buckets: number[]; registers: Registry[] }) {
  const bounds = config.buckets
  const tallies: Array<{ labels: Record<string, string>; buckets: number[]; sum: number; count: number }> = []
  new Histogram({
    ...config,
    collect() {
      this.reset()
      // prom-client exports its series map in insertion order; integer keys keep the tallies' order.
      const series = (this as unknown as { hashMap: Record<string, HistogramSeries> }).hashMap
      for (const [i, tally] of tallies.entries()) {
        const bucketValues: Record<number, number> = {}
        for (const [j, bound] of bounds.entries()) bucketValues[bound] = tally.buckets[j]!
        series[i] = { labels: { ...tally.labels }, bucketValues, sum: tally.sum, count: tally.count }
      }
    },
  })
  const make = (values: string[]): Observer => {
    const tally = { labels: Object.fromEntries(config.labelNames.map((name, i) => [name, values[i] ?? ''])), buckets: bounds.map(() => 0), sum: 0, count: 0 }
    tallies.push(tally)
    return {
      observe(value) {
        // prom-client's own check, here where the value is known (not at the next scrape).
        if (!Number.isFinite(value)) throw new TypeError(`a histogram cannot observe ${value}`)
        // The first bucket whose upper bound the value does not exceed; past the last, only +Inf (the count).
        let i = 0
        while (i < bounds.length && value > bounds[i]!) i++
        if (i < bounds.length) tally.buckets[i]! += 1
        tally.sum += value
        tally.count += 1
      },
    }
  }
  return make
}

/** The series of one (provider, model, outcome, key): `requests` made with it, the others on first use. */
interface RequestSeries {
  provider: string
  key: string
  requests: Tally
  cutoffs: Tally | undefined
  spend: Tally | undefined
  input: Tally | undefined
  output: Tally | undefined
  duration: Observer | undefined
}

/** A fresh registry per server (tests start several in one process). `perKey` adds a key label to request and spend series. */
export function createMetrics(options: { perKey: boolean }): Metrics {
  const registry = new Registry()
  const keyLabel = options.perKey ? ['key'] : []
  const requests = createTalliedCounter({
    name: 'loopers_requests_total',
    help: 'Proxied requests by provider, model and outcome',
    labelNames: ['provider', 'model', 'outcome', ...keyLabel],
    registers: [registry],
  })
  const refusals = createTalliedCounter({
    name: 'loopers_refusals_total',
    help: 'Requests refused by the proxy, by reason and budget window',
    labelNames: ['reason', 'window'],
    registers: [registry],
  })
  const cutoffs = createTalliedCounter({ name: 'loopers_cutoffs_total', help: 'Streams cut at the budget', labelNames: ['provider'], registers: [registry] })
  const spend = createTalliedCounter({
    name: 'loopers_spend_usd_total',
    help: 'Settled spend in USD',
    labelNames: ['provider', ...keyLabel],
    registers: [registry],
  })
  const tokens = createTalliedCounter({ name: 'loopers_tokens_total', help: 'Settled tokens', labelNames: ['provider', 'kind'], registers: [registry] })
  const storeErrors = new Counter({ name: 'loopers_store_errors_total', help: 'Budget store faults', labelNames: ['op'], registers: [registry] })
  const storeLatency = createTalliedHistogram({
    name: 'loopers_store_latency_seconds',
    help: 'Budget store call latency',
    labelNames: ['op'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  })
  const duration = createTalliedHistogram({
    name: 'loopers_request_duration_seconds',
    help: 'Whole request duration, streams included',
    labelNames: ['provider'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  })
  // Its one series made at once: prom-client exports a histogram without labels from the start.
  const added = createTalliedHistogram({
    name: 'loopers_added_latency_seconds',
    help: 'Time the proxy spends on a request before calling the upstream',
    labelNames: [],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  })([])
  const inflight = new Gauge({ name: 'loopers_inflight_streams', help: 'Streams being relayed now', registers: [registry] })

  /**
   * The end of one store call of `op`: its latency observed, a failure counted. The op's children are resolved
   * once, on first use (so the exported series stay as they were): prom-client hashes a label object on every labelled call.
   */
  function storeOp(op: string): (startedMs: number, failed: boolean) => void {
    let latency: Observer | undefined
    let errors: ReturnType<typeof storeErrors.labels> | undefined
    return (startedMs, failed) => {
      if (failed) {
        errors ??= storeErrors.labels(op)
        errors.inc()
      }
      latency ??= storeLatency([op])
      latency.observe((performance.now() - startedMs) / 1000)
    }
  }

  function timed<A extends unknown[], R>(op: string, call: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
    const ended = storeOp(op)
    // Two reactions on the store's own promise, not an async wrapper: a wrapper's frame and promise are
    // the larger part of what timing a call allocates.
    return (...args) => {
      const started = performance.now()
      let pending: Promise<R>
      try {
        pending = call(...args)
      } catch (error) {
        pending = Promise.reject(error)
      }
      return pending.then(
        (result) => {
          ended(started, false)
          return result
        },
        (error: unknown) => {
          ended(started, true)
          throw error
        },
      )
    }
  }

  // Label sets repeat (providers × priced models × outcomes): resolving each child once skips
  // prom-client's per-call label hashing, which otherwise costs a tenth of the proxy's CPU.
  const refusalsBy = children((reason, window) => refusals([reason, window]))
  const cutoffsBy = children((provider) => cutoffs([provider]))
  const spendBy = children((provider, key) => spend([provider, key]))
  const tokensBy = children((provider, kind) => tokens([provider, kind]))
  const durationBy = children((provider) => duration([provider]))
  // A request's series found in one lookup (none when it is of the last request's kind): the others are
  // taken from the maps above on first use, so each series starts when it did and is exported in that order.
  const seriesBy = children((provider, model, outcome, key): RequestSeries => ({
    provider,
    key,
    requests: requests([provider, model, outcome, key]),
    cutoffs: undefined,
    spend: undefined,
    input: undefined,
    output: undefined,
    duration: undefined,
  }))
  let last: RequestSeries | undefined
  let lastModel = ''
  let lastOutcome = ''

  function seriesOf(provider: string, model: string, outcome: string, key: string): RequestSeries {
    if (last !== undefined && provider === last.provider && model === lastModel && outcome === lastOutcome && key === last.key) return last
    last = seriesBy(provider, model, outcome, key)
    lastModel = model
    lastOutcome = outcome
    return last
  }

  return {
    registry,
    recordRequest(r) {
      const s = seriesOf(r.provider, r.model, r.outcome, options.perKey ? (r.key ?? '') : '')
      s.requests.inc()
      if (r.refusal) refusalsBy(r.refusal.reason, r.refusal.window).inc()
      if (r.cutoff) (s.cutoffs ??= cutoffsBy(s.provider)).inc()
      if (r.spendUsd > 0) (s.spend ??= spendBy(s.provider, s.key)).inc(r.spendUsd)
      if (r.inputTokens > 0) (s.input ??= tokensBy(s.provider, 'input')).inc(r.inputTokens)
      if (r.outputTokens > 0) (s.output ??= tokensBy(s.provider, 'output')).inc(r.outputTokens)
      ;(s.duration ??= durationBy(s.provider)).observe(r.durationSeconds)
      if (r.addedSeconds !== undefined) added.observe(r.addedSeconds)
    },
    eventLost: () => storeErrors.inc({ op: 'record_event' }),
    streamStarted: () => inflight.inc(),
    streamEnded: () => inflight.dec(),
    instrumentStore(store) {
      // The store times its own reserve, extend and settle (no wrapper, closures or promise per call).
      const reserved = storeOp('reserve')
      const extended = storeOp('extend')
      const settled = storeOp('settle')
      // Compared, not looked up by name (`ended[op]`): a keyed load of a varying name on every store call.
      store.observeCalls((op, startedMs, failed) => (op === 'settle' ? settled : op === 'reserve' ? reserved : extended)(startedMs, failed))
      return { ...store, abandon: timed('abandon', store.abandon.bind(store)), ping: timed('ping', store.ping.bind(store)) }
    },
  }
}
