// Where a lone settle's redis-server instructions go: settle.lua's common path (a hold booked in the key's current
// string, others of the key in flight) rebuilt step by step, each step a script of its own counted under callgrind
// inside EVALSHA, so each step's cost is its row less the row before; settle.lua itself, and the floor's script
// (bench/floor.mjs: eight keys, one HINCRBY and one EXPIRE) beside them.
//   node bench/settle-split.mjs [--dist=dist] [--calls=500] [--only=name,…] [--rows=FILE] [--lone]
// Each row gets a key of its own and `--calls` reserves made by the build's store (not counted: dumped apart), then
// `--calls` calls of the row's script with exactly the keys and arguments the store sends a settle (KEYS: the current
// string, today's history, the record; ARGV: the charge, the booked period ids). Rows:
//   call-0keys     `return 0`, no keys or arguments: EVALSHA's own cost
//   call-3keys     `return 0` with a settle's three keys, no arguments
//   call-1arg      and the charge
//   call           and the booked period ids: a settle's keys and arguments (what each costs: its row less the one before)
//   set-get        + the record read and marked in one SET … GET (and the 'settled <charge>' text)
//   record-match   + the record's state and amount matched
//   get-cur        + GET of the current string
//   cur-match      + its eight captures and the period ids compared
//   cur-text       + the new text (five spent and the held reckoned, formatted)
//   set-cur        + SET of it (KEEPTTL)
//   incrby         + the history INCRBY: the whole common path
//   settle.lua     the script itself
//   floor-call     `return 0` with the floor's eight keys and one argument
//   floor          the floor's script with them
// --lone: before each call (not counted) the string is made to hold that one reservation only, as when it is alone
// in flight (the open loop's common case at the bench's rates).
// Needs valgrind (callgrind_control) and redis-server 7.0 (evalShaCommand exported). Bounded: 10 minutes at most.
import { execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Redis } from 'ioredis'
import { ROOT } from './procs.mjs'

const args = (name) => process.argv.filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3))
const dist = resolve(args('dist')[0] ?? join(ROOT, 'dist'))
const calls = Number(args('calls')[0] ?? '500')
const lone = process.argv.includes('--lone')
const START_MS = Date.parse('2027-03-03T10:00:01.000Z')

// The common path's steps, each adding one to the one before (the script text after the last step's).
const RECORD = `local got = redis.pcall('SET', KEYS[3], 'settled ' .. ARGV[1], 'EX', '86400', 'GET')\n`
const MATCH = `local state, amount = string.match(got, '^(%l+) (%d+)')\n`
const GET = `local v = redis.call('GET', KEYS[1])\n`
const CUR_MATCH = `local s1, h1, s2, s3, s4, s5, r, ids = string.match(v, '^(%d+) (%d+) (%d+) %2 (%d+) %2 (%d+) %2 (%d+) %2 (%d+) (.*)$')
if ids ~= ARGV[2] then return -1 end\n`
const TEXT = `local actual, reserved = ARGV[1] + 0, amount + 0
local held = '0'
local left = h1 - reserved
if left > 0 then held = string.format('%d', left) end
local value = string.format('%d ' .. held .. ' %d ' .. held .. ' %d ' .. held .. ' %d ' .. held .. ' %d ' .. held .. ' ',
  s1 + actual, s2 + actual, s3 + actual, s4 + actual, s5 + actual) .. r .. ' ' .. ids\n`
const SET = `redis.call('SET', KEYS[1], value, 'KEEPTTL')\n`
const INCR = `if redis.call('INCRBY', KEYS[2], ARGV[1]) == actual then return -2 end\n`
const steps = [['set-get', RECORD], ['record-match', MATCH], ['get-cur', GET], ['cur-match', CUR_MATCH], ['cur-text', TEXT], ['set-cur', SET], ['incrby', INCR]]
const rows = [['call-0keys', 'return 0', 'none'], ['call-3keys', 'return 0', 'keys'], ['call-1arg', 'return 0', 'charge'], ['call', 'return 0', 'settle']]
let body = ''
for (const [name, text] of steps) {
  body += text
  rows.push([name, `${body}return 0`, 'settle'])
}
rows.push(['settle.lua', readFileSync(join(ROOT, 'lua/settle.lua'), 'utf8'), 'settle'])
rows.push(['floor-call', 'return 0', 'floor'])
rows.push(['floor', `redis.call('HINCRBY', KEYS[1], 'held', ARGV[1]) redis.call('EXPIRE', KEYS[1], 86400) return {'ok', ARGV[1]}`, 'floor'])
// --rows=FILE adds rows of one's own: a JSON list of [name, script text, shape?], each sent a settle's keys and
// arguments (shape 'nocur': without the current string's key, for a script that names it from today's history key;
// shape 'reserve': a plain reserve's, as reserve.lua's header gives them, a new request id each call; with --lone the
// string holds nothing before each, as when none other of the key is in flight).
for (const file of args('rows')) for (const [name, lua, shape] of JSON.parse(readFileSync(file, 'utf8'))) rows.push([name, lua, shape ?? 'settle'])
const only = args('only')[0]?.split(',') ?? null
const chosen = only === null ? rows : rows.filter(([name]) => only.includes(name))

