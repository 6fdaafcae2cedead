// CPU cost of the hosted-tools check (each adapter's referencedInput) on lazily read bodies of 16 KiB – 1 MiB, two
// builds loaded in one process, rounds alternating: an OpenAI agent request (bench/agent-body.mjs, 12 tools whose
// `type` comes first) and the same tools as Anthropic (no `type`, as a coding agent sends them), Gemini and Bedrock
// declare them. Each call reads a fresh body (a tools member once parsed would be parsed for good). With --bound, each
// call is what the pipeline reads of the tools before forwarding: the check, then the input bound (boundInputTokens).
//   `npm run build && node bench/hosted-tools.mjs --a=OLD/dist --b=dist [--rounds=8] [--bytes=32768] [--providers=openai,anthropic,gemini,bedrock] [--bound]`
// prints one JSON line per provider: microseconds per check (median of rounds, min–max) of each side, b ÷ a, and the
// heap bytes each side allocates per check (growth of the heap while it runs, collections included).
import { resolve } from 'node:path'
import v8 from 'node:v8'
import { agentBody } from './agent-body.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const rounds = Number(arg('rounds', '8'))
const bytes = Number(arg('bytes', '32768'))
const dists = { a: resolve(arg('a', 'dist')), b: resolve(arg('b', 'dist')) }

async function load(dist) {
  const { readLazyBody } = await import(`${dist}/proxy/request-body.js`)
  const { createOpenAiAdapter } = await import(`${dist}/providers/openai.js`)
  const { createAnthropicAdapter } = await import(`${dist}/providers/anthropic.js`)
  const { createGeminiAdapter } = await import(`${dist}/providers/gemini.js`)
  const { createBedrockAdapter } = await import(`${dist}/providers/bedrock.js`)
  const options = { baseUrl: 'http://127.0.0.1:1', apiKey: 'k' }
  const adapters = {
    openai: [createOpenAiAdapter(options), 'POST', '/v1/chat/completions'],
    anthropic: [createAnthropicAdapter(options), 'POST', '/v1/messages'],
    gemini: [createGeminiAdapter(options), 'POST', '/v1beta/models/gemini-2.5-pro:generateContent'],
    bedrock: [createBedrockAdapter({ ...options, region: 'us-east-1', accessKeyId: 'a', secretAccessKey: 's' }), 'POST', '/model/m/converse'],
  }
  return { readLazyBody, adapters }
}

/** The agent body with its tools in `provider`'s shape. */
function bodyFor(provider, step) {
  const body = JSON.parse(agentBody({ bytes, step }))
  const fns = body.tools.map((tool) => tool.function)
  if (provider === 'anthropic') body.tools = fns.map(({ name, description, parameters }) => ({ name, description, input_schema: parameters }))
  if (provider === 'gemini') body.tools = [{ functionDeclarations: fns }]
  if (provider === 'bedrock') {
    delete body.tools
    body.toolConfig = { tools: fns.map(({ name, description, parameters }) => ({ toolSpec: { name, description, inputSchema: { json: parameters } } })) }
  }
  return Buffer.from(JSON.stringify(body))
}

const builds = { a: await load(dists.a), b: await load(dists.b) }
const median = (values) => [...values].sort((x, y) => x - y)[values.length >> 1]
const CALLS = 2000
const withBound = process.argv.includes('--bound')
const SCANNED = { mediaParts: 0, fetchesContent: false, fileData: false }

/** `run()`'s heap allocation: the heap's growth over it, adding back what each collection during it freed. */
function allocated(run) {
  const profiler = new v8.GCProfiler()
  const before = v8.getHeapStatistics().used_heap_size
  profiler.start()
  run()
  const after = v8.getHeapStatistics().used_heap_size
  let bytes = after - before
  for (const s of profiler.stop().statistics) bytes += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize
  return bytes
}

for (const provider of arg('providers', 'openai,anthropic,gemini,bedrock').split(',')) {
  const raws = Array.from({ length: 16 }, (_, step) => bodyFor(provider, step))
  const times = { a: [], b: [] }
  const heap = { a: [], b: [] }
  const run = (side) => {
    const { readLazyBody, adapters } = builds[side]
    const [adapter, method, path] = adapters[provider]
    const route = adapter.findRoute(method, path, new URLSearchParams())
    const bodies = Array.from({ length: CALLS }, (_, i) => readLazyBody(raws[i % raws.length], null).json)
    const fresh = Array.from({ length: CALLS }, (_, i) => readLazyBody(raws[i % raws.length], null).json)
    const check = (body, raw) => {
      adapter.referencedInput(route, body, {})
      if (withBound) adapter.boundInputTokens(route, body, raw, 258, SCANNED)
    }
    const start = process.hrtime.bigint()
    for (let i = 0; i < CALLS; i++) check(bodies[i], raws[i % raws.length])
    const us = Number(process.hrtime.bigint() - start) / 1000 / CALLS
    return { us, bytes: allocated(() => { for (let i = 0; i < CALLS; i++) check(fresh[i], raws[i % raws.length]) }) / CALLS }
  }
  for (let r = 0; r < rounds + 1; r++) {
    for (const side of r % 2 === 0 ? ['a', 'b'] : ['b', 'a']) {
      const { us, bytes } = run(side)
      if (r > 0) times[side].push(us)
      if (r > 0) heap[side].push(bytes)
    }
  }
  const spread = (list) => `${median(list).toFixed(2)} (${Math.min(...list).toFixed(2)}–${Math.max(...list).toFixed(2)})`
  const perCheck = (side) => Math.round(median(heap[side]))
  console.log(JSON.stringify({ provider, bound: withBound, bytes: raws[0].length, a: spread(times.a), b: spread(times.b), bOverA: Number((median(times.b) / median(times.a)).toFixed(3)), heapBytes: { a: perCheck('a'), b: perCheck('b') } }))
}
