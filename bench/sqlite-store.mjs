// The embedded store's own CPU per request, beside the floor's: one request's store work as the proxy does
// it in scenario f (reserve for a key with a daily limit and the loop guard off, then settle), against
// the floor's two small BEGIN IMMEDIATE transactions (bench/floor.mjs --store=sqlite), in this process,
// alternating in blocks of BLOCK requests within each trial. Request ids are made as that build's proxy makes them. With --checkpointer the WAL is checkpointed
// by the store's worker as in `loopers serve` (its CPU counts: every thread of this process is measured).
// The result is the median over trials of µs of CPU per request, and the store's excess over the floor.
// Bounded: TRIALS × 2 × N sequential calls on temporary files; nothing listens, nothing is spawned.
// --base=DIR adds a third side: the same store work on another build (DIR/dist, e.g. main's), for before/after.
// --inflight=N keeps N requests in flight at once (the store's group commit then serves several per commit).
// --loop=one|growing: the key keeps the loop guard on (its default) and every request is a new step of a conversation
// (one: a single scope, past its 256 steps and trimmed as it grows; growing: a new conversation every 40 requests),
// as bench/loop-guard.mjs sends them. --count: before timing, each side's SQLite statement runs and heap bytes
// allocated per request (4,000 requests a side; the bench's own request objects counted alike on every side), and
// the WAL frames (pages) each side's commits write per request, the floor's too: the commit's page writes, which load
// does not move; one at a time (no --inflight), how many pages a reserve's commit and a settle's write (the share of
// requests writing each number), and with --loop the loop_steps table's layout (SQLite's dbstat: pages, rows, payload
// bytes a row, how full its pages are). --instructions: instead of timing, each side's SQLite instructions per request (inside sqlite3_step: the
// statements and their commits as SQLite runs them, WAL checkpoints left out; JS not counted), under `valgrind
// --tool=callgrind`, which machine load does not move: this script run again per side with N and 2N requests (after the
// same 500 one at a time; --inflight=K: K at a time, as the group commit serves them at peak), the difference over N. Random key hashes and request ids move it by a few thousand from run to run.
// Measured (4,000), after a trimmed scope's order was kept against the build before: --loop=one 157.5k against 164.2k,
// growing 152.3k against 153.7k, guard off 142.5k against 141.6k.
// --fingerprint (with --loop): each request's loop check is a source, as the proxy gives it, computing the fingerprint
// of bench/loop-guard.mjs's body (read lazily, as the proxy reads it) with that side's build when the store asks it;
// --lock: beside the CPU, how long each side's transactions hold the write lock a request (BEGIN IMMEDIATE to the
// end of COMMIT, timed by wrapping node:sqlite's run on both sides alike), what another process on the file waits.
// Measured (--loop=one --inflight=8 --checkpointer --lock, 6 trials, against the build before, load ~6): with
// --fingerprint, the lock held 98.0 → 58.7 and 77.1 → 51.6 µs a request once the fingerprint of a key found guarded
// ran before BEGIN (CPU the same: saved +3.4 and −2.9 µs, trials −10.5 to +12.2); checks given (no --fingerprint)
// 22.3 → 22.0, guard off 26.8 → 26.2.
// Run: `npm run build && node bench/sqlite-store.mjs [--requests=N] [--trials=T] [--session] [--checkpointer] [--base=DIR] [--inflight=N]
//        [--loop=one|growing [--fingerprint]] [--lock] [--count | --instructions]`.
import { randomUUID } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'

const option = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback
const flag = (name) => process.argv.includes(`--${name}`)
const N = Number(option('requests', 4000))
const TRIALS = Number(option('trials', 8))
const BLOCK = 200
const SESSION = flag('session')
const CHECKPOINTER = flag('checkpointer')
const BASE = option('base', null)
// Requests in flight at once (each its reserve, then its settle), as at the proxy's peak (C=64); 1: one by one.
const INFLIGHT = Number(option('inflight', 1))
const LOOP = option('loop', null)
if (LOOP !== null && !['one', 'growing'].includes(LOOP)) throw new Error(`--loop must be one or growing, not ${LOOP}`)
const FINGERPRINT = flag('fingerprint')
if (FINGERPRINT && LOOP === null) throw new Error('--fingerprint needs --loop')
const LOCK = flag('lock')
const COUNT = flag('count')
const INSTRUCTIONS = flag('instructions')
// Set on the runs --instructions starts: only that side's requests, no floor, no timing.
const ONLY = option('only', null)