const out = mkdtempSync(join(tmpdir(), 'settle-split-'))
const port = await freePort()
const server = spawn('valgrind', ['--tool=callgrind', '--toggle-collect=evalShaCommand', `--callgrind-out-file=${out}/cg.%p`,
  'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--activerehashing', 'no'],
{ stdio: 'ignore' })
const watchdog = setTimeout(() => server.kill('SIGKILL'), 10 * 60_000)
let redis = null
try {
  await waitForServer(port)
  redis = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, commandTimeout: 120_000 })
  await redis.set('lp:layout', '1')
  const { createBudgetStore } = await import(join(dist, 'budget/redis/store.js'))
  const { createKeyAdmin } = await import(join(dist, 'budget/redis/admin.js'))
  const { LAYOUT_FIELD: layoutField } = await import(join(dist, 'budget/redis/redis-keys.js'))
  let clock = START_MS
  const now = () => clock
  const store = createBudgetStore(redis, { now, batchedHoldMs: Number.POSITIVE_INFINITY })
  const admin = createKeyAdmin(redis, { now })
  let dumps = 0
  const dump = (name) => {
    execFileSync('callgrind_control', [`--dump=${name}`, String(server.pid)], { stdio: 'ignore' })
    dumps++
    const text = readFileSync(join(out, `cg.${server.pid}.${dumps}`), 'utf8')
    if (!text.includes(`dump ${name}`)) throw new Error(`dump ${dumps} is not ${name}`)
    return Number(/\n(?:totals|summary): (\d+)/.exec(text)[1])
  }
  // Every script's first EVALSHA (its first run compiles nothing, but makes its function's first strings) not counted.
  const results = []
  for (const [name, lua, shape] of chosen) {
    const hash = createHash('sha256').update(`settle-split ${name}`).digest('hex')
    await redis.hset(`lp:{${hash}}:key`, { name, providers: 'openai', active: '1', created_at: new Date(now()).toISOString() })
    if (layoutField !== undefined) await redis.hset(`lp:{${hash}}:key`, layoutField, '1')
    await admin.setBudget(hash, { limits: { daily: 1e13 } })
    for (let i = 0; i < calls + 1; i++) {
      const r = await store.reserve({ keyHash: hash, provider: 'openai', requestId: `${name}-${i}`, minMicros: 1_000, maxMicros: 2_000_000, session: null, loop: null })
      if (!r.ok) throw new Error(`${name}: refused ${r.reason}`)
      clock++
    }
    const cur = await redis.get(`lp:{${hash}}:cur`)
    const ids = cur.split(' ').slice(11).join(' ')
    const [today] = await redis.keys(`lp:{${hash}}:d:*`).then((k) => (k.length > 0 ? k : [`lp:{${hash}}:d:2027-03-03`]))
    const sha = await redis.script('LOAD', lua)
    const keysOf = (i) => shape === 'none' ? [] : shape === 'floor'
      ? ['floor:rec', 'floor:m', 'floor:h', 'floor:d', 'floor:w', 'floor:mo', 'floor:s', `floor:r:${i}`]
      : shape === 'nocur' ? [today, `lp:{${hash}}:r:${name}-${i}`]
        : shape === 'reserve' ? [`lp:{${hash}}:key`, `lp:{${hash}}:cur`, `lp:{${hash}}:r:${name}-new-${i}`]
          : [`lp:{${hash}}:cur`, today, `lp:{${hash}}:r:${name}-${i}`]
    const argvOf = () => shape === 'none' || shape === 'keys' ? [] : shape === 'floor' ? ['-1000'] : shape === 'charge' ? ['600000']
      : shape === 'reserve' ? ['openai', '1000', '2000000', new Date(clock).toISOString(), ids] : ['600000', ids]
    await redis.evalsha(sha, keysOf(calls).length, ...keysOf(calls), ...argvOf())
    dump(`skip-${name}`)
    for (let i = 0; i < calls; i++) {
      if (lone && (shape === 'settle' || shape === 'reserve')) {
        const parts = (await redis.get(`lp:{${hash}}:cur`)).split(' ')
        for (let w = 0; w < 5; w++) parts[2 * w + 1] = shape === 'settle' ? '2000000' : '0'
        await redis.set(`lp:{${hash}}:cur`, parts.join(' '), 'KEEPTTL')
      }
      await redis.evalsha(sha, keysOf(i).length, ...keysOf(i), ...argvOf())
    }
    results.push([name, dump(name) / calls])
  }
  const fmt = (n) => `${(n / 1000).toFixed(1)}k`
  process.stdout.write(`instructions per call inside EVALSHA, ${calls} calls a row${lone ? ', each alone in flight' : ''} (${dist})\n${'row'.padEnd(16)}${'per call'.padStart(10)}${'step'.padStart(10)}\n`)
  for (const [i, [name, n]] of results.entries()) {
    const prev = i > 0 && steps.some(([step]) => step === name) ? results[i - 1][1] : null
    process.stdout.write(`${name.padEnd(16)}${fmt(n).padStart(10)}${(prev === null ? '' : `+${fmt(n - prev)}`).padStart(10)}\n`)
  }
} finally {
  redis?.disconnect()
  server.kill('SIGTERM')
  await new Promise((r) => (server.exitCode === null ? server.once('exit', r) : r()))
  clearTimeout(watchdog)
  rmSync(out, { recursive: true, force: true })
}

function freePort() {
  return new Promise((resolvePort) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = s.address()
      s.close(() => resolvePort(p))
    })
  })
}

/** Waits (at most a minute) for the server under valgrind to answer PING. */
async function waitForServer(p) {
  for (let i = 0; i < 120; i++) {
    const probe = new Redis({ port: p, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    const up = await probe.connect().then(() => probe.ping()).then(() => true, () => false)
    probe.disconnect()
    if (up) return
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error('redis-server under valgrind did not start')
}
