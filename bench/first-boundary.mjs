// V8's deopts and optimizing compiles at a young process's first minute boundary, in each build's Redis store: a count
// machine load does not move much. Each build runs in a child node, with the launcher's V8 flags (dist/cli.js's first
// line) and --trace-deopt --trace-opt, on its own key of one redis-server: `--warm` reserve + settle pairs (32 in
// flight, the bench's shape: a loop check, the guard off) with its clock 0.05 ms a request, then its clock at the next
// minute and `--after` more pairs; the trace lines printed after the boundary are counted.
//   node bench/first-boundary.mjs [--dist=OLD/dist --dist=dist …] [--warm=30000] [--after=3000] [--runs=2] [--show]
// --show prints each deopt's line (its function and reason). Bounded: at most 5 minutes, then it exits.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { launcherFlags, ROOT, startRedis } from './procs.mjs'

const args = (name) => process.argv.filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3))
const BOUNDARY = '### first-boundary: the clock turns'
const END = '### first-boundary: done'

if (process.argv[2] === '--child') await child(...process.argv.slice(3))
else await main()

async function main() {
  const dists = args('dist').map((d) => resolve(d))
  if (dists.length === 0) dists.push(join(ROOT, 'dist'))
  const warm = Number(args('warm')[0] ?? '30000')
  const after = Number(args('after')[0] ?? '3000')
  const runs = Number(args('runs')[0] ?? '2')
  const show = process.argv.includes('--show')
  const watchdog = setTimeout(() => process.exit(1), 5 * 60_000)
  const dir = mkdtempSync(join(tmpdir(), 'first-boundary-'))
  const server = await startRedis({ pin: false, dir })
  try {
    process.stdout.write(`after the first minute boundary (${warm} requests before, ${after} after), each run\n`)
    for (const dist of dists) {
      const flags = launcherFlags(join(dist, 'cli.js'))
      for (let run = 0; run < runs; run++) {
        const out = spawnSync(process.execPath, [...flags, '--trace-deopt', '--trace-opt', fileURLToPath(import.meta.url), '--child', dist, server.url, String(warm), String(after)], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 })
        if (out.status !== 0) throw new Error(`${dist}: the child failed: ${out.stderr}`)
        const text = out.stdout
        const start = text.indexOf(BOUNDARY)
        const end = text.indexOf(END)
        if (start < 0 || end < start) throw new Error(`${dist}: no boundary marks in the child's output`)
        const lines = text.slice(start, end).split('\n')
        const deopts = lines.filter((l) => l.startsWith('[bailout (kind'))
        const compiles = lines.filter((l) => l.includes('completed compiling'))
        process.stdout.write(`${dist}  deopts ${deopts.length}  compiles ${compiles.length}\n`)
        if (show) for (const l of deopts) process.stdout.write(`  ${l.replace(/0x[0-9a-f]+/g, '').slice(0, 160)}\n`)
      }
    }
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
    clearTimeout(watchdog)
  }
}

async function child(dist, url, warm, after) {
  const { Redis } = await import('ioredis')
  const { createBudgetStore } = await import(join(dist, 'budget/redis/store.js'))
  const { createKeyAdmin } = await import(join(dist, 'budget/redis/admin.js'))
  const redis = new Redis(url, { maxRetriesPerRequest: 0 })
  await redis.set('lp:layout', '1')
  let t = Date.parse('2027-03-03T10:00:01.000Z')
  const store = createBudgetStore(redis, { now: () => t })
  const { record } = await createKeyAdmin(redis).createKey(`first-boundary ${dist}`, ['openai'])
  await createKeyAdmin(redis).setBudget(record.hash, { limits: { daily: 1e15 }, loopLimit: 0 })
  const loop = { scope: 'c:0123456789abcdef', step: 'fedcba9876543210' }
  let id = 0
  const pairs = async (n) => {
    let next = 0
    const worker = async () => {
      while (next++ < n) {
        t += 0.05
        const r = await store.reserve({ keyHash: record.hash, provider: 'openai', requestId: `b${id++}`, minMicros: 1_000, maxMicros: 2_000_000, session: null, loop })
        if (!r.ok) throw new Error(`refused: ${r.reason}`)
        await store.settle(r.reservation, 600_000)
      }
    }
    await Promise.all(Array.from({ length: 32 }, worker))
  }
  await pairs(Number(warm))
  await new Promise((r) => setTimeout(r, 500)) // the compiler's queue drained
  process.stdout.write(`\n${BOUNDARY}\n`)
  t = Date.parse('2027-03-03T10:01:00.500Z')
  await pairs(Number(after))
  process.stdout.write(`\n${END}\n`)
  redis.disconnect()
}
