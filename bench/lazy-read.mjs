// CPU cost of reading an agent's request body (bench/agent-body.mjs) on the event loop, whole (JSON.parse, then the
// key scan: readParsedBody) and lazily (the validating scan, then members parsed on read: readLazyBody), in one process,
// rounds alternating. Per size: the validator against JSON.parse plus the key scan, then what the pipeline does with
// an OpenAI chat body before forwarding it (describe, hosted tools, the media walk, the bound, the fingerprint, the cap).
// `npm run build && node bench/lazy-read.mjs [--rounds=6] [--sizes=8192,16384,32768,131072] [--cap=100000 (output cap; below the
// body's 4096 it edits the body)]`;
// prints one JSON line per size: microseconds (median of rounds, user + system CPU) and lazy ÷ whole.
import { agentBody } from './agent-body.mjs'
import { createWordSet, scanKeys } from '../dist/http/json-keys.js'
import { scanJson } from '../dist/http/json-scan.js'
import { createOpenAiAdapter } from '../dist/providers/openai.js'
import { readLazyBody, readParsedBody } from '../dist/proxy/request-body.js'
import { SCAN_WORDS } from '../dist/tokens/bound.js'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const rounds = Number(arg('rounds', '6'))
const cap = Number(arg('cap', '100000'))
const words = createWordSet(SCAN_WORDS)
const adapter = createOpenAiAdapter({ baseUrl: 'http://127.0.0.1:1', apiKey: null })
const route = adapter.findRoute('POST', '/v1/chat/completions', new URLSearchParams())
const shape = adapter.loopShape(route)
const settle = async (value) => (value instanceof Promise ? await value : value)

async function request(read, raw) {
  const body = await settle(read(raw, shape))
  const facts = adapter.describe(route, body.json)
  adapter.referencedInput(route, body.json, {})
  const scan = await settle(body.scan())
  adapter.boundInputTokens(route, body.json, raw, 258, scan)
  body.fingerprint()
  return adapter.prepareBody(route, body.editable(), facts, cap) ? body.edited() : raw
}

async function cpuPerCall(run, bodies, calls) {
  for (let i = 0; i < 200; i++) await run(bodies[i % bodies.length])
  const start = process.cpuUsage()
  for (let i = 0; i < calls; i++) await run(bodies[i % bodies.length])
  const used = process.cpuUsage(start)
  return (used.user + used.system) / calls
}

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1]
const round1 = (n) => Number(n.toFixed(1))
const sizes = arg('sizes', '8192,16384,32768,131072').split(',').map(Number)

for (const bytes of sizes) {
  const bodies = Array.from({ length: 32 }, (_, step) => Buffer.from(agentBody({ bytes, step })))
  const calls = Math.max(200, Math.round(2e7 / bytes))
  const sides = {
    parseAndKeys: (raw) => {
      JSON.parse(raw.toString('utf8'))
      return scanKeys(raw, words)
    },
    validate: (raw) => scanJson(raw, words),
    whole: (raw) => request(readParsedBody, raw),
    lazy: (raw) => request(readLazyBody, raw),
  }
  const times = Object.fromEntries(Object.keys(sides).map((name) => [name, []]))
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? Object.keys(sides) : Object.keys(sides).reverse()
    for (const name of order) times[name].push(await cpuPerCall(sides[name], bodies, calls))
  }
  const us = Object.fromEntries(Object.entries(times).map(([name, list]) => [name, round1(median(list))]))
  console.log(JSON.stringify({ bytes: bodies[0].length, us, validateVsParse: Number((us.validate / us.parseAndKeys).toFixed(3)), lazyVsWhole: Number((us.lazy / us.whole).toFixed(3)) }))
}
