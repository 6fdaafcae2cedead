// Redis's time per request (a reserve and its settle) of each build's store, and of the floor's two scripts, timed
// against one plain redis-server (no valgrind): what `INFO commandstats` counts inside EVALSHA (usec) and the
// server's whole CPU time (reading the query and writing the reply too, /proc schedstat), each per request; and this
// process's CPU time a request while a side runs (its store's calls, ioredis, the socket: the proxy's side of it).
//   node bench/redis-time.mjs [--dist=OLD/dist --dist=dist …] [--floor] [--shape=bench|plain]
//                             [--requests=20000] [--rounds=4] [--inflight=32] [--callgrind [--whole] [--keep]]
//                             [--shape=guard (a loop check with the key's guard on, every request a new step of one of
//                             50 conversations, as an agent's)]
// Each round runs every side once, in turn (floor last), `--requests` requests each with `--inflight` in flight on
// one connection, through that build's own createBudgetStore (exactly the calls the proxy makes), on a key with a
// daily limit: shape bench with a loop check and the guard off (loop_limit 0), as the bench's requests; plain
// without. Prints each side's median (min–max) over the rounds, and its EVALSHA calls a request (below 2 where a
// build sends a key's settles, or its reserves, of one event-loop turn as one call, lua/settle-batch.lua and
// lua/reserve-batch.lua: with --inflight above 1). Bounded: at most 10 minutes, then it exits.
// --layout=hash keeps a build that has both Redis layouts of a key's current periods (lua/reserve.lua) on the hash
// layout; by default its key is on the string layout, as on a fresh store (an older build has only hashes). The
// store's marker (lp:layout) is as on such a store: '1' for the string layout, none (an upgraded store) for the hash.
// (Prototypes measured here before the string layout shipped: the five current periods in one hash per key bought
// nothing, 293.2k against 286.8k instructions a whole request — each hash field costs about a call.)
// --callgrind runs redis-server under `valgrind --tool=callgrind --toggle-collect=evalShaCommand` instead and counts instructions per request inside
// EVALSHA (a count load does not move; use fewer requests, e.g. --requests=1000 --rounds=1); --keep keeps its dumps
// (cg.<pid>.<n>, one a side and round, in order) for callgrind_annotate; --whole counts reading the queries and writing
// the replies too (readQueryFromClient, handleClientsWithPendingWritesUsingThreads), not only EVALSHA: with
// --inflight above 1 a read or write serves several commands, as under load.
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Redis } from 'ioredis'
import { ROOT, cpuSeconds, freePort, sleep, startRedis } from './procs.mjs'

const args = (name) => process.argv.filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3))
const dists = args('dist').map((d) => resolve(d))
if (dists.length === 0) dists.push(join(ROOT, 'dist'))
const withFloor = process.argv.includes('--floor')
const callgrind = process.argv.includes('--callgrind')
const whole = process.argv.includes('--whole')
const shape = args('shape')[0] ?? 'bench'
const requests = Number(args('requests')[0] ?? '20000')
const rounds = Number(args('rounds')[0] ?? '4')
const inflight = Number(args('inflight')[0] ?? '32')
const layout = args('layout')[0] ?? 'string'
if (!['string', 'hash'].includes(layout)) throw new Error('--layout is string or hash')
if (!['bench', 'plain', 'guard'].includes(shape)) throw new Error('--shape is bench, plain or guard')
const watchdog = setTimeout(() => process.exit(1), 10 * 60_000)

