import { readFileSync } from 'node:fs'
import { parser } from '@prometheus-io/lezer-promql'
import { Histogram } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { createMetrics, METRIC_NAMES } from '../../src/metrics.js'

/**
 * grafana/loopers-dashboard.json queries only what Loopers exports: every expression parses as
 * PromQL, names only metrics of METRIC_NAMES, and filters and groups only by labels they carry.
 */

interface Target {
  expr: string
  datasource?: { uid?: string }
}
interface Panel {
  id: number
  type: string
  title: string
  datasource?: { type?: string; uid?: string }
  gridPos: { x: number; y: number; w: number; h: number }
  targets?: Target[]
  panels?: Panel[]
}
interface Dashboard {
  uid: string
  title: string
  panels: Panel[]
  templating: { list: Array<{ name: string; type: string; query: unknown; datasource?: { uid?: string } }> }
}

const dashboard = JSON.parse(readFileSync(new URL('../../grafana/loopers-dashboard.json', import.meta.url), 'utf8')) as Dashboard
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])
const queryPanels = panels.filter((p) => p.type !== 'row')
const DATASOURCE = '${DS_PROMETHEUS}'

// The label names of each metric, read from the metrics the server really registers.
const registry = createMetrics({ perKey: false }).registry
const labelsOf = new Map<string, Set<string>>()
const histograms = new Set<string>()
for (const name of METRIC_NAMES) {
  const metric = registry.getSingleMetric(name)
  if (metric === undefined) throw new Error(`${name} is in METRIC_NAMES but not registered`)
  // prom-client keeps the configured label names on the metric object.
  const labelNames = (metric as unknown as { labelNames?: unknown }).labelNames
  if (!Array.isArray(labelNames)) throw new Error(`cannot read the label names of ${name}`)
  labelsOf.set(name, new Set(labelNames as string[]))
  if (metric instanceof Histogram) histograms.add(name)
}

/** The exported metric a series name belongs to (a histogram's `_bucket`, `_sum`, `_count` included), or null. */
function metricOf(series: string): { metric: string; bucket: boolean } | null {
  if (labelsOf.has(series)) return { metric: series, bucket: false }
  const match = /^(.*)_(bucket|sum|count)$/.exec(series)
  if (match && histograms.has(match[1]!)) return { metric: match[1]!, bucket: match[2] === 'bucket' }
  return null
}

interface Analysis {
  errors: string[]
  series: string[]
  matcherLabels: Array<{ series: string; label: string }>
  groupings: Array<{ labels: string[]; series: string[] }>
}

/** Parses a panel expression the way Grafana sends it (its variables replaced) and lists what it uses. */
function analyse(expr: string): Analysis {
  const promql = expr.replaceAll('$__rate_interval', '5m').replaceAll('$__range', '6h').replaceAll('$__interval', '1m')
  const tree = parser.parse(promql)
  const text = (from: number, to: number): string => promql.slice(from, to)
  const result: Analysis = { errors: [], series: [], matcherLabels: [], groupings: [] }
  const cursor = tree.cursor()
  do {
    const node = cursor.node
    if (node.type.isError) result.errors.push(`syntax error at ${node.from}: ${JSON.stringify(promql.slice(node.from, node.from + 20))}`)
    if (node.name === 'VectorSelector') {
      const id = node.getChild('Identifier')
      const series = id === null ? '' : text(id.from, id.to)
      result.series.push(series)
      for (const matcher of node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
        const label = matcher.getChild('LabelName')
        if (label !== null) result.matcherLabels.push({ series, label: text(label.from, label.to) })
      }
    }
    if (node.name === 'AggregateExpr') {
      const labels = node.getChild('AggregateModifier')?.getChild('GroupingLabels')?.getChildren('LabelName') ?? []
      const inner: string[] = []
      const sub = node.cursor()
      do {
        if (sub.name === 'VectorSelector') {
          const id = sub.node.getChild('Identifier')
          if (id !== null) inner.push(text(id.from, id.to))
        }
      } while (sub.next() && sub.from < node.to)
      result.groupings.push({ labels: labels.map((l) => text(l.from, l.to)), series: inner })
    }
  } while (cursor.next())
  return result
}

const targets = queryPanels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel, target })))

describe('grafana/loopers-dashboard.json', () => {
  it('is a Prometheus dashboard on the ${DS_PROMETHEUS} datasource variable', () => {
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/)
    const ds = dashboard.templating.list.find((v) => v.name === 'DS_PROMETHEUS')
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' })
    expect(queryPanels.length).toBeGreaterThanOrEqual(10)
    for (const { panel, target } of targets) {
      expect(panel.datasource?.uid, panel.title).toBe(DATASOURCE)
      expect(target.datasource?.uid ?? DATASOURCE, panel.title).toBe(DATASOURCE)
    }
    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      expect(variable.datasource?.uid, variable.name).toBe(DATASOURCE)
    }
  })

  it('gives every panel a unique id, a query, and its own place on the grid', () => {
    const ids = panels.map((p) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    for (const panel of queryPanels) expect(panel.targets?.length ?? 0, panel.title).toBeGreaterThan(0)
    const cells = new Map<string, string>()
    for (const panel of panels) {
      const { x, y, w, h } = panel.gridPos
      expect(x + w, panel.title).toBeLessThanOrEqual(24)
      for (let row = y; row < y + h; row++) {
        for (let col = x; col < x + w; col++) {
          const taken = cells.get(`${row}:${col}`)
          expect(taken, `${panel.title} overlaps ${taken}`).toBeUndefined()
          cells.set(`${row}:${col}`, panel.title)
        }
      }
    }
  })

  it.each(targets.map(({ panel, target }) => [panel.title, target.expr]))('%s: %s', (_title, expr) => {
    const { errors, series, matcherLabels, groupings } = analyse(expr)
    expect(errors).toEqual([])
    expect(series.length).toBeGreaterThan(0)
    for (const name of series) expect(metricOf(name), `${name} is not an exported metric`).not.toBeNull()
    for (const { series: name, label } of matcherLabels) {
      const { metric, bucket } = metricOf(name)!
      expect(labelsOf.get(metric)!.has(label) || (bucket && label === 'le'), `${name} has no label ${label}`).toBe(true)
    }
    for (const { labels, series: inner } of groupings) {
      for (const label of labels) {
        const carried = inner.some((name) => {
          const found = metricOf(name)
          return found !== null && (labelsOf.get(found.metric)!.has(label) || (found.bucket && label === 'le'))
        })
        expect(carried, `grouping by ${label}, which ${inner.join(', ')} do not carry`).toBe(true)
      }
    }
  })

  it('template variables read labels that exist', () => {
    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const query = typeof variable.query === 'string' ? variable.query : (variable.query as { query: string }).query
      const match = /^label_values\((\w+),\s*(\w+)\)$/.exec(query)
      expect(match, query).not.toBeNull()
      expect(labelsOf.get(match![1]!)?.has(match![2]!), query).toBe(true)
    }
  })

  it('charts every exported metric', () => {
    const used = new Set(targets.flatMap(({ target }) => analyse(target.expr).series.map((s) => metricOf(s)?.metric)))
    expect(METRIC_NAMES.filter((name) => !used.has(name))).toEqual([])
  })
})
