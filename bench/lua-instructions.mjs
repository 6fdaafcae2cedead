// Instructions redis-server executes inside EVALSHA per budget-script call, counted by callgrind: a count machine
// load does not move (about ±0.7% between runs; run builds side by side, as below, to compare them).
//   node bench/lua-instructions.mjs [--dist=OLD/dist --dist=dist] [--calls=1000] [--shapes=plain,bench,…] [--keep=DIR]
// Each build (default: this one's dist/) gets its own redis-server under
// `valgrind --tool=callgrind --toggle-collect=evalShaCommand` on a free port, driven with that build's own store code
// (createBudgetStore, so exactly the calls the proxy makes), all builds at once. Every shape is `--calls` reserves on
// one key with a daily limit, then their settles, each phase dumped apart (callgrind_control). Shapes:
//   plain        no session, no loop check
//   bench        a loop check on a key with the guard off (loop_limit 0), as the bench's requests
//   loop         the guard on, 50 conversations of 20 new steps (an agent)
//   loop40       the guard on, conversations of 40 new steps (bench/loop-guard.mjs --scopes=growing's)
//   loop120      the guard on, conversations of 120 new steps (a long agent run, within a scope's 256)
//   repeat       the guard on, each step sent 5 times (all in flight: the 3rd to 5th are not counted)
//   again        the guard on, every request a step its conversation sent once before, settled (a sequential
//                agent's repeat), after that first request of each step (not counted)
//   full         the guard on, every request a new step of one scope kept past 256 steps (so indexed by age and
//                trimmed every 64 new steps: the guard's worst case), filled by 300 steps first (not counted)
//   session      a session (20 requests each), no loop check
//   sessionloop  a session and the guard on, a new step each request
//   extend       as plain, and each reservation extended once (a stream outgrowing its hold) before the settles:
//                an extend-extend phase between reserve and settle
// --together=N issues a phase's settles N at a time in one event-loop turn (default 1, one at a time): a build that
// sends a key's settles of one turn as one call (lua/settle-batch.lua) is counted per settle all the same;
// --together-reserves issues the reserves so too (lua/reserve-batch.lua; a session's are never batched).
// --layout=hash keeps a build that has both Redis layouts of a key's current periods (lua/reserve.lua) on the hash
// layout; by default its keys are on the string layout, as on a fresh store (an older build has only hashes). The
// store's marker (lp:layout) is as on such a store: '1' for the string layout, none (an upgraded store) for the hash.
// Needs valgrind (callgrind_control) and redis-server (7.0 exports evalShaCommand dynamically). `--keep=DIR` keeps
// the dumps for callgrind_annotate; Lua's own functions have no symbols there.
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Redis } from 'ioredis'
import { ROOT } from './procs.mjs'

const args = (name) => process.argv.filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3))
const dists = args('dist').map((d) => resolve(d))
if (dists.length === 0) dists.push(join(ROOT, 'dist'))
const calls = Number(args('calls')[0] ?? '1000')
const keep = args('keep')[0] ?? null
const layout = args('layout')[0] ?? 'string'
const together = Number(args('together')[0] ?? '1')
if (!(Number.isInteger(together) && together >= 1)) throw new Error('--together is a whole number, 1 or more')
// Sessions are never batched; with --together-reserves, every other shape's reserves go `together` at a time too.
const reserveTogether = process.argv.includes('--together-reserves') ? together : 1
if (!['string', 'hash'].includes(layout)) throw new Error('--layout is string or hash')
const SHAPES = ['plain', 'bench', 'loop', 'loop40', 'loop120', 'repeat', 'again', 'full', 'session', 'sessionloop', 'extend']
const shapes = args('shapes')[0]?.split(',') ?? SHAPES
for (const s of shapes) if (!SHAPES.includes(s)) throw new Error(`unknown shape ${s}: one of ${SHAPES.join(', ')}`)
// A fixed future instant (the same key names and texts every run), one ms a call: every call in one minute.
const START_MS = Date.parse('2027-03-03T10:00:01.000Z')
const TIME_LIMIT_MS = 20 * 60_000
// Steps the full shape's scope is given before counting: past LOOP_STEPS_PER_SCOPE (256), so it is indexed by age.
const FULL_FILL = 300

