// Idle memory probe: starts each given build's proxy at once (one Redis, one fake upstream), sends each the
// memory scenario's 20 requests (10 plain, 10 streamed, one at a time), waits, and prints each one's RSS at
// start and idle, split by mapping (the node binary's code and read-only data, anonymous memory, malloc's heap)
// and the node binary's resident pages by ELF section (`readelf`; which built-in code or data a change pages in).
//   node bench/idle-probe.mjs --cli=dist/cli.js --cli=OTHER/dist/cli.js[::--flag,NAME=VALUE,… (node flags and environment for it alone)]
//        [--wait=60 (seconds after the last requests)] [--node-opt=FLAG]… [--env=NAME=VALUE]…
//        [--keep-logs=DIR (each proxy's log, and its smaps at start and at idle)] [--hold=SECONDS (keep them up after)]
import { closeSync, copyFileSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { burst, createPool } from './load.mjs'
import { createBenchKey, sleep, startBenchStack, startProxy } from './procs.mjs'
import { requestPair, streamBody } from './scenarios.mjs'

const { values: args } = parseArgs({ options: { cli: { type: 'string', multiple: true }, wait: { type: 'string', default: '60' }, 'node-opt': { type: 'string', multiple: true, default: [] }, env: { type: 'string', multiple: true, default: [] }, hold: { type: 'string', default: '0' }, 'keep-logs': { type: 'string' } } })
const CHAT_BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })

const stack = await startBenchStack('loopers-idle-probe-', { fake: { completionTokens: 16, chunks: 20, chunkDelayMs: 1, word: ' tok' } })
try {
  const key = await createBenchKey(stack.redis.url, 'idle-probe')
  const extraEnv = Object.fromEntries(args.env.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]))
  const proxies = []
  for (const [i, spec] of args.cli.entries()) {
    // PATH::--flag,NAME=VALUE: node flags and environment for this build alone (after the launcher's and --env's).
    const [cli, own = ''] = spec.split('::')
    const entries = own.split(',').filter(Boolean)
    const ownEnv = Object.fromEntries(entries.filter((e) => !e.startsWith('-')).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))
    const p = await startProxy({ pin: stack.pinning.used, redisUrl: stack.redis.url, upstreamUrl: stack.fake.url, dir: stack.dir, name: `p${i}`, cliPath: cli, nodeOptions: [...args['node-opt'], ...entries.filter((e) => e.startsWith('-'))], extraEnv: { ...extraEnv, ...ownEnv } })
    stack.started.push(p)
    proxies.push({ cli: spec, p, start: rss(p.pid) })
    if (args['keep-logs'] !== undefined) writeFileSync(`${args['keep-logs']}/p${i}.smaps.start`, readFileSync(`/proc/${p.pid}/smaps`))
  }
  for (const x of proxies) {
    const pool = createPool(x.p.url, 1)
    const reqs = [requestPair(key, CHAT_BODY).proxied, requestPair(key, streamBody()).proxied]
    let ok = 0
    for (let i = 0; i < 20; i++) ok += (await burst({ origin: x.p.url, requests: [reqs[i % 2]], pool })).ok
    if (ok !== 20) console.log(`!! ${x.cli}: ${ok} of 20 requests answered 2xx`)
    await pool.close()
  }
  await sleep(Number(args.wait) * 1000)
  for (const x of proxies) {
    console.log(`== ${x.cli} pid ${x.p.pid}: start ${x.start.toFixed(1)} idle ${rss(x.p.pid).toFixed(1)} MiB`)
    console.log(breakdown(x.p.pid))
    console.log(binarySections(x.p.pid))
    for (const line of readFileSync(x.p.logFile, 'utf8').split('\n')) if (line.includes('memory returned')) console.log('  ' + line.slice(0, 200))
  }
  if (args['keep-logs'] !== undefined) for (const [i, x] of proxies.entries()) {
    copyFileSync(x.p.logFile, `${args['keep-logs']}/p${i}.log`)
    writeFileSync(`${args['keep-logs']}/p${i}.smaps.idle`, readFileSync(`/proc/${x.p.pid}/smaps`))
  }
  if (Number(args.hold) > 0) {
    console.log('holding', proxies.map((x) => x.p.pid).join(' '))
    await sleep(Number(args.hold) * 1000)
  }
} finally {
  await stack.close()
}

function rss(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024
}

function breakdown(pid) {
  const text = readFileSync(`/proc/${pid}/smaps`, 'utf8')
  const groups = new Map()
  let name = null
  let perms = null
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head) {
      perms = head[1]
      name = head[2] || '[anon]'
      continue
    }
    const m = /^Rss:\s+(\d+) kB/.exec(line)
    if (m) {
      const k = `${name.replace(/^.*\//, '')} ${perms}`
      groups.set(k, (groups.get(k) ?? 0) + Number(m[1]))
    }
  }
  return [...groups].filter(([, kb]) => kb >= 256).sort((a, b) => b[1] - a[1]).map(([k, kb]) => `  ${(kb / 1024).toFixed(1).padStart(6)}  ${k}`).join('\n')
}

/** The node binary's resident pages (present bits of /proc/PID/pagemap) by the ELF section that holds them. */
function binarySections(pid) {
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').map((line) => line.split(/\s+/)).filter((f) => f[5] === process.execPath)
  if (maps.length === 0) return '  (node binary not mapped from process.execPath)'
  let sections
  try {
    sections = execFileSync('readelf', ['-SW', process.execPath], { encoding: 'utf8' }).split('\n')
      .map((line) => /\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line))
      .filter((m) => m !== null && Number.parseInt(m[3], 16) > 0)
      .map((m) => ({ name: m[1], start: Number.parseInt(m[2], 16), end: Number.parseInt(m[2], 16) + Number.parseInt(m[3], 16) }))
  } catch {
    return '  (readelf not found: no per-section split)'
  }
  const kb = new Map()
  let fd
  try {
    fd = openSync(`/proc/${pid}/pagemap`, 'r')
    for (const [range, , offset] of maps) {
      const [from, to] = range.split('-').map((h) => Number.parseInt(h, 16))
      const pages = (to - from) / 4096
      const entries = Buffer.alloc(pages * 8)
      readSync(fd, entries, 0, entries.length, (from / 4096) * 8)
      for (let i = 0; i < pages; i++) {
        if ((entries.readBigUInt64LE(i * 8) >> 63n) === 0n) continue
        const fileOffset = Number.parseInt(offset, 16) + i * 4096
        const name = sections.find((s) => fileOffset >= s.start && fileOffset < s.end)?.name ?? '(other)'
        kb.set(name, (kb.get(name) ?? 0) + 4)
      }
    }
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
  return [...kb].filter(([, n]) => n >= 256).sort((a, b) => b[1] - a[1]).map(([name, n]) => `  ${(n / 1024).toFixed(1).padStart(6)}  node ${name}`).join('\n')
}
