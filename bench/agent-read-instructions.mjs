// Instructions one lazily read agent body costs on the event loop, counted by callgrind, which machine load does not
// move: the validating scan (scanJson), the whole lazy read (readLazyBody: the scan and the members' definitions), or the
// read and the loop fingerprint, as the proxy runs them for a coding agent's request (bench/agent-body.mjs). Per build,
// node does --warm reads (optimized), then --count more; the count is the difference of two runs' main-thread
// instructions (with and without the --count reads) over --count. Node runs with the `loopers` launcher's flags and
// environment (bench/procs.mjs), as the proxy does (no Maglev, among others).
//   npm run build && node bench/agent-read-instructions.mjs [--other=OLD/dist] [--bytes=32768,131072] [--shape=chat|anthropic]
//     [--step=scan|read|fingerprint] [--warm=3000] [--count=1000] [--names=N]
// --names=N: also the N functions with most self instructions of this build's counted reads (node's --perf-basic-prof
// map names the JIT code callgrind sees as bare addresses; a function's tiers count as one).
// Two runs of one build differ by up to ~7 % (collections and code flushing land at other reads): it attributes a
// read's instructions, it does not resolve a change of a few per cent (compare in-process timings, bench/read-ab.mjs).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const WARM = Number(arg('warm', '3000'))
const COUNT = Number(arg('count', '1000'))
const STEP = arg('step', 'fingerprint')
const SHAPE = arg('shape', 'chat')

