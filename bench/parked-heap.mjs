// What one request holds while its upstream call waits: the proxy (and the floor beside it) serve a warm-up, then
// `--parked` non-streamed requests are held at a parking upstream (it answers none until told) and a heap snapshot
// is taken with them parked, another once they are answered and the process is idle. Object ids are stable across
// one process's snapshots, so the objects new in the parked snapshot and gone from the idle one are what the parked
// requests hold; prints their bytes a parked request by class, and by retainer (the class and edge of each object's
// first retainer). A snapshot collects fully first: these are reachable objects, not garbage. Compiled code and
// native nodes (whose ids a snapshot does not keep) are listed but left out of the second total. `--at=reserve` parks
// them at the budget store's round trip instead (Redis paused for writes, CLIENT PAUSE … WRITE: the reserve script and
// the floor's script wait; the proxy's store timeout raised to 60 s), where a request holds what admission reads.
//   node bench/parked-heap.mjs [--cli=dist/cli.js] [--parked=200] [--warm=3000] [--top=30] [--floor=1] [--at=upstream|reserve]
import http from 'node:http'
import net from 'node:net'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { closedLoop, createPool } from './load.mjs'
import { createBenchKey, ROOT, sleep, startBenchStack, startFloor, startProxy } from './procs.mjs'
import { requestPair } from './scenarios.mjs'
import { ONE_LINE_BODY } from './body-option.mjs'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const cliPath = resolve(arg('cli', join(ROOT, 'dist/cli.js')))
const parkedCount = Number(arg('parked', '200'))
const warm = Number(arg('warm', '3000'))
const top = Number(arg('top', '30'))
const withFloor = arg('floor', '1') !== '0'
const at = arg('at', 'upstream')
if (at !== 'upstream' && at !== 'reserve') throw new Error('--at=upstream or --at=reserve')

/** Sends one inline command to the Redis at `url` and resolves with its first reply line. */
function redisCommand(url, command) {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(`${command}\r\n`))
    socket.once('data', (data) => {
      socket.end()
      resolve(data.toString().trim())
    })
    socket.once('error', reject)
  })
}

const ANSWER = JSON.stringify({
  id: 'chatcmpl-parked',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'parked answer' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
})

/** Per-request kinds counted in the idle snapshot: more than a few means something keeps requests past their answer. */
const LINGERING = ['object:ParsedBody', 'object:Generator', 'object:QueuedReserve', 'object:ReserveCall', 'object:ServerResponse', 'object:IncomingMessage', 'object:UpstreamCall']

/** An upstream that answers at once, or, while parking, holds every request until `release`. */
function startParking() {
  let parking = false
  const held = []
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (parking) held.push(res)
      else answer(res)
    })
  })
  server.keepAliveTimeout = 120_000
  const answer = (res) => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ANSWER) }).end(ANSWER)
  return new Promise((done) =>
    server.listen(0, '127.0.0.1', () =>
      done({
        url: `http://127.0.0.1:${server.address().port}`,
        park: () => (parking = true),
        held: () => held.length,
        release: () => {
          parking = false
          for (const res of held.splice(0)) answer(res)
        },
        close: () => new Promise((r) => server.close(r)),
      }),
    ),
  )
}

/** Takes a snapshot of `pid` (started with --heapsnapshot-signal=SIGUSR2 and --diagnostic-dir=`dir`) and parses it. */
async function snapshot(pid, dir) {
  const before = new Set(readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')))
  process.kill(pid, 'SIGUSR2')
  const deadline = Date.now() + 120_000
  for (;;) {
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f))
    if (file !== undefined) {
      // Written in one go; wait until it parses.
      try {
        const parsed = JSON.parse(readFileSync(join(dir, file), 'utf8'))
        rmSync(join(dir, file))
        return parsed
      } catch {}
    }
    if (Date.now() > deadline) throw new Error('no heap snapshot')
    await sleep(250)
  }
}

/** Nodes of a snapshot: id → { cls, size, index }, with each node's first retainer (class.edge). */
function readNodes(snap) {
  const meta = snap.snapshot.meta
  const nf = meta.node_fields
  const ef = meta.edge_fields
  const types = meta.node_types[0]
  const edgeTypes = meta.edge_types[0]
  const N = nf.length
  const E = ef.length
  const [iType, iName, iId, iSize, iEdges] = ['type', 'name', 'id', 'self_size', 'edge_count'].map((f) => nf.indexOf(f))
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => ef.indexOf(f))
  const { nodes, edges, strings } = snap
  const count = nodes.length / N
  const cls = (i) => {
    const type = types[nodes[i * N + iType]]
    const name = strings[nodes[i * N + iName]]
    return type === 'object' || type === 'closure' ? `${type}:${name}` : type === 'string' || type === 'concatenated string' || type === 'sliced string' ? type : `${type}:${name.slice(0, 40)}`
  }
  const generatorOf = new Map()
  const retainer = new Int32Array(count).fill(-1)
  const retEdge = new Array(count)
  let e = 0
  for (let i = 0; i < count; i++) {
    const edgeCount = nodes[i * N + iEdges]
    for (let k = 0; k < edgeCount; k++, e += E) {
      const to = edges[e + eTo] / N
      const et = edgeTypes[edges[e + eType]]
      if (et === 'weak') continue
      // A suspended async function's frame: named by its function.
      if (et === 'internal' || et === 'property') {
        if (strings[edges[e + eName]] === 'function' && strings[nodes[i * N + iName]] === 'Generator') generatorOf.set(i, strings[nodes[to * N + iName]])
      }
      if (retainer[to] === -1) {
        retainer[to] = i
        const nm = edges[e + eName]
        retEdge[to] = et === 'element' || et === 'hidden' ? `[${et}]` : String(strings[nm])
      }
    }
  }
  const byId = new Map()
  for (let i = 0; i < count; i++) {
    byId.set(nodes[i * N + iId], { i, size: nodes[i * N + iSize] })
  }
  const named = (i) => (generatorOf.has(i) ? `object:Generator ${generatorOf.get(i) || '(anonymous)'}` : cls(i))
  return { byId, cls: named, retainer, retEdge }
}

