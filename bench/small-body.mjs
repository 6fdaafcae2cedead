// Instructions one read of a small request body costs on the event loop (`readParsedBody` of
// src/proxy/request-body.ts: its JSON.parse, its repeated-key check and word report), counted by callgrind, which
// machine load does not move: per build and body, node reads it --warm times (optimized), then --count more; the count
// is the difference of two runs' main-thread instructions (with and without the --count reads) over --count.
// Bodies: the bench's one-line chat, a short chat of a system and a user turn, and one with a URL (a colon in a string).
//   npm run build && node bench/small-body.mjs [--dist=dist] [--other=OLD/dist] [--warm=100000] [--count=50000] [--bodies=one-line,…]
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const WARM = Number(arg('warm', '100000'))
const COUNT = Number(arg('count', '50000'))

const BODIES = {
  'one-line': JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 }),
  'two-turn': JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Name three primes.' }], temperature: 0.2, max_tokens: 64, stream: false }),
  url: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Summarize https://example.com/a' }], max_tokens: 64 }),
}

if (process.argv.includes('--child')) {
  const { readParsedBody } = await import(pathToFileURL(join(arg('dist', 'dist'), 'proxy/request-body.js')).href)
  const raw = Buffer.from(BODIES[arg('body', 'one-line')])
  let sink = 0
  const n = WARM + Number(arg('n', '0'))
  for (let i = 0; i < n; i++) sink += readParsedBody(raw, null).raw.length
  process.exitCode = sink > 0 ? 0 : 1
} else {
  const dists = [resolve(arg('dist', 'dist')), ...(arg('other', null) === null ? [] : [resolve(arg('other'))])]
  const dir = mkdtempSync(join(tmpdir(), 'small-body-'))
  const self = fileURLToPath(import.meta.url)
  /** Main-thread instructions of one child run. */
  const count = (dist, body, n) => {
    execFileSync('valgrind', ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${join(dir, 'out')}.%p`, process.execPath, self, '--child', `--dist=${dist}`, `--body=${body}`, `--warm=${WARM}`, `--n=${n}`], { stdio: 'ignore', timeout: 20 * 60_000 })
    const file = readdirSync(dir).find((f) => f.startsWith('out.') && f.endsWith('-01'))
    const ir = Number(/\n(?:totals|summary): (\d+)/.exec(readFileSync(join(dir, file), 'utf8'))[1])
    for (const f of readdirSync(dir)) rmSync(join(dir, f))
    return ir
  }
  try {
    for (const body of arg('bodies', Object.keys(BODIES).join(',')).split(',')) {
      const row = { body, bytes: Buffer.byteLength(BODIES[body]) }
      for (const dist of dists) row[dist] = Math.round((count(dist, body, COUNT) - count(dist, body, 0)) / COUNT)
      console.log(JSON.stringify(row))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
