// CPU cost of the loop fingerprint on a lazily read agent body (bench/agent-body.mjs), against the same body
// parsed whole, for this build and optionally another one in the same process (before/after, one machine load).
// `npm run build && node bench/lazy-fingerprint.mjs [--bytes=32768] [--seconds=1] [--other=OLD/dist]`
// prints one JSON line per build: microseconds per fingerprint (median of rounds) on the lazy and the parsed body.
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { agentBody } from './agent-body.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const bytes = Number(arg('bytes', '32768'))
const seconds = Number(arg('seconds', '1'))
const other = arg('other', null) === null ? [] : [resolve(arg('other'))]
// --first=other: the other build is measured first (run both orders: the first build warms what they share).
const builds = arg('first', 'this') === 'other' ? [...other, resolve('dist')] : [resolve('dist'), ...other]
const POOL = 512

const raw = Buffer.from(agentBody({ bytes }))
for (const dist of builds) {
  const url = (path) => pathToFileURL(`${dist}/${path}`).href
  const { readLazyBody, readParsedBody } = await import(url('proxy/request-body.js'))
  const { messagesShape } = await import(url('loop/shapes/messages.js'))
  // Every call gets a body read afresh (nothing of an earlier fingerprint is cached), made before timing.
  const pool = (read) => () => Array.from({ length: POOL }, () => read(raw, messagesShape))
  const lazy = time(pool(readLazyBody), seconds)
  const parsed = time(pool(readParsedBody), seconds)
  process.stdout.write(`${JSON.stringify({ build: dist, body_bytes: raw.length, lazy_us: round(lazy), parsed_us: round(parsed) })}\n`)
}

/** Median microseconds per fingerprint over rounds of one pass through POOL new bodies (`make`), for `budget` seconds. */
function time(make, budget) {
  for (let i = 0; i < 4; i++) for (const body of make()) body.fingerprint()
  const rounds = []
  const end = performance.now() + budget * 1000
  while (performance.now() < end) {
    const bodies = make()
    const start = performance.now()
    for (const body of bodies) body.fingerprint()
    rounds.push(((performance.now() - start) * 1000) / bodies.length)
  }
  rounds.sort((a, b) => a - b)
  return rounds[rounds.length >> 1]
}

function round(value) {
  return Math.round(value * 10) / 10
}
