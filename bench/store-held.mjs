// The V8 heap a build's Redis store keeps alive while its calls wait for Redis, and what of it V8 allocates straight
// into old space: exact counts, which load does not move. Each build's own createBudgetStore (the calls the proxy makes:
// a key with a loop check, guard off, as the bench's requests) on one plain redis-server; `--keys` keys, each warmed.
//   held: with the connection's replies paused, one reserve (then one settle) on each key is issued, sent at once as
//   a lone call of its key is; a full collection before and after gives the bytes a call in flight keeps alive (its
//   command, promise, arguments, the client's queue entry). Then a turn of `--batch` on each key (one sent at once,
//   the others queued, then sent as one batch at the turn's end): bytes a call of the turn.
//   old issued / sent / answered: bytes a call put into old space as the calls were issued, as the turn's end sent
//   them, and as their replies were read, no collection running (checked): V8's allocation-site pretenuring (a site
//   whose objects it saw survive gets every later object there allocated old), so each such byte outlives the young
//   generation however short its life. The first build measured in a process carries ~20 B a call of the process's own.
//   allocated: bytes allocated a request (reserve then settle) in a closed loop of `--inflight` (GC profiler sums).
// With the launcher's heap flags, 64 in flight and `--garbage` (bytes a request allocates besides the store, as the
// proxy's rest does, so collections come as often a request as in the proxy) it finds the pretenuring the proxy sees:
//   node --max-semi-space-size=16 --min-semi-space-size=4 --no-memory-reducer --initial-old-space-size=64 --no-maglev \
//     bench/store-held.mjs --dist=OLD/dist --dist=dist --inflight=64 --garbage=24000   (then the other order)
//   [--keys=500] [--batch=4] [--requests=20000] [--flags=… (V8 flags, e.g. --no-allocation-site-pretenuring)]
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Redis } from 'ioredis'
import { ROOT, startRedis } from './procs.mjs'

const args = (name) => process.argv.filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3))
const dists = args('dist').map((d) => resolve(d))
if (dists.length === 0) dists.push(join(ROOT, 'dist'))
const keyCount = Number(args('keys')[0] ?? '500')
const batch = Number(args('batch')[0] ?? '4')
const requests = Number(args('requests')[0] ?? '20000')
const inflight = Number(args('inflight')[0] ?? '4')
const garbage = Number(args('garbage')[0] ?? '0')
let waste = null
v8.setFlagsFromString('--expose-gc')
for (const flag of args('flags')) v8.setFlagsFromString(flag)
const gc = runInNewContext('gc')
const watchdog = setTimeout(() => process.exit(1), 10 * 60_000)

const dir = mkdtempSync(join(tmpdir(), 'store-held-'))
const server = await startRedis({ pin: false, dir })
const clients = []
const hex = (s) => createHash('sha256').update(s).digest('hex').slice(0, 16)
const loop = { scope: `c:${hex('conv')}`, step: hex('step') }
let ids = 0

try {
  const rows = []
  for (const dist of dists) rows.push([dist, await measure(dist)])
  const cols = ['reserve', 'settle', `reserve turn`, 'settle turn'].flatMap((c) => [`${c} held`, 'old issued', 'old sent', 'old answered']).concat('allocated')
  process.stdout.write(`bytes a call (a turn: a call of it) on ${keyCount} keys; allocated: a request (reserve + settle), ${inflight} in flight\n`)
  process.stdout.write(`${'build'.padEnd(40)}${cols.map((c) => c.padStart(18)).join('')}\n`)
  for (const [dist, r] of rows) process.stdout.write(`${dist.slice(-40).padEnd(40)}${r.map((v) => v.toFixed(1).padStart(18)).join('')}\n`)
} finally {
  for (const c of clients) c.disconnect()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
  clearTimeout(watchdog)
}