/** CPU time of every thread of this process in ms (schedstat: ns). */
function cpuMs() {
  let ns = 0
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      ns += Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0])
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns / 1e6
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/**
 * WAL frames written to the database at `path` since `reset`, from the frame count in its WAL index (`-shm`: the
 * header's mxFrame, a native-endian u32 at byte 16; read as little-endian) read after each request. A WAL started over
 * (after a checkpoint) counts from zero, so the frames of a commit or two just before it may be missed: a close count.
 */
function walFrames(path) {
  const word = Buffer.alloc(4)
  let fd = null
  let last = 0
  let frames = 0
  const read = () => {
    fd ??= openSync(`${path}-shm`, 'r')
    readSync(fd, word, 0, 4, 16)
    return word.readUInt32LE(0)
  }
  return {
    reset() {
      last = read()
      frames = 0
    },
    tick() {
      const now = read()
      frames += now >= last ? now - last : now
      last = now
    },
    get frames() {
      return frames
    },
    close() {
      if (fd !== null) closeSync(fd)
    },
  }
}

/**
 * The layout of `table` (with its indexes) in the file `db` holds (SQLite's dbstat): rows, leaf and interior pages,
 * payload bytes a row, how full its leaves are. Null when this SQLite has no dbstat.
 */
function layoutOf(db, table) {
  try {
    const rows = db.prepare(`SELECT pagetype, count(*) AS pages, sum(ncell) AS cells, sum(payload) AS payload, sum(unused) AS unused FROM dbstat WHERE name = ? GROUP BY pagetype`).all(table)
    const out = {}
    for (const r of rows) out[r.pagetype] = { pages: r.pages, cells: r.cells, payload_per_cell: Number((r.payload / Math.max(1, r.cells)).toFixed(1)), fill: Number((1 - r.unused / (r.pages * 4096)).toFixed(2)) }
    return out
  } catch (err) {
    return { error: err.message }
  }
}

if (INSTRUCTIONS) {
  const { spawnSync } = await import('node:child_process')
  const script = new URL(import.meta.url).pathname
  /** Instructions inside sqlite3_step of one run of `side` with `n` requests. */
  const collected = (side, n) => {
    // A WAL checkpoint (one every ~1,000 pages, inside a commit) toggles collection off while it runs: how many fall in
    // a run varies, and its work is the pages the WAL frames count already.
    const args = ['--tool=callgrind', '--toggle-collect=sqlite3_step', '--toggle-collect=sqlite3WalCheckpoint', '--callgrind-out-file=/dev/null', process.execPath, script, `--only=${side}`, `--requests=${n}`]
    for (const a of process.argv.slice(2)) if (!a.startsWith('--instructions') && !a.startsWith('--requests=')) args.push(a)
    const run = spawnSync('valgrind', args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], timeout: 20 * 60_000 })
    const found = /Collected : (\d+)/.exec(run.stderr)
    if (run.status !== 0 || found === null) throw new Error(`valgrind run of ${side} failed: ${run.stderr.slice(-2000)}`)
    return Number(found[1])
  }
  const result = { requests: N, loop: LOOP, session: SESSION }
  for (const side of BASE === null ? ['store'] : ['store', 'base']) {
    result[`${side}_sqlite_instructions_per_request`] = Math.round((collected(side, 2 * N) - collected(side, N)) / N)
    console.error(`${side}: ${result[`${side}_sqlite_instructions_per_request`]}`)
  }
  console.log(JSON.stringify(result))
  process.exit(0)
}

