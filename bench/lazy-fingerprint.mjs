// CPU cost of the loop fingerprint on a lazily read agent body (bench/agent-body.mjs), against the same body
// parsed whole, for this build and optionally another one in the same process: rounds alternate between the builds,
// so the machine's load moves both alike. Also counts what load does not move: JSON.parse calls and characters.
// `npm run build && node bench/lazy-fingerprint.mjs [--bytes=32768] [--seconds=4] [--other=OLD/dist]`
// prints one JSON line per build: microseconds per fingerprint (median of rounds, min–max) on the lazy and the
// parsed body, and JSON.parse calls and characters per fingerprint of the lazy body.
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { agentBody } from './agent-body.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const bytes = Number(arg('bytes', '32768'))
const seconds = Number(arg('seconds', '4'))
const dists = [resolve('dist'), ...(arg('other', null) === null ? [] : [resolve(arg('other'))])]
const POOL = 256

const raw = Buffer.from(agentBody({ bytes }))
const builds = []
for (const dist of dists) {
  const url = (path) => pathToFileURL(`${dist}/${path}`).href
  const { readLazyBody, readParsedBody } = await import(url('proxy/request-body.js'))
  const { messagesShape } = await import(url('loop/shapes/messages.js'))
  // Every fingerprint is of a body read afresh (nothing of an earlier one is cached); a body its scan reads in
  // several slices (128 KiB) comes as a promise: the bodies are made before timing.
  const pool = (read) => () => Promise.all(Array.from({ length: POOL }, () => read(raw, messagesShape)))
  builds.push({ dist, lazy: pool(readLazyBody), parsed: pool(readParsedBody), rounds: { lazy: [], parsed: [] } })
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

for (const build of builds) for (const kind of ['lazy', 'parsed']) for (let i = 0; i < 4; i++) for (const body of await build[kind]()) body.fingerprint()
const end = performance.now() + seconds * 1000
while (performance.now() < end) {
  for (const build of builds) {
    for (const kind of ['lazy', 'parsed']) {
      const bodies = await build[kind]()
      const start = performance.now()
      for (const body of bodies) body.fingerprint()
      build.rounds[kind].push(((performance.now() - start) * 1000) / bodies.length)
    }
  }
}
for (const { dist, rounds, parses } of builds) {
  const stats = (values) => {
    values.sort((a, b) => a - b)
    return `${round(values[values.length >> 1])} (${round(values[0])}–${round(values[values.length - 1])})`
  }
  process.stdout.write(`${JSON.stringify({ build: dist, body_bytes: raw.length, rounds: rounds.lazy.length, lazy_us: stats(rounds.lazy), parsed_us: stats(rounds.parsed), lazy_parse_calls: parses.calls, lazy_parse_chars: parses.chars })}\n`)
}

function round(value) {
  return Math.round(value * 10) / 10
}
