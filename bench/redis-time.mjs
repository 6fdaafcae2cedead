// Redis's time per request (a reserve and its settle) of each build's store, and of the floor's two scripts, timed
// against one plain redis-server (no valgrind): what `INFO commandstats` counts inside EVALSHA (usec) and the
// server's whole CPU time (reading the query and writing the reply too, /proc schedstat), each per request.
//   node bench/redis-time.mjs [--dist=OLD/dist --dist=dist …] [--floor] [--shape=bench|plain] [--requests=20000]
//                             [--rounds=4] [--inflight=32]
// Each round runs every side once, in turn (floor last), `--requests` requests each with `--inflight` in flight on
// one connection, through that build's own createBudgetStore (exactly the calls the proxy makes), on a key with a
// daily limit: shape bench with a loop check and the guard off (loop_limit 0), as the bench's requests; plain
// without. Prints each side's median (min–max) over the rounds. Bounded: at most 10 minutes, then it exits.
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Redis } from 'ioredis'
import { ROOT, cpuSeconds, startRedis } from './procs.mjs'

const args = (name) => process.argv.filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3))
const dists = args('dist').map((d) => resolve(d))
if (dists.length === 0) dists.push(join(ROOT, 'dist'))
const withFloor = process.argv.includes('--floor')
const shape = args('shape')[0] ?? 'bench'
const requests = Number(args('requests')[0] ?? '20000')
const rounds = Number(args('rounds')[0] ?? '4')
const inflight = Number(args('inflight')[0] ?? '32')
if (!['bench', 'plain'].includes(shape)) throw new Error('--shape is bench or plain')
const watchdog = setTimeout(() => process.exit(1), 10 * 60_000)

const dir = mkdtempSync(join(tmpdir(), 'redis-time-'))
const server = await startRedis({ pin: false, dir })
const clients = []
try {
  const sides = []
  for (const dist of dists) sides.push(await storeSide(dist, server.url))
  if (withFloor) sides.push(await floorSide(server.url))
  const admin = new Redis(server.url)
  clients.push(admin)
  const results = sides.map(() => ({ usec: [], cpu: [] }))
  for (let round = 0; round < rounds; round++) {
    for (const [i, side] of sides.entries()) {
      await side.run(Math.min(200, requests)) // warm: scripts loaded, code hot
      const before = await evalsha(admin)
      const cpuBefore = cpuSeconds(server.pid)
      await side.run(requests)
      const cpuAfter = cpuSeconds(server.pid)
      const after = await evalsha(admin)
      results[i].usec.push((after.usec - before.usec) / requests)
      results[i].cpu.push(((cpuAfter - cpuBefore) * 1e6) / requests)
      if (after.calls - before.calls !== 2 * requests) throw new Error(`${side.name}: ${after.calls - before.calls} EVALSHA for ${requests} requests`)
    }
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]
  const show = (xs) => `${med(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`
  process.stdout.write(`Redis µs per request (reserve + settle), shape ${shape}, ${requests} requests × ${rounds} rounds, ${inflight} in flight\n`)
  process.stdout.write(`${'side'.padEnd(48)}${'EVALSHA usec'.padStart(22)}${'server CPU µs'.padStart(22)}\n`)
  for (const [i, side] of sides.entries()) process.stdout.write(`${side.name.padEnd(48)}${show(results[i].usec).padStart(22)}${show(results[i].cpu).padStart(22)}\n`)
} finally {
  for (const c of clients) c.disconnect()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
  clearTimeout(watchdog)
}

/** EVALSHA's calls and usec so far, from INFO commandstats. */
async function evalsha(redis) {
  const info = await redis.info('commandstats')
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(info)
  return m ? { calls: Number(m[1]), usec: Number(m[2]) } : { calls: 0, usec: 0 }
}

/** Runs `n` requests, `inflight` at a time, each `one(i)`. */
async function closedLoop(n, one) {
  let next = 0
  const worker = async () => {
    while (next < n) await one(next++)
  }
  await Promise.all(Array.from({ length: Math.min(inflight, n) }, worker))
}

/** A build's store: reserve then settle, each request on the key `dist` made for itself. */
async function storeSide(dist, url) {
  const { createBudgetStore } = await import(join(dist, 'budget/redis/store.js'))
  const { createKeyAdmin } = await import(join(dist, 'budget/redis/admin.js'))
  const redis = new Redis(url, { maxRetriesPerRequest: 0 })
  clients.push(redis)
  const store = createBudgetStore(redis)
  const admin = createKeyAdmin(redis)
  const { record } = await admin.createKey(`redis-time ${dist}`, ['openai'])
  await admin.setBudget(record.hash, { limits: { daily: 1e15 }, ...(shape === 'bench' ? { loopLimit: 0 } : {}) })
  const hex = (s) => createHash('sha256').update(s).digest('hex').slice(0, 16)
  const loop = shape === 'bench' ? { scope: `c:${hex('conv')}`, step: hex('step') } : null
  let id = 0
  return {
    name: dist,
    run: (n) => closedLoop(n, async () => {
      const r = await store.reserve({ keyHash: record.hash, provider: 'openai', requestId: `t${id++}`, minMicros: 1_000, maxMicros: 2_000_000, session: null, loop })
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      await store.settle(r.reservation, 600_000)
    }),
  }
}

/** bench/floor.mjs's store: two EVALSHA of eight keys, each one HINCRBY and one EXPIRE. */
async function floorSide(url) {
  const redis = new Redis(url, { maxRetriesPerRequest: 0 })
  clients.push(redis)
  const lua = `redis.call('HINCRBY', KEYS[1], 'held', ARGV[1]) redis.call('EXPIRE', KEYS[1], 86400) return {'ok', ARGV[1]}`
  redis.defineCommand('floorReserve', { numberOfKeys: 8, lua })
  redis.defineCommand('floorSettle', { numberOfKeys: 8, lua })
  const keys = (id) => ['floor:rec', 'floor:m', 'floor:h', 'floor:d', 'floor:w', 'floor:mo', 'floor:s', `floor:r:${id}`]
  let id = 0
  return {
    name: 'floor (bench/floor.mjs --store=redis)',
    run: (n) => closedLoop(n, async () => {
      const k = keys(id++)
      await redis.floorReserve(...k, 1000)
      await redis.floorSettle(...k, -1000)
    }),
  }
}