if (process.argv.includes('--child')) {
  const dist = arg('dist', 'dist')
  const url = (path) => pathToFileURL(join(dist, path)).href
  const { agentBody } = await import('./agent-body.mjs')
  const { readLazyBody } = await import(url('proxy/request-body.js'))
  const { scanJson } = await import(url('http/json-scan.js'))
  const { createWordSet } = await import(url('http/json-keys.js'))
  const { SCAN_WORDS } = await import(url('tokens/bound.js'))
  const { messagesShape } = await import(url('loop/shapes/messages.js'))
  const words = createWordSet(SCAN_WORDS)
  // Two bodies of the conversation's steps in turn, as an agent's requests differ.
  const raws = [0, 1].map((step) => Buffer.from(agentBody({ bytes: Number(arg('bytes', '32768')), step, shape: SHAPE })))
  let sink = 0
  const n = WARM + Number(arg('n', '0'))
  for (let i = 0; i < n; i++) {
    const raw = raws[i & 1]
    if (STEP === 'scan') {
      let scan = scanJson(raw, words)
      if (scan instanceof Promise) scan = await scan
      sink += scan.ok ? scan.members.length : 0
    } else {
      let body = readLazyBody(raw, messagesShape)
      if (body instanceof Promise) body = await body
      sink += STEP === 'fingerprint' ? (body.fingerprint()?.step.length ?? 0) : body.raw.length
    }
  }
  process.exitCode = sink > 0 ? 0 : 1
} else {
  const { launcherEnv, launcherFlags } = await import('./procs.mjs')
  const others = arg('other', null) === null ? [] : [resolve(arg('other'))]
  const dists = [resolve('dist'), ...others]
  const names = Number(arg('names', '0'))
  const dir = mkdtempSync(join(tmpdir(), 'agent-read-'))
  const self = fileURLToPath(import.meta.url)
  /** Main-thread instructions of one child run, and its dump's text when `keep`. */
  const count = (dist, bytes, n, keep) => {
    const cli = join(dist, 'cli.js')
    // TurboFan on the main thread: under valgrind a concurrent job lags by an unknown number of reads, and one run
    // would count a read's optimized code where the other counts its baseline code.
    const flags = [...launcherFlags(cli), '--no-concurrent-recompilation', ...(keep ? ['--perf-basic-prof'] : [])]
    const args = ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${join(dir, 'out')}.%p`, process.execPath, ...flags, self, '--child', `--dist=${dist}`, `--bytes=${bytes}`, `--shape=${SHAPE}`, `--step=${STEP}`, `--warm=${WARM}`, `--n=${n}`]
    execFileSync('valgrind', args, { cwd: dir, stdio: 'ignore', timeout: 30 * 60_000, env: { ...process.env, ...launcherEnv(cli) } })
    const file = readdirSync(dir).find((f) => f.startsWith('out.') && f.endsWith('-01'))
    const text = readFileSync(join(dir, file), 'utf8')
    const ir = Number(/\n(?:totals|summary): (\d+)/.exec(text)[1])
    const pid = /^out\.(\d+)-01$/.exec(file)[1]
    for (const f of readdirSync(dir)) rmSync(join(dir, f))
    return { ir, text: keep ? text : null, pid }
  }
  try {
    for (const bytes of arg('bytes', '32768,131072').split(',').map(Number)) {
      const row = { bytes, shape: SHAPE, step: STEP }
      for (const dist of dists) row[dist] = Math.round((count(dist, bytes, COUNT, false).ir - count(dist, bytes, 0, false).ir) / COUNT)
      console.log(JSON.stringify(row))
      if (names > 0) printNames(count(dists[0], bytes, COUNT, true), count(dists[0], bytes, 0, true), names)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Self instructions by function name: a dump's per-address costs summed over the JIT map's ranges (or callgrind's own names). */
function selfByName(run) {
  const mapFile = join(tmpdir(), `perf-${run.pid}.map`)
  // In the order written: code that moved or was compiled again is named by the newest entry covering it.
  const ranges = readFileSync(mapFile, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [start, size, ...rest] = line.split(' ')
    const start_ = BigInt(`0x${start}`)
    // The tier mark (~ interpreted, ^ baseline, + Maglev, * TurboFan) dropped: one name for a function at every tier.
    return [start_, start_ + BigInt(`0x${size}`), rest.join(' ').replace(/^JS:[~^+*]*'?/, 'JS:')]
  })
  rmSync(mapFile)
  const named = new Map()
  const nameOf = (fn) => {
    const hex = /^0x([0-9a-f]+)/.exec(fn)
    if (hex === null) return fn.replace(/'\d+$/, '')
    const at = BigInt(`0x${hex[1]}`)
    if (!named.has(at)) {
      let name = 'unnamed JIT code'
      for (let i = ranges.length - 1; i >= 0; i--) {
        if (at >= ranges[i][0] && at < ranges[i][1]) {
          name = ranges[i][2]
          break
        }
      }
      named.set(at, name)
    }
    return named.get(at)
  }
  const totals = new Map()
  const fnNames = new Map()
  let current = null
  let inCall = false
  for (const line of run.text.split('\n')) {
    const fn = /^(c?)fn=\((\d+)\)(?: (.*))?$/.exec(line)
    if (fn !== null) {
      if (fn[3] !== undefined) fnNames.set(fn[2], nameOf(fn[3].trim()))
      if (fn[1] === '') current = fnNames.get(fn[2])
      continue
    }
    if (line.startsWith('calls=')) {
      inCall = true
      continue
    }
    const cost = /^[+-]?\d+|^\*|^0x/.test(line) ? line.trim().split(/\s+/) : null
    if (cost === null || current === null) continue
    if (inCall) {
      inCall = false
      continue
    }
    totals.set(current, (totals.get(current) ?? 0) + Number(cost[cost.length - 1]))
  }
  return totals
}

function printNames(counted, idle, top) {
  const with_ = selfByName(counted)
  const without = selfByName(idle)
  const rows = [...with_].map(([name, ir]) => [name, (ir - (without.get(name) ?? 0)) / COUNT]).sort((x, y) => y[1] - x[1]).slice(0, top)
  for (const [name, ir] of rows) console.log(`  ${Math.round(ir).toString().padStart(8)}  ${name}`)
}