const results = await Promise.all(dists.map((dist, i) => count(dist, keep === null ? null : join(keep, String(i)))))
const fmt = (n) => `${(n / 1000).toFixed(1)}k`.padStart(8)
process.stdout.write(`instructions per call inside EVALSHA (${calls} calls a phase)\n${'phase'.padEnd(20)}${dists.map((_, i) => `build ${i + 1}`.padStart(10)).join('')}${dists.length > 1 ? '  last/first' : ''}\n`)
for (const phase of Object.keys(results[0])) {
  const row = results.map((r) => fmt(r[phase]).padStart(10)).join('')
  const ratio = dists.length > 1 ? `  ${(results[results.length - 1][phase] / results[0][phase]).toFixed(3)}` : ''
  process.stdout.write(`${phase.padEnd(20)}${row}${ratio}\n`)
}
dists.forEach((d, i) => process.stdout.write(`build ${i + 1}: ${d}\n`))

/** Instructions per call of each phase (reserve-<shape>, settle-<shape>) with the store of `dist`. */
async function count(dist, keepDir) {
  const { createBudgetStore } = await import(join(dist, 'budget/redis/store.js'))
  const { createKeyAdmin } = await import(join(dist, 'budget/redis/admin.js'))
  const { LAYOUT_FIELD: layoutField } = await import(join(dist, 'budget/redis/redis-keys.js'))
  const out = keepDir ?? mkdtempSync(join(tmpdir(), 'lua-instructions-'))
  mkdirSync(out, { recursive: true })
  const port = await freePort()
  const server = spawn('valgrind', ['--tool=callgrind', '--toggle-collect=evalShaCommand', `--callgrind-out-file=${out}/cg.%p`,
    'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    // Rehashing in the server's cron would move counts with time.
    '--activerehashing', 'no'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let serverErr = ''
  server.stderr.on('data', (d) => { serverErr += d })
  const watchdog = setTimeout(() => server.kill('SIGKILL'), TIME_LIMIT_MS)
  let redis = null
  try {
    await waitForServer(port, () => serverErr)
    redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, commandTimeout: 120_000 })
    if (layout === 'string') await redis.set('lp:layout', '1')
    let clock = START_MS
    const now = () => clock
    // No hold after a batched turn (a build with one): only a group's first reserve or settle of a phase goes alone.
    const store = createBudgetStore(redis, { now, batchedHoldMs: Number.POSITIVE_INFINITY })
    const admin = createKeyAdmin(redis, { now })
    const dumps = []
    const dump = (name) => {
      execFileSync('callgrind_control', [`--dump=${name}`, String(server.pid)], { stdio: 'ignore' })
      dumps.push(name)
    }
    /** A key as admin.createKey makes it, its hash fixed by its name. */
    const createKey = async (name, budget) => {
      const hash = createHash('sha256').update(`lua-instructions ${name}`).digest('hex')
      await redis.hset(`lp:{${hash}}:key`, { name, providers: 'openai', active: '1', created_at: new Date(now()).toISOString() })
      if (layoutField !== undefined && layout === 'string') await redis.hset(`lp:{${hash}}:key`, layoutField, '1')
      await admin.setBudget(hash, budget)
      return hash
    }
    const hex = (s) => createHash('sha256').update(s).digest('hex').slice(0, 16)
    // Every script sent by EVAL (not counted) on this connection, then once more by EVALSHA, before counting.
    for (let round = 0; round < 2; round++) {
      const warm = await createKey('warm', { limits: { daily: 1e12 } })
      const r = await store.reserve({ keyHash: warm, provider: 'openai', requestId: `warm${round}`, minMicros: 1, maxMicros: 10, session: null })
      if (!r.ok) throw new Error(`warm-up refused: ${r.reason}`)
      await store.extend(r.reservation, 1, 1)
      await store.settle(r.reservation, 1)
      await store.abandon(warm, `warm-abandon${round}`)
      clock++
    }
    dump('warm')
    for (const shape of shapes) {
      const keyHash = await createKey(shape, shape === 'bench' ? { limits: { daily: 1e13 }, loopLimit: 0 } : { limits: { daily: 1e13 } })
      // Requests before counting, each settled: the full shape's first 300 steps, the again shape's first sightings.
      const fill = shape === 'full' ? [calls, calls + FULL_FILL] : shape === 'again' ? [0, calls] : null
      if (fill !== null) {
        for (let i = fill[0]; i < fill[1]; i++) {
          const r = await store.reserve({ ...input(shape, keyHash, i, hex), requestId: `${shape}-fill-${i}` })
          if (!r.ok) throw new Error(`${shape}: refused ${r.reason}`)
          await store.settle(r.reservation, 600_000)
          clock++
        }
        dump(`fill-${shape}`)
      }
      const reservations = []
      for (let i = 0; i < calls; i += reserveTogether) {
        const group = []
        for (let j = i; j < Math.min(calls, i + reserveTogether); j++) group.push(store.reserve(input(shape, keyHash, j, hex)))
        for (const r of await Promise.all(group)) {
          if (!r.ok) throw new Error(`${shape}: refused ${r.reason}`)
          reservations.push(r.reservation)
        }
        clock++
      }
      dump(`reserve-${shape}`)
      if (shape === 'extend') {
        for (const r of reservations) {
          const e = await store.extend(r, 1_000, 5_000)
          if (!e.ok) throw new Error(`extend: refused ${e.reason}`)
          clock++
        }
        dump('extend-extend')
      }
      for (let i = 0; i < reservations.length; i += together) {
        await Promise.all(reservations.slice(i, i + together).map((r) => store.settle(r, 600_000)))
        clock++
      }
      dump(`settle-${shape}`)
    }
    const perCall = {}
    for (let i = 1; i < dumps.length; i++) {
      if (dumps[i].startsWith('fill-')) continue
      const text = readFileSync(join(out, `cg.${server.pid}.${i + 1}`), 'utf8')
      if (!text.includes(`dump ${dumps[i]}`)) throw new Error(`dump ${i + 1} is not ${dumps[i]}`)
      perCall[dumps[i]] = Number(/\n(?:totals|summary): (\d+)/.exec(text)[1]) / calls
    }
    return perCall
  } finally {
    redis?.disconnect()
    server.kill('SIGTERM')
    await new Promise((r) => (server.exitCode === null ? server.once('exit', r) : r()))
    clearTimeout(watchdog)
    if (keepDir === null) rmSync(out, { recursive: true, force: true })
  }
}