const dir = mkdtempSync(join(tmpdir(), 'redis-time-'))
const server = callgrind ? await startCallgrindRedis(dir) : await startRedis({ pin: false, dir })
const clients = []
try {
  const sides = []
  for (const dist of dists) sides.push(await storeSide(dist, server.url))
  if (withFloor) sides.push(await floorSide(server.url))
  const admin = new Redis(server.url)
  clients.push(admin)
  if (layout === 'string') await admin.set('lp:layout', '1')
  else await admin.del('lp:layout')
  const results = sides.map(() => ({ usec: [], cpu: [], client: [], instructions: [], calls: [] }))
  let dumps = 0
  for (let round = 0; round < rounds; round++) {
    for (const [i, side] of sides.entries()) {
      await side.run(Math.min(200, requests)) // warm: scripts loaded, code hot
      if (callgrind) execFileSync('callgrind_control', ['--zero', String(server.pid)], { stdio: 'ignore' })
      const before = await evalsha(admin)
      const cpuBefore = cpuSeconds(server.pid)
      const clientBefore = process.cpuUsage()
      await side.run(requests)
      const client = process.cpuUsage(clientBefore)
      const cpuAfter = cpuSeconds(server.pid)
      const after = await evalsha(admin)
      if (callgrind) {
        execFileSync('callgrind_control', ['--dump', String(server.pid)], { stdio: 'ignore' })
        dumps++
        results[i].instructions.push(callgrindTotal(dir, server.pid, dumps) / requests)
      }
      results[i].usec.push((after.usec - before.usec) / requests)
      results[i].cpu.push(((cpuAfter - cpuBefore) * 1e6) / requests)
      results[i].client.push((client.user + client.system) / requests)
      // A reserve and a settle each, or fewer (a build that sends a key's reserves, or settles, of one turn as one call:
      // at most 64 each).
      const calls = after.calls - before.calls
      if (calls < requests / 32 || calls > 2 * requests) throw new Error(`${side.name}: ${calls} EVALSHA for ${requests} requests`)
      results[i].calls.push(calls / requests)
    }
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]
  const show = (xs, scale = 1, digits = 1) => `${(med(xs) / scale).toFixed(digits)} (${(Math.min(...xs) / scale).toFixed(digits)}–${(Math.max(...xs) / scale).toFixed(digits)})`
  if (callgrind) {
    const where = whole ? 'reading queries, running them and writing replies' : 'inside EVALSHA'
    process.stdout.write(`instructions per request ${where} (reserve + settle), shape ${shape}, ${requests} requests × ${rounds} rounds\n`)
    process.stdout.write(`${'side'.padEnd(48)}${'instructions'.padStart(26)}${'EVALSHA a request'.padStart(22)}\n`)
    for (const [i, side] of sides.entries()) process.stdout.write(`${side.name.padEnd(48)}${`${show(results[i].instructions, 1000)}k`.padStart(26)}${show(results[i].calls, 1, 2).padStart(22)}\n`)
  } else {
    process.stdout.write(`Redis µs per request (reserve + settle), shape ${shape}, ${requests} requests × ${rounds} rounds, ${inflight} in flight\n`)
    process.stdout.write(`${'side'.padEnd(48)}${'EVALSHA usec'.padStart(22)}${'server CPU µs'.padStart(22)}${'client CPU µs'.padStart(22)}${'EVALSHA a request'.padStart(22)}\n`)
    for (const [i, side] of sides.entries()) process.stdout.write(`${side.name.padEnd(48)}${show(results[i].usec).padStart(22)}${show(results[i].cpu).padStart(22)}${show(results[i].client).padStart(22)}${show(results[i].calls, 1, 2).padStart(22)}\n`)
  }
} finally {
  for (const c of clients) c.disconnect()
  await server.stop()
  if (process.argv.includes('--keep')) process.stdout.write(`kept ${dir}\n`)
  else rmSync(dir, { recursive: true, force: true })
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
  const { LAYOUT_FIELD: layoutField } = await import(join(dist, 'budget/redis/redis-keys.js'))
  if (layoutField !== undefined) {
    if (layout === 'string') await redis.hset(`lp:{${record.hash}}:key`, layoutField, '1')
    else await redis.hdel(`lp:{${record.hash}}:key`, layoutField)
  }
  const hex = (s) => createHash('sha256').update(s).digest('hex').slice(0, 16)
  const loop = shape === 'bench' ? { scope: `c:${hex('conv')}`, step: hex('step') } : null
  const loopOf = shape === 'guard' ? (i) => ({ scope: `c:${hex(`conv${i % 50}`)}`, step: hex(`step${i}`) }) : () => loop
  let id = 0
  return {
    name: dist,
    run: (n) => closedLoop(n, async () => {
      const i = id++
      const r = await store.reserve({ keyHash: record.hash, provider: 'openai', requestId: `t${i}`, minMicros: 1_000, maxMicros: 2_000_000, session: null, loop: loopOf(i) })
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

/** redis-server under callgrind, counting inside evalShaCommand only, on a free port; stop() ends it. */
async function startCallgrindRedis(outDir) {
  const port = await freePort()
  const collect = whole ? ['--toggle-collect=readQueryFromClient', '--toggle-collect=handleClientsWithPendingWritesUsingThreads'] : ['--toggle-collect=evalShaCommand']
  const child = spawn('valgrind', ['--tool=callgrind', ...collect, `--callgrind-out-file=${outDir}/cg.%p`,
    'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--activerehashing', 'no'],
  { stdio: 'ignore' })
  const stop = () => new Promise((done) => {
    if (child.exitCode !== null) return done()
    child.once('exit', done)
    child.kill('SIGTERM')
  })
  for (let i = 0; i < 120; i++) {
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    const up = await probe.connect().then(() => probe.ping()).then(() => true, () => false)
    probe.disconnect()
    if (up) return { url: `redis://127.0.0.1:${port}`, pid: child.pid, stop }
    await sleep(500)
  }
  await stop()
  throw new Error('redis-server under valgrind did not start')
}

/** The instructions counted in dump `n` of callgrind's run of `pid`. */
function callgrindTotal(outDir, pid, n) {
  const name = readdirSync(outDir).find((f) => f === `cg.${pid}.${n}`)
  if (name === undefined) throw new Error(`no callgrind dump ${n}`)
  return Number(/\n(?:totals|summary): (\d+)/.exec(readFileSync(join(outDir, name), 'utf8'))[1])
}