const dir = mkdtempSync(join(tmpdir(), 'loopers-bench-sqlite-store-'))
const closers = []
try {
  /** The store of the build at `root` on its own file, and one proxy request's store work on it. */
  const openSide = async (root, name) => {
    const { createDb } = await import(`${root}/dist/budget/sqlite/database.js`)
    const { createSqliteKeyAdmin } = await import(`${root}/dist/budget/sqlite/admin.js`)
    const { createSqliteBudgetStore } = await import(`${root}/dist/budget/sqlite/store.js`)
    const { startCheckpointer } = await import(`${root}/dist/budget/sqlite/checkpointer.js`)
    // The request ids that build's proxy makes (before they were time-ordered: randomUUID).
    const newId = await import(`${root}/dist/budget/request-id.js`).then((m) => () => m.newRequestId(), () => randomUUID)
    const path = join(dir, `${name}.db`)
    let checkpointer = null
    const db = createDb(path, { onCommit: () => checkpointer?.wake(), checkpointing: () => checkpointer?.truncating?.() === true })
    closers.push(() => db.close())
    const store = createSqliteBudgetStore(db)
    const admin = createSqliteKeyAdmin(db)
    const { record } = await admin.createKey('bench-sqlite', ['openai'], { limits: { daily: 10_000_000_000_000 }, ...(LOOP === null ? { loopLimit: 0 } : {}) })
    if (CHECKPOINTER) {
      db.setAutoCheckpoint(false)
      checkpointer = startCheckpointer(path, () => db.setAutoCheckpoint(true))
      closers.unshift(() => checkpointer.stop())
    }
    let n = 0
    const session = () => (SESSION ? { id: `s${n % 50}`, budgetMicros: null, maxSteps: null } : null)
    // A new step every request (a 16-hex-digit hash, as the fingerprint makes; one in 16 ends in 0).
    const given = () =>
      LOOP === null ? null : { scope: `c:${(LOOP === 'one' ? 0 : Math.floor(n / 40)).toString(16).padStart(16, '0')}`, step: (n * 2654435761 % 2 ** 48).toString(16).padStart(16, '0') }
    const loop = FINGERPRINT ? await fingerprintSource(root) : given
    const request = async () => {
      n++
      const r = await store.reserve({ keyHash: record.hash, provider: 'openai', requestId: newId(), minMicros: 10, maxMicros: 100, session: session(), loop: loop() })
      if (!r.ok) throw new Error(`refused: ${r.reason}`)
      request.reserved?.()
      await store.settle(r.reservation, 50)
    }
    request.path = path
    // --count: called between a request's reserve and its settle (their commits' pages told apart), and the table's layout.
    request.reserved = null
    request.layout = () => layoutOf(db, 'loop_steps')
    return request
  }
  /**
   * --fingerprint: a request's loop check as a source the build at `root` makes, as its pipeline does, over the body of
   * bench/loop-guard.mjs's request `i` (read lazily before the call, as the proxy reads it); a new step each request.
   */
  async function fingerprintSource(root) {
    const { readLazyBody } = await import(`${root}/dist/proxy/request-body.js`)
    const { messagesShape } = await import(`${root}/dist/loop/shapes/messages.js`)
    const { createLoopCheck } = await import(`${root}/dist/loop/check.js`)
    const { body } = await import('./loop-guard.mjs')
    let i = 0
    return () => {
      const read = readLazyBody(Buffer.from(body(i++, LOOP)), messagesShape)
      if (read instanceof Promise) throw new Error('the body was read in slices: not what this bench times')
      return createLoopCheck(() => read.fingerprint(), null)
    }
  }
  const here = new URL('..', import.meta.url).pathname.replace(/\/$/, '')
  if (ONLY !== null) {
    const request = await openSide(ONLY === 'base' ? BASE.replace(/\/$/, '') : here, ONLY)
    for (let i = 0; i < 500; i++) await request()
    await Promise.all(Array.from({ length: INFLIGHT }, async (_, lane) => {
      for (let i = lane; i < N; i += INFLIGHT) await request()
    }))
    for (const close of closers) await close()
    rmSync(dir, { recursive: true, force: true })
    process.exit(0)
  }
  const sides = { store: await openSide(here, 'loopers') }
  if (BASE !== null) sides.base = await openSide(BASE.replace(/\/$/, ''), 'base')

  // The floor's store, exactly as bench/floor.mjs opens and uses it.
  const floorDb = new DatabaseSync(join(dir, 'floor.db'))
  closers.push(() => floorDb.close())
  floorDb.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;')
  floorDb.exec("CREATE TABLE IF NOT EXISTS held (k TEXT PRIMARY KEY, v INTEGER NOT NULL) STRICT, WITHOUT ROWID; INSERT OR IGNORE INTO held VALUES ('floor', 0);")
  const update = floorDb.prepare("UPDATE held SET v = v + ? WHERE k = 'floor'")
  const tx = (amount) => {
    floorDb.exec('BEGIN IMMEDIATE')
    try {
      update.run(amount)
      floorDb.exec('COMMIT')
    } catch (error) {
      floorDb.exec('ROLLBACK')
      throw error
    }
  }
  const floorRequest = async () => {
    randomUUID() // the proxy's request id, so both sides make one
    await (async () => tx(1000))()
    await (async () => tx(-1000))()
  }

  floorRequest.path = join(dir, 'floor.db')
  sides.floor = floorRequest
  const names = Object.keys(sides)
  for (const f of Object.values(sides)) for (let i = 0; i < 500; i++) await f()
  if (COUNT) {
    // Statement runs per request, counted by wrapping node:sqlite's run/get/all/iterate (not timed).
    const { StatementSync } = await import('node:sqlite')
    let calls = 0
    for (const method of ['run', 'get', 'all', 'iterate']) {
      const original = StatementSync.prototype[method]
      StatementSync.prototype[method] = function (...args) {
        calls++
        return original.apply(this, args)
      }
    }
    // Heap bytes allocated: over every collection, the heap's growth since the previous one ended, plus the last growth.
    const { default: v8 } = await import('node:v8')
    const counts = {}
    const bytes = {}
    const frames = {}
    for (const side of Object.keys(sides)) {
      const wal = walFrames(sides[side].path)
      wal.reset()
      if (side === 'floor') {
        for (let i = 0; i < 4000; i++) {
          await sides.floor()
          wal.tick()
        }
        frames.floor = Number((wal.frames / 4000).toFixed(3))
        wal.close()
        continue
      }
      // Pages of each request's reserve and settle commits (one at a time only: in flight, commits serve several).
      const reserveFrames = new Map()
      const settleFrames = new Map()
      let before = 0
      if (INFLIGHT === 1) {
        sides[side].reserved = () => {
          wal.tick()
          reserveFrames.set(wal.frames - before, (reserveFrames.get(wal.frames - before) ?? 0) + 1)
          before = wal.frames
        }
      }
      calls = 0
      const profiler = new v8.GCProfiler()
      let allocated = 0
      let last = v8.getHeapStatistics().used_heap_size
      profiler.start()
      await Promise.all(Array.from({ length: INFLIGHT }, async (_, lane) => {
        for (let i = lane; i < 4000; i += INFLIGHT) {
          await sides[side]()
          wal.tick()
          if (INFLIGHT === 1) {
            settleFrames.set(wal.frames - before, (settleFrames.get(wal.frames - before) ?? 0) + 1)
            before = wal.frames
          }
        }
      }))
      sides[side].reserved = null
      for (const gc of profiler.stop().statistics) {
        allocated += gc.beforeGC.heapStatistics.usedHeapSize - last
        last = gc.afterGC.heapStatistics.usedHeapSize
      }
      allocated += v8.getHeapStatistics().used_heap_size - last
      counts[side] = calls / 4000
      bytes[side] = Math.round(allocated / 4000)
      frames[side] = Number((wal.frames / 4000).toFixed(3))
      wal.close()
      if (INFLIGHT === 1) {
        const share = (m) => Object.fromEntries([...m].sort((a, b) => a[0] - b[0]).map(([k, v]) => [k, Number((v / 4000).toFixed(3))]))
        console.error(`${side}: pages a reserve commit writes (share of requests): ${JSON.stringify(share(reserveFrames))}; a settle's: ${JSON.stringify(share(settleFrames))}`)
      }
      if (LOOP !== null) console.error(`${side}: loop_steps ${JSON.stringify(sides[side].layout())}`)
    }
    console.error(
      `statements per request: ${JSON.stringify(counts)}; heap bytes allocated per request: ${JSON.stringify(bytes)}; WAL frames (pages written) per request: ${JSON.stringify(frames)}`,
    )
  }
  // --lock: the write lock's hold (ms) summed per side, the side whose block runs now.
  const held = Object.fromEntries(names.map((side) => [side, 0]))
  let holder = null
  if (LOCK) {
    const { StatementSync } = await import('node:sqlite')
    const { run } = StatementSync.prototype
    let begun = 0
    StatementSync.prototype.run = function (...args) {
      const sql = this.sourceSQL
      if (sql === 'BEGIN IMMEDIATE' || sql === 'BEGIN IMMEDIATE;') {
        const result = run.apply(this, args)
        begun = performance.now()
        return result
      }
      if (sql !== 'COMMIT' && sql !== 'COMMIT;') return run.apply(this, args)
      try {
        return run.apply(this, args)
      } finally {
        if (holder !== null) held[holder] += performance.now() - begun
      }
    }
  }
  const perTrial = Object.fromEntries(names.map((side) => [side, []]))
  for (let t = 0; t < TRIALS; t++) {
    const ms = Object.fromEntries(names.map((side) => [side, 0]))
    // Each side first in turn and, reversed on odd trials, after each other side in turn: a side's cost depends
    // on the side that ran just before it (one build against itself read ~2 µs apart when each always followed
    // the same side), so an even number of trials balances it.
    const rotated = names.map((_, i) => names[(i + (t >> 1)) % names.length])
    const order = t % 2 === 0 ? rotated : rotated.reverse()
    for (let done = 0; done < N; done += BLOCK) {
      for (const side of order) {
        holder = side
        const before = cpuMs()
        await Promise.all(Array.from({ length: INFLIGHT }, async (_, lane) => {
          for (let i = lane; i < BLOCK; i += INFLIGHT) await sides[side]()
        }))
        ms[side] += cpuMs() - before
        holder = null
      }
    }
    for (const side of Object.keys(ms)) perTrial[side].push((ms[side] * 1000) / N)
    console.error(`trial ${t + 1}: ${names.map((side) => `${side} ${perTrial[side].at(-1).toFixed(1)} µs`).join(', ')}`)
  }
  const us = (side) => Number(median(perTrial[side]).toFixed(1))
  const out = { requests: N, trials: TRIALS, inflight: INFLIGHT, session: SESSION, checkpointer: CHECKPOINTER }
  for (const side of names) out[`${side}_us_per_request`] = us(side)
  out.excess_us = Number((us('store') - us('floor')).toFixed(1))
  out.ratio = Number((us('store') / us('floor')).toFixed(2))
  if (BASE !== null) {
    out.base_excess_us = Number((us('base') - us('floor')).toFixed(1))
    out.base_ratio = Number((us('base') / us('floor')).toFixed(2))
    // Per trial (same trial, back to back): what the change bought.
    out.saved_us_per_trial = perTrial.store.map((x, i) => Number((perTrial.base[i] - x).toFixed(1)))
    out.saved_us = Number(median(out.saved_us_per_trial).toFixed(1))
  }
  if (LOCK) for (const side of names.filter((x) => x !== 'floor')) out[`${side}_lock_held_us_per_request`] = Number(((held[side] * 1000) / (N * TRIALS)).toFixed(1))
  for (const side of names) out[`${side}_trials`] = perTrial[side].map((x) => Number(x.toFixed(1)))
  console.log(JSON.stringify(out))
} finally {
  for (const close of closers) await close()
  rmSync(dir, { recursive: true, force: true })
}
