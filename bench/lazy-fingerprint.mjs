// CPU cost of the loop fingerprint on a lazily read agent body (bench/agent-body.mjs), against the same body
// parsed whole, for this build and optionally another one in the same process: rounds alternate between the builds,
// so the machine's load moves both alike. Also counts what load does not move: JSON.parse calls and characters, the
// work the digest's definition fixes (SHA-256 calls and bytes, units mixed into the lanes), and V8 heap bytes
// allocated (summed over collections, as bench/alloc-probe.mjs sums them).
// `npm run build && node bench/lazy-fingerprint.mjs [--bytes=32768] [--seconds=4] [--other=OLD/dist] [--shape=chat|anthropic] [--lazy-only]`
// (--lazy-only: rounds time the lazy body's fingerprint alone, so more of them fit; with --other a last line gives the
// median, quartiles and range of this build's CPU time ÷ the other's over the rounds, each ratio of two adjacent runs)
// (--shape: bench/agent-body.mjs's chat body, the default, or its Anthropic Messages body; both the messages shape)
// prints one JSON line per build: microseconds per fingerprint (median of rounds, min–max) on the lazy and the
// parsed body, the lazy one's also in CPU time (process.cpuUsage: not charged for other processes' turns, so it moves
// far less with the machine's load than wall time), microseconds per lazy read of the body (readLazyBody: the
// validating scan and the members' definitions, which the fingerprint's bodies are made by before timing), JSON.parse calls and characters per fingerprint of the
// lazy body, its SHA-256 calls and bytes and lane units (the conversation's digest and the step's together; null when
// the build's Digest and Bulk name their counters otherwise), and heap bytes per fingerprint of each.
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import v8 from 'node:v8'
import { agentBody } from './agent-body.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const bytes = Number(arg('bytes', '32768'))
const seconds = Number(arg('seconds', '4'))
const dists = [resolve('dist'), ...(arg('other', null) === null ? [] : [resolve(arg('other'))])]
const POOL = 256
const lazyOnly = process.argv.includes('--lazy-only')

const raw = Buffer.from(agentBody({ bytes, shape: arg('shape', 'chat') }))
const builds = []
for (const dist of dists) {
  const url = (path) => pathToFileURL(`${dist}/${path}`).href
  const { readLazyBody, readParsedBody } = await import(url('proxy/request-body.js'))
  const { messagesShape } = await import(url('loop/shapes/messages.js'))
  const { Digest } = await import(url('loop/digest.js'))
  const { Bulk } = await import(url('loop/bulk.js'))
  // Every fingerprint is of a body read afresh (nothing of an earlier one is cached); a body its scan reads in
  // several slices (128 KiB) comes as a promise: the bodies are made before timing.
  const pool = (read) => () => Promise.all(Array.from({ length: POOL }, () => read(raw, messagesShape)))
  builds.push({ dist, Digest, Bulk, read: () => readLazyBody(raw, messagesShape), lazy: pool(readLazyBody), parsed: pool(readParsedBody), rounds: { lazy: [], lazyCpu: [], parsed: [], read: [] } })
}

// What the lazy body's fingerprint parses.
for (const build of builds) {
  const [body] = await build.lazy()
  const parse = JSON.parse
  let calls = 0
  let chars = 0
  JSON.parse = (text, reviver) => {
    calls++
    chars += String(text).length
    return parse(text, reviver)
  }
  try {
    body.fingerprint()
  } finally {
    JSON.parse = parse
  }
  build.parses = { calls, chars }
}