function table(title, map, n) {
  const rows = [...map.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)
  let total = 0
  let heap = 0
  for (const [k, v] of map) {
    total += v.bytes
    // Compiled code (the JIT's, not the request's) and native nodes (their ids are not kept across snapshots).
    if (!k.startsWith('code:') && !k.startsWith('native:')) heap += v.bytes
  }
  console.log(`\n${title}: ${(total / n).toFixed(0)} B a parked request, ${(heap / n).toFixed(0)} B of it neither code nor native`)
  for (const [k, v] of rows) console.log(`${(v.bytes / n).toFixed(1).padStart(8)} B ${(v.count / n).toFixed(2).padStart(6)} obj  ${k}`)
}

async function measure(label, side, pid, dir, parking, request, redisUrl) {
  const pool = createPool(side.url, 256)
  await closedLoop({ origin: side.url, request, concurrency: 32, durationMs: 30_000, maxRequests: warm, pool })
  await pool.close().catch(() => undefined)
  // The parked requests' own connections: opened and used once first, so both snapshots hold them.
  const parkedPool = createPool(side.url, parkedCount)
  await closedLoop({ origin: side.url, request, concurrency: parkedCount, durationMs: 10_000, maxRequests: parkedCount, pool: parkedPool })
  await sleep(500)
  if (at === 'upstream') parking.park()
  else {
    const answer = await redisCommand(redisUrl, 'CLIENT PAUSE 30000 WRITE')
    if (answer !== '+OK') throw new Error(`CLIENT PAUSE: ${answer}`)
  }
  const heldBefore = parking.held()
  const sending = []
  for (let k = 0; k < parkedCount; k++) {
    sending.push(
      parkedPool
        .request({ path: request.path, method: 'POST', headers: request.headers, body: request.body })
        .then((r) => r.body.text().then(() => r.statusCode)),
    )
  }
  if (at === 'upstream') {
    const until = Date.now() + 20_000
    while (parking.held() < parkedCount && Date.now() < until) await sleep(20)
    if (parking.held() < parkedCount) throw new Error(`${label}: only ${parking.held()} parked`)
    await sleep(300)
  } else {
    // No count to wait for at Redis: long enough for every request to be read and sent to the store.
    await sleep(2_000)
  }
  const parked = readNodes(await snapshot(pid, dir))
  if (at === 'upstream') parking.release()
  else {
    if (parking.held() !== heldBefore) throw new Error(`${label}: a request passed the paused store`)
    await redisCommand(redisUrl, 'CLIENT UNPAUSE')
  }
  const statuses = await Promise.all(sending)
  if (statuses.some((s) => s !== 200)) throw new Error(`${label}: statuses ${[...new Set(statuses)]}`)
  await sleep(500)
  const idle = readNodes(await snapshot(pid, dir))
  await parkedPool.close().catch(() => undefined)
  const byClass = new Map()
  const byRetainer = new Map()
  for (const [id, node] of parked.byId) {
    if (idle.byId.has(id)) continue
    const c = parked.cls(node.i)
    const add = (map, key) => {
      const v = map.get(key) ?? { bytes: 0, count: 0 }
      v.bytes += node.size
      v.count++
      map.set(key, v)
    }
    add(byClass, c)
    const r = parked.retainer[node.i]
    add(byRetainer, `${c}  ← ${r === -1 ? '(root)' : `${parked.cls(r)}.${parked.retEdge[node.i]}`}`)
  }
  // What outlives its request (held after the answer, so not in the tables): the idle snapshot's per-request kinds.
  const idleCounts = new Map()
  for (const node of idle.byId.values()) {
    const c = idle.cls(node.i)
    if (LINGERING.includes(c) || c.startsWith('object:Generator')) idleCounts.set(c, (idleCounts.get(c) ?? 0) + 1)
  }
  console.log(`\n=== ${label}: ${parkedCount} parked at the ${at === 'upstream' ? 'upstream' : "store's round trip"}, objects in the parked snapshot gone once they were answered`)
  console.log(`idle, once answered: ${[...new Set([...LINGERING, ...idleCounts.keys()])].map((c) => `${c} ${idleCounts.get(c) ?? 0}`).join(', ')}`)
  table('by class', byClass, parkedCount)
  table('by class and first retainer', byRetainer, parkedCount)
}

const { pinning, dir, started, redis, close } = await startBenchStack('loopers-parked-', { watchdogMs: 10 * 60_000 })
const parking = await startParking()
try {
  const flags = ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`]
  const request = requestPair(await createBenchKey(redis.url, 'bench-parked'), ONE_LINE_BODY).proxied
  const proxy = await startProxy({ pin: pinning.used, redisUrl: redis.url, upstreamUrl: parking.url, dir, cliPath, nodeOptions: flags, extraEnv: at === 'reserve' ? { LOOPERS_REDIS_TIMEOUT_MS: '60000' } : {} })
  started.push(proxy)
  await measure('proxy', proxy, proxy.pid, dir, parking, request, redis.url)
  await proxy.stop()
  started.splice(started.indexOf(proxy), 1)
  if (withFloor) {
    const floor = await startFloor({ pin: pinning.used, upstreamUrl: parking.url, store: 'redis', redisUrl: redis.url, nodeArgs: flags })
    started.push(floor)
    await measure('floor', floor, floor.pid, dir, parking, request, redis.url)
  }
} finally {
  await close()
  await parking.close()
}