/** The i-th request of `shape` on `keyHash`. */
function input(shape, keyHash, i, hex) {
  const base = { keyHash, provider: 'openai', requestId: `${shape}-${i}`, minMicros: 1_000, maxMicros: 2_000_000, session: null, loop: null }
  switch (shape) {
    case 'bench': return { ...base, loop: { scope: `c:${hex('conv')}`, step: hex('step') } }
    case 'loop': return { ...base, loop: { scope: `c:${hex(`conv${Math.floor(i / 20)}`)}`, step: hex(`step${i}`) } }
    case 'loop40': return { ...base, loop: { scope: `c:${hex(`conv40-${Math.floor(i / 40)}`)}`, step: hex(`step${i}`) } }
    case 'loop120': return { ...base, loop: { scope: `c:${hex(`conv120-${Math.floor(i / 120)}`)}`, step: hex(`step${i}`) } }
    case 'full': return { ...base, loop: { scope: `c:${hex('full')}`, step: hex(`step${i}`) } }
    case 'again': return { ...base, loop: { scope: `c:${hex(`conv${Math.floor(i / 20)}`)}`, step: hex(`step${i}`) } }
    case 'repeat': return { ...base, loop: { scope: `c:${hex(`conv${Math.floor(i / 5)}`)}`, step: hex(`step${Math.floor(i / 5)}`) } }
    case 'session': return { ...base, session: { id: `sess-${Math.floor(i / 20)}`, budgetMicros: 5e9, maxSteps: 100 } }
    case 'sessionloop': {
      const id = `sess-${Math.floor(i / 20)}`
      return { ...base, session: { id, budgetMicros: 5e9, maxSteps: 100 }, loop: { scope: `s:${id}`, step: hex(`step${i}`) } }
    }
    default: return base
  }
}

function freePort() {
  return new Promise((resolvePort) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolvePort(port))
    })
  })
}

/** Waits (at most a minute) for the server under valgrind to answer PING. */
async function waitForServer(port, stderr) {
  for (let i = 0; i < 120; i++) {
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    const up = await probe.connect().then(() => probe.ping()).then(() => true, () => false)
    probe.disconnect()
    if (up) return
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error(`redis-server under valgrind did not start: ${stderr().slice(-1000)}`)
}