// What it hashes: read from the private counters of a digest as it ends (Digest#hex, whose Bulk#sha256 empties the bulk).
for (const build of builds) {
  const [body] = await build.lazy()
  const { hex } = build.Digest.prototype
  const { sha256 } = build.Bulk.prototype
  const hashed = { sha_calls: 0, sha_bytes: 0, lane_units: 0 }
  build.Digest.prototype.hex = function () {
    hashed.lane_units += this.laneChars
    return hex.call(this)
  }
  build.Bulk.prototype.sha256 = function () {
    if (this.bytes > 0) {
      hashed.sha_calls++
      hashed.sha_bytes += this.bytes
    }
    return sha256.call(this)
  }
  try {
    body.fingerprint()
  } finally {
    build.Digest.prototype.hex = hex
    build.Bulk.prototype.sha256 = sha256
  }
  build.hashed = Number.isInteger(hashed.lane_units) && Number.isInteger(hashed.sha_bytes) ? hashed : { sha_calls: null, sha_bytes: null, lane_units: null }
}

for (const build of builds) for (const kind of ['lazy', 'parsed']) for (let i = 0; i < 4; i++) for (const body of await build[kind]()) body.fingerprint()

// Heap bytes per fingerprint: the bodies are read before counting starts.
const ALLOC_POOLS = 16
for (const build of builds) {
  build.alloc = {}
  for (const kind of ['lazy', 'parsed']) {
    const pools = []
    for (let i = 0; i < ALLOC_POOLS; i++) pools.push(await build[kind]())
    const profiler = new v8.GCProfiler()
    let lastAfter = v8.getHeapStatistics().used_heap_size
    profiler.start()
    for (const bodies of pools) for (const body of bodies) body.fingerprint()
    const now = v8.getHeapStatistics().used_heap_size
    let allocated = 0
    for (const s of profiler.stop().statistics) {
      allocated += s.beforeGC.heapStatistics.usedHeapSize - lastAfter
      lastAfter = s.afterGC.heapStatistics.usedHeapSize
    }
    build.alloc[kind] = Math.round((allocated + now - lastAfter) / (ALLOC_POOLS * POOL))
  }
}
const end = performance.now() + seconds * 1000
while (performance.now() < end) {
  for (const build of builds) {
    for (const kind of lazyOnly ? ['lazy'] : ['lazy', 'parsed']) {
      const bodies = await build[kind]()
      const start = performance.now()
      const cpu = process.cpuUsage()
      for (const body of bodies) body.fingerprint()
      const used = process.cpuUsage(cpu)
      build.rounds[kind].push(((performance.now() - start) * 1000) / bodies.length)
      if (kind === 'lazy') build.rounds.lazyCpu.push((used.user + used.system) / bodies.length)
    }
    if (lazyOnly) continue
    // A body read in several slices gives a promise: its turns between slices are timed too.
    const start = performance.now()
    for (let i = 0; i < POOL; i++) {
      const body = build.read()
      if (body instanceof Promise) await body
    }
    build.rounds.read.push(((performance.now() - start) * 1000) / POOL)
  }
}
for (const { dist, rounds, parses, hashed, alloc } of builds) {
  const stats = (values) => {
    values.sort((a, b) => a - b)
    return `${round(values[values.length >> 1])} (${round(values[0])}–${round(values[values.length - 1])})`
  }
  process.stdout.write(`${JSON.stringify({ build: dist, body_bytes: raw.length, rounds: rounds.lazy.length, lazy_us: stats(rounds.lazy), lazy_cpu_us: stats(rounds.lazyCpu), parsed_us: stats(rounds.parsed), read_us: stats(rounds.read), lazy_parse_calls: parses.calls, lazy_parse_chars: parses.chars, ...hashed, lazy_heap_bytes: alloc.lazy, parsed_heap_bytes: alloc.parsed })}\n`)
}

if (builds.length === 2) {
  const [a, b] = builds.map((build) => build.rounds.lazyCpu)
  const ratios = a.map((cpu, i) => cpu / b[i]).sort((x, y) => x - y)
  const at = (q) => Math.round(ratios[Math.min(ratios.length - 1, Math.floor(q * ratios.length))] * 1000) / 1000
  process.stdout.write(`${JSON.stringify({ lazy_cpu_ratio: at(0.5), quartiles: [at(0.25), at(0.75)], range: [at(0), at(1)], rounds: ratios.length })}\n`)
}

function round(value) {
  return Math.round(value * 10) / 10
}
