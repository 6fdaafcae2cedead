// Groups V8 trace entries (`name (reason)`) by where a function of that name is defined: `ours` (dist/), `undici`,
// `deps` (another runtime dependency of package.json, or one of Fastify's or ioredis's own), else `node`. A name
// defined in more than one counts in the first; a heuristic for reading a trace, not a proof.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './procs.mjs'

const DEPS = ['fastify', 'find-my-way', 'avvio', 'light-my-request', 'fast-json-stringify', '@fastify', 'ioredis', '@ioredis', 'denque', 'pino', 'pino-std-serializers', 'sonic-boom', 'thread-stream', 'fast-redact', 'js-tiktoken', 'prom-client', 'zod', 'abstract-logging', 'process-warning', 'rfdc', 'toad-cache', 'fast-querystring', 'ret', 'safe-regex2']

/** The text of every .js file under `dir` (none when it does not exist). */
function sources(dir) {
  let text = ''
  let entries
  try {
    entries = readdirSync(dir)
  } catch {
    return text
  }
  for (const entry of entries) {
    const path = join(dir, entry)
    if (entry === 'node_modules' || entry === 'test' || entry === 'types') continue
    const stat = statSync(path)
    if (stat.isDirectory()) text += sources(path)
    else if (/\.(c|m)?js$/.test(entry)) text += readFileSync(path, 'utf8')
  }
  return text
}

let places = null
const definedIn = (text, name) => {
  const id = name.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&').replace(/^#/, '#?')
  return new RegExp(`(function\\*? ${id}\\b|class ${id}\\b|(^|[\\s;{,])(async |static |get |set )*${id}\\s*\\([^)]*\\)\\s*\\{|\\b${id}\\s*[=:]\\s*(async )?(function|\\())`, 'm').test(text)
}

/** `{ ours: { 'name (reason)': count }, undici: …, deps: …, node: … }` for `entries`. */
export function groupNames(entries) {
  places ??= [
    ['ours', sources(join(ROOT, 'dist'))],
    ['undici', sources(join(ROOT, 'node_modules/undici/lib'))],
    ['deps', DEPS.map((d) => sources(join(ROOT, 'node_modules', d))).join('\n')],
  ]
  const groups = { ours: {}, undici: {}, deps: {}, node: {} }
  for (const entry of entries) {
    const name = entry.slice(0, entry.indexOf(' ('))
    const place = name === '(anonymous)' ? 'node' : (places.find(([, text]) => definedIn(text, name))?.[0] ?? 'node')
    groups[place][entry] = (groups[place][entry] ?? 0) + 1
  }
  return groups
}