/** A build's figures: held and old bytes a call (reserve, settle, a turn's call), allocated bytes a request. */
async function measure(dist) {
  const { createBudgetStore } = await import(join(dist, 'budget/redis/store.js'))
  const { createKeyAdmin } = await import(join(dist, 'budget/redis/admin.js'))
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0 })
  clients.push(redis)
  await redis.set('lp:layout', '1')
  const store = createBudgetStore(redis)
  const admin = createKeyAdmin(redis)
  const hashes = []
  for (let i = 0; i < keyCount; i++) {
    const { record } = await admin.createKey(`store-held ${dist} ${i}`, ['openai'])
    await admin.setBudget(record.hash, { limits: { daily: 1e15 }, loopLimit: 0 })
    hashes.push(record.hash)
  }
  const input = (hash) => ({ keyHash: hash, provider: 'openai', requestId: `h${ids++}`, minMicros: 1_000, maxMicros: 2_000_000, session: null, loop })
  const one = async (hash) => {
    // The rest of a proxied request's garbage, so collections come as often a request as in the proxy.
    if (garbage > 0) waste = new Array(garbage >> 3).fill(ids)
    const r = await store.reserve(input(hash))
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    await store.settle(r.reservation, 600_000)
  }
  // Warm: code optimized, every key's keys of the minute built, both paths taken.
  for (let round = 0; round < 6; round++) {
    await Promise.all(hashes.map(one))
    await Promise.all(hashes.flatMap((h) => Array.from({ length: batch }, () => one(h))))
  }
  await closedLoop(requests, () => one(hashes[ids % hashes.length]))
  const stream = redis.stream
  /** Heap bytes alive, and bytes in old space, after a full collection. */
  const heap = () => {
    gc()
    gc()
    const old = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size
    return { used: v8.getHeapStatistics().used_heap_size, old }
  }
  const oldSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size
  /**
   * Issues `issue()`'s calls (n of them) with replies held back, then lets the turn end (queued calls are sent); returns
   * the bytes a call kept alive, those put into old space as they were issued and as the turn's end sent them, and the
   * calls' results.
   */
  const held = async (n, issue) => {
    const slots = new Array(n).fill(null)
    stream.pause()
    const before = heap()
    const collections = new v8.GCProfiler()
    collections.start()
    issue(slots)
    const issued = oldSpace()
    // A scavenge while issuing would count its promotions as old bytes issued.
    if (collections.stop().statistics.length > 0) throw new Error('a collection ran while the calls were issued: use fewer --keys')
    await new Promise((done) => setImmediate(done))
    const sent = oldSpace()
    const after = heap()
    const answering = new v8.GCProfiler()
    answering.start()
    stream.resume()
    const results = await Promise.all(slots)
    const answered = oldSpace()
    if (answering.stop().statistics.length > 0) throw new Error('a collection ran while the calls were answered: use fewer --keys')
    return { held: (after.used - before.used) / n, oldIssued: (issued - before.old) / n, oldSent: (sent - issued) / n, oldAnswered: (answered - after.old) / n, results }
  }
  const names = ['reserve', 'settle', 'reserve turn', 'settle turn']
  const out = names.map(() => ({ held: [], oldIssued: [], oldSent: [], oldAnswered: [] }))
  const push = (i, r) => {
    out[i].held.push(r.held)
    out[i].oldIssued.push(r.oldIssued)
    out[i].oldSent.push(r.oldSent)
    out[i].oldAnswered.push(r.oldAnswered)
  }
  for (let round = 0; round < 3; round++) {
    const inputs = hashes.map(input)
    const r = await held(keyCount, (slots) => { for (let i = 0; i < keyCount; i++) slots[i] = store.reserve(inputs[i]) })
    push(0, r)
    const reservations = r.results.map((x) => x.reservation)
    push(1, await held(keyCount, (slots) => { for (let i = 0; i < keyCount; i++) slots[i] = store.settle(reservations[i], 600_000) }))
    const turnInputs = hashes.flatMap((h) => Array.from({ length: batch }, () => input(h)))
    const t = await held(turnInputs.length, (slots) => { for (let i = 0; i < turnInputs.length; i++) slots[i] = store.reserve(turnInputs[i]) })
    push(2, t)
    const turnReservations = t.results.map((x) => x.reservation)
    push(3, await held(turnReservations.length, (slots) => { for (let i = 0; i < turnReservations.length; i++) slots[i] = store.settle(turnReservations[i], 600_000) }))
  }
  const allocated = await allocatedPerRequest(requests, () => one(hashes[ids % hashes.length]))
  const med = (xs) => [...xs].sort((a, b) => a - b)[1]
  return [...out.flatMap((o) => [med(o.held), med(o.oldIssued), med(o.oldSent), med(o.oldAnswered)]), allocated]
}

/** Bytes allocated a request over `n` of them: the heap's growth between collections, summed (bench/alloc-probe.mjs). */
async function allocatedPerRequest(n, one) {
  gc()
  let lastAfter = v8.getHeapStatistics().used_heap_size
  let allocated = 0
  const profiler = new v8.GCProfiler()
  profiler.start()
  await closedLoop(n, one)
  const data = profiler.stop()
  for (const s of data.statistics) {
    allocated += s.beforeGC.heapStatistics.usedHeapSize - lastAfter
    lastAfter = s.afterGC.heapStatistics.usedHeapSize
  }
  return (allocated + v8.getHeapStatistics().used_heap_size - lastAfter) / n
}

/** Runs `n` requests, `inflight` at a time. */
async function closedLoop(n, one) {
  let next = 0
  const worker = async () => {
    while (next++ < n) await one()
  }
  await Promise.all(Array.from({ length: Math.min(inflight, n) }, worker))
}
