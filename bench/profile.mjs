// Summarises a V8 .cpuprofile (from `node --cpu-prof`): top functions by self time, and self time by
// origin (our dist/ files, each dependency, Node internals). `node bench/profile.mjs FILE` prints it.
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { pathToFileURL } from 'node:url'

const NON_CODE = new Set(['(idle)', '(program)', '(garbage collector)', '(root)'])

/** Where a frame's code lives: `dist/<file>`, a package name, `node:internal`, or the native label. */
function originOf(url) {
  if (url === '') return '(native / V8)'
  if (url.startsWith('node:')) return 'node: internals'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]
  const dist = /\/dist\/(.+)$/.exec(url)
  if (dist !== null) return `loopers dist/${dist[1]}`
  return url
}

export function summarizeProfile(file, top = 15) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const selfUs = new Map()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const byFunction = new Map()
  const byOrigin = new Map()
  let total = 0
  let gc = 0
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(garbage collector)') gc += us
    if (functionName === '(idle)' || functionName === '(root)') continue
    total += us
    if (NON_CODE.has(functionName)) {
      byOrigin.set(functionName, (byOrigin.get(functionName) ?? 0) + us)
      continue
    }
    const where = url === '' ? '(native)' : `${originOf(url).startsWith('loopers') ? originOf(url).slice(8) : originOf(url)} · ${basename(url)}:${lineNumber + 1}`
    const key = `${functionName || '(anonymous)'}\u0000${where}`
    byFunction.set(key, (byFunction.get(key) ?? 0) + us)
    const origin = originOf(url)
    byOrigin.set(origin, (byOrigin.get(origin) ?? 0) + us)
  }
  // Inclusive time of our own functions (dist/): each sample counts once for every distinct frame above it.
  const parent = new Map()
  const nodesById = new Map(profile.nodes.map((n) => [n.id, n]))
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const inclusive = new Map()
  for (let i = 0; i < profile.samples.length; i++) {
    const seen = new Set()
    for (let id = profile.samples[i]; id !== undefined; id = parent.get(id)) {
      const { functionName, url, lineNumber } = nodesById.get(id).callFrame
      if (!/\/dist\//.test(url) || url.includes('node_modules')) continue
      const key = `${functionName || '(anonymous)'}\u0000${/\/dist\/(.+)$/.exec(url)[1]}:${lineNumber + 1}`
      if (seen.has(key)) continue
      seen.add(key)
      inclusive.set(key, (inclusive.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0))
    }
  }
  const pct = (us) => (total === 0 ? 0 : (100 * us) / total)
  return {
    inclusive: [...inclusive.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => {
        const [name, where] = key.split('\u0000')
        return { name, where, ms: us / 1000, pct: pct(us) }
      }),
    file: basename(file),
    totalMs: total / 1000,
    gcPct: pct(gc),
    top: [...byFunction.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => {
        const [name, where] = key.split('\u0000')
        return { name, where, ms: us / 1000, pct: pct(us) }
      }),
    byOrigin: [...byOrigin.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([origin, us]) => ({ origin, pct: pct(us) })),
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2]
  if (file === undefined) {
    process.stderr.write('usage: node bench/profile.mjs FILE.cpuprofile [TOP]\n')
    process.exit(2)
  }
  const s = summarizeProfile(file, Number(process.argv[3] ?? 25))
  process.stdout.write(`${s.file}: ${s.totalMs.toFixed(0)} ms sampled, GC ${s.gcPct.toFixed(1)}%\n`)
  for (const f of s.top) process.stdout.write(`${f.pct.toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(6)} ms  ${f.name}  ${f.where}\n`)
  process.stdout.write('\ninclusive, our code:\n')
  for (const f of s.inclusive) process.stdout.write(`${f.pct.toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(6)} ms  ${f.name}  ${f.where}\n`)
  process.stdout.write('\nby origin:\n')
  for (const g of s.byOrigin) process.stdout.write(`${g.pct.toFixed(1).padStart(5)}%  ${g.origin}\n`)
}
