// CPU cost of taking in an agent's request body (bench/agent-body.mjs) on the event loop, for this build and another
// in the same process, rounds alternating between the builds so the machine's load moves both alike: readRawBody of
// a body that comes after its headers in the chunks an HTTP/1 parser hands over (each its own copy, at most 64 KiB: a
// socket's read), then the validating scan (scanJson) of it. Also counts what load does not move: the bytes each read copies
// into a fresh buffer (none when the body is the chunk it came in).
// `npm run build && node bench/read-ab.mjs --other=OLD [--sizes=32768,131072] [--rounds=8] [--shape=chat|anthropic]`
// (OLD: a checkout with a build, e.g. the session's starting one) prints one JSON line per size and step: microseconds
// per call of each build (median of rounds, min–max) and its bytes copied per read.
import { PassThrough } from 'node:stream'
import { agentBody } from './agent-body.mjs'
import { ROOT } from './procs.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const other = arg('other', null)
if (other === null) throw new Error('read-ab: --other=OLD (a checkout with a build) is required')
const rounds = Number(arg('rounds', '8'))
const shape = arg('shape', 'chat')
const sizes = arg('sizes', '32768,131072').split(',').map(Number)

async function load(root) {
  const { readRawBody } = await import(`${root}/dist/http/raw-body.js`)
  const { scanJson } = await import(`${root}/dist/http/json-scan.js`)
  const { createWordSet } = await import(`${root}/dist/http/json-keys.js`)
  const { SCAN_WORDS } = await import(`${root}/dist/tokens/bound.js`)
  return { root, readRawBody, scanJson, words: createWordSet(SCAN_WORDS) }
}
const builds = [await load(ROOT), await load(other)]

/** A request stream that sends `chunks` a turn after it is made, with its length declared. */
function payload(chunks, length) {
  const stream = new PassThrough()
  Object.assign(stream, { headers: { 'content-length': String(length) }, httpVersionMajor: 1 })
  setImmediate(() => {
    for (const chunk of chunks) stream.write(chunk)
    stream.end()
  })
  return stream
}

/** `body` as the parser hands it over: fresh chunks of at most `size` bytes, each owning its memory. */
const chunked = (body, size) => Array.from({ length: Math.ceil(body.length / size) }, (_, k) => Buffer.from(body.subarray(k * size, (k + 1) * size)))

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1]
const round1 = (n) => Number(n.toFixed(1))

for (const bytes of sizes) {
  const bodies = Array.from({ length: 32 }, (_, step) => Buffer.from(agentBody({ bytes, step, shape })))
  const calls = Math.max(300, Math.round(4e7 / bytes))
  const steps = {
    // Chunks made before the clock starts, a fresh set a call: the parser's copies are not the read's.
    read: { chunks: (raw) => chunked(raw, 65_536), run: (b, raw, chunks) => b.readRawBody(payload(chunks, raw.length), 1 << 30) },
    scan: { chunks: () => null, run: (b, raw) => b.scanJson(raw, b.words) },
  }
  for (const [name, step] of Object.entries(steps)) {
    const times = builds.map(() => [])
    const copied = builds.map(() => 0)
    for (const [i, b] of builds.entries()) {
      for (let c = 0; c < 200; c++) await step.run(b, bodies[c & 31], step.chunks(bodies[c & 31]))
      // Bytes copied into a fresh buffer: none when the body read shares the memory of a chunk it came in.
      if (name !== 'scan') {
        const chunks = step.chunks(bodies[0])
        const read = await step.run(b, bodies[0], chunks)
        copied[i] = chunks.some((chunk) => chunk.buffer === read.buffer) ? 0 : read.length
      }
    }
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0]
      for (const i of order) {
        const inputs = Array.from({ length: calls }, (_, c) => step.chunks(bodies[c & 31]))
        const start = process.cpuUsage()
        for (let c = 0; c < calls; c++) await step.run(builds[i], bodies[c & 31], inputs[c])
        const used = process.cpuUsage(start)
        times[i].push((used.user + used.system) / calls)
      }
    }
    const sides = builds.map((b, i) => ({ build: b.root, us: round1(median(times[i])), range: [round1(Math.min(...times[i])), round1(Math.max(...times[i]))], copiedBytes: name === 'scan' ? null : copied[i] }))
    console.log(JSON.stringify({ bytes: bodies[0].length, step: name, sides, ratio: Number((median(times[0]) / median(times[1])).toFixed(3)) }))
  }
}
