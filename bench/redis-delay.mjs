// EVALSHA calls a request of each build's Redis store when Redis is far away: the store talks to redis-server through a
// 127.0.0.1 TCP relay that holds every chunk `--delay` ms each way (whole ms: a timer's), under an open loop of `--rate`
// requests a second for `--duration` ms, each a reserve, a wait of `--upstream` ms (the provider), then its settle,
// all on one key (a loop check, guard off, as the bench's requests). Counted by Redis (INFO commandstats, on a direct
// connection), so load barely moves it; 2 is a call each for every reserve and settle, fewer where a key's calls of
// one event-loop turn went as one batch (lua/reserve-batch.lua, lua/settle-batch.lua).
//   node bench/redis-delay.mjs [--dist=OLD/dist --dist=dist …] [--delay=0,1,2,5] [--rate=1000] [--duration=5000] [--upstream=5]
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Redis } from 'ioredis'
import { ROOT, sleep, startRedis } from './procs.mjs'

const args = (name) => process.argv.filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3))
const dists = args('dist').map((d) => resolve(d))
if (dists.length === 0) dists.push(join(ROOT, 'dist'))
const delays = (args('delay')[0] ?? '0,1,2,5').split(',').map(Number)
const rate = Number(args('rate')[0] ?? '1000')
const durationMs = Number(args('duration')[0] ?? '5000')
const upstreamMs = Number(args('upstream')[0] ?? '5')
const watchdog = setTimeout(() => process.exit(1), 10 * 60_000)
/** The relay's process (startRelay): `node -e RELAY <redis port> <delay ms>` prints its port. */
const RELAY = `
const net = require('node:net')
const [port, delay] = process.argv.slice(1).map(Number)
const pass = (from, to) => from.on('data', (c) => (delay > 0 ? setTimeout(() => to.write(c), delay) : to.write(c)))
const relay = net.createServer((client) => {
  const upstream = net.connect(port, '127.0.0.1')
  pass(client, upstream)
  pass(upstream, client)
  const end = () => { client.destroy(); upstream.destroy() }
  client.on('close', end).on('error', end)
  upstream.on('close', end).on('error', end)
})
relay.listen(0, '127.0.0.1', () => console.log(relay.address().port))
`

const dir = mkdtempSync(join(tmpdir(), 'redis-delay-'))
const server = await startRedis({ pin: false, dir })
const port = Number(new URL(server.url).port)
const clients = []
const hex = (s) => createHash('sha256').update(s).digest('hex').slice(0, 16)
const loop = { scope: `c:${hex('conv')}`, step: hex('step') }
let ids = 0

try {
  const admin = new Redis(server.url)
  clients.push(admin)
  await admin.set('lp:layout', '1')
  process.stdout.write(`EVALSHA a request at ${rate}/s for ${durationMs} ms, ${upstreamMs} ms upstream, one key\n`)
  process.stdout.write(`${'build'.padEnd(40)}${delays.map((d) => `${d} ms each way`.padStart(18)).join('')}\n`)
  for (const dist of dists) {
    const row = []
    for (const delay of delays) row.push(await measure(dist, delay, admin))
    process.stdout.write(`${dist.slice(-40).padEnd(40)}${row.map((r) => r.padStart(18)).join('')}\n`)
  }
} finally {
  for (const c of clients) c.disconnect()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
  clearTimeout(watchdog)
}

/** EVALSHA a request of `dist`'s store through a relay delaying `delay` ms each way ('calls (requests)'). */
async function measure(dist, delay, admin) {
  const relay = await startRelay(delay)
  const { createBudgetStore } = await import(join(dist, 'budget/redis/store.js'))
  const { createKeyAdmin } = await import(join(dist, 'budget/redis/admin.js'))
  const redis = new Redis(`redis://127.0.0.1:${relay.port}`, { maxRetriesPerRequest: 0, commandTimeout: 10_000 })
  clients.push(redis)
  const store = createBudgetStore(redis)
  const { record } = await createKeyAdmin(admin).createKey(`redis-delay ${dist} ${delay}`, ['openai'])
  await createKeyAdmin(admin).setBudget(record.hash, { limits: { daily: 1e15 }, loopLimit: 0 })
  const one = async () => {
    const r = await store.reserve({ keyHash: record.hash, provider: 'openai', requestId: `d${ids++}`, minMicros: 1_000, maxMicros: 2_000_000, session: null, loop })
    if (!r.ok) throw new Error(`refused: ${r.reason}`)
    await sleep(upstreamMs)
    await store.settle(r.reservation, 600_000)
  }
  await openLoop(Math.min(1_000, durationMs), one) // warm
  const before = await evalsha(admin)
  const requests = await openLoop(durationMs, one)
  const after = await evalsha(admin)
  redis.disconnect()
  relay.close()
  return `${((after - before) / requests).toFixed(2)} (${requests})`
}

/** Runs `one` at `rate` a second for `ms`, waits for all; returns how many ran. */
async function openLoop(ms, one) {
  const started = performance.now()
  const running = []
  let sent = 0
  while (performance.now() - started < ms) {
    const due = Math.floor(((performance.now() - started) * rate) / 1000)
    for (; sent < due; sent++) running.push(one())
    await new Promise((done) => setImmediate(done))
  }
  await Promise.all(running)
  return sent
}

async function evalsha(redis) {
  const m = /cmdstat_evalsha:calls=(\d+)/.exec(await redis.info('commandstats'))
  return m ? Number(m[1]) : 0
}

/**
 * A relay to the Redis port holding each chunk `delay` ms each way, in order (0: passed on at once), in a process of its
 * own: its timers and copies take no turn of the store's event loop.
 */
async function startRelay(delay) {
  const child = spawn(process.execPath, ['-e', RELAY, String(port), String(delay)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const relayPort = await new Promise((done, fail) => {
    child.stdout.once('data', (c) => done(Number(String(c).trim())))
    child.once('exit', () => fail(new Error('relay exited')))
  })
  return { port: relayPort, close: () => child.kill() }
}

