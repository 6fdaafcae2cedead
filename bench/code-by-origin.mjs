// Which code the proxy's main thread runs that the floor's does not, by origin and by function: reads the callgrind
// dumps bench/open-instructions.mjs kept (--keep=DIR --names) and names JIT code from each side's perf map. For each
// side, over one phase (the dump's label, e.g. open-10): distinct 64-byte code lines and instructions, summed by where
// the code comes from (a dist/ file, a package, Node's own JavaScript, a native object) and by function (JIT code
// by name without its position, both tiers together), proxy less floor, largest first.
//   node bench/open-instructions.mjs --open=10 --keep=DIR --names && node bench/code-by-origin.mjs --dir=DIR [--phase=open-10] [--top=40]
// Measured (this build, open-10 after 4 settling rounds, main thread): 13,348 code lines against the floor's 9,574
// (+236 KiB); of the extra, Node's own binary +1,945 lines (+655 of them TurboFan's main-thread steps: functions still
// being optimized in the open phase), dist/budget/redis/store.js +708 (its lone and batched paths both run, several in
// both tiers: settleWith, reserveWith, flushTurn in Sparkplug code), pipeline.js +282, forward.js +233, script-args.js +170.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** A perf map's entries (`start size name` a line, hex) sorted by start; later entries of the same start win. */
export function readPerfMap(text) {
  const entries = []
  for (const line of text.split('\n')) {
    const [start, size, ...name] = line.split(' ')
    if (name.length > 0) entries.push({ start: Number.parseInt(start, 16), end: Number.parseInt(start, 16) + Number.parseInt(size, 16), name: name.join(' ') })
  }
  return entries.sort((a, b) => a.start - b.start)
}

/** The name of the map's entry that holds `address` (the nearest start at or below it), or null. */
export function nameAt(entries, address) {
  let lo = 0
  let hi = entries.length - 1
  let at = -1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (entries[mid].start <= address) (at = mid), (lo = mid + 1)
    else hi = mid - 1
  }
  return at >= 0 && address < entries[at].end ? entries[at].name : null
}

/**
 * A callgrind dump's functions: key (`JIT <name>` for code with no object, named by `entries`; `<object file> <fn>`
 * otherwise) → { ir: own instructions, lines: the set of 64-byte code lines run }. The cost line after a `calls=` line
 * is the call's inclusive cost, not an instruction's own: skipped.
 */
export function readDump(text, entries) {
  const fns = new Map()
  let object = ''
  let fn = ''
  let afterCall = false
  for (const line of text.split('\n')) {
    if (line.startsWith('ob=')) object = line.slice(3).trim()
    else if (line.startsWith('fn=')) fn = line.slice(3).trim()
    else if (line.startsWith('calls=')) afterCall = true
    else if (line.startsWith('0x')) {
      if (afterCall) {
        afterCall = false
        continue
      }
      const [at, , cost] = line.split(' ')
      const address = Number.parseInt(at, 16)
      const key = object === '???' ? `JIT ${nameAt(entries, address) ?? fn}` : `${object.slice(object.lastIndexOf('/') + 1)} ${fn}`
      let entry = fns.get(key)
      if (entry === undefined) fns.set(key, (entry = { ir: 0, lines: new Set() }))
      entry.ir += Number(cost ?? 0)
      entry.lines.add(Math.floor(address / 64))
    }
  }
  return fns
}

/** Where a function's code comes from: `dist/<file>`, a package's name, `node:` (Node's JavaScript), `JIT (no file)`, or a native object's file name. */
export function originOf(key) {
  if (!key.startsWith('JIT ')) return `native ${key.slice(0, key.indexOf(' '))}`
  const file = /\s(\S+):\d+:\d+$/.exec(key)?.[1]
  if (file === undefined) return 'JIT (no file)'
  if (file.includes('node_modules/')) return `JIT ${file.slice(file.lastIndexOf('node_modules/') + 13).split('/')[0]}`
  if (file.startsWith('node:')) return 'JIT node:'
  const dist = file.lastIndexOf('dist/')
  return dist >= 0 ? `JIT ${file.slice(dist)}` : `JIT ${file}`
}

/** A function's key without its script position (both tiers of one function, and its closures, together). */
export const functionOf = (key) => key.replace(/\s\S+:\d+:\d+$/, '')

/** `fns` summed by `group(key)`: { ir, lines } (a line run by two functions of a group counted once each). */
export function sumBy(fns, group) {
  const out = new Map()
  for (const [key, { ir, lines }] of fns) {
    const name = group(key)
    const sum = out.get(name) ?? { ir: 0, lines: 0 }
    sum.ir += ir
    sum.lines += lines.size
    out.set(name, sum)
  }
  return out
}

/** Rows of proxy less floor by group, the largest difference in code lines first. */
export function diffRows(proxy, floor) {
  const zero = { ir: 0, lines: 0 }
  return [...new Set([...proxy.keys(), ...floor.keys()])]
    .map((name) => ({ name, proxy: proxy.get(name) ?? zero, floor: floor.get(name) ?? zero }))
    .sort((a, b) => b.proxy.lines - b.floor.lines - (a.proxy.lines - a.floor.lines))
}

/** The main thread's dump (`NAME.PID.N-01`) of `side` labelled `dump <phase>`, and that process's perf map. */
function findSide(dir, side, phase) {
  for (const file of readdirSync(dir).filter((f) => f.startsWith(`${side}.`) && f.endsWith('-01'))) {
    const text = readFileSync(join(dir, file), 'utf8')
    if (!text.slice(0, 2000).includes(`\ndesc: Trigger: dump ${phase}\n`)) continue
    const pid = file.split('.')[1]
    let map = ''
    try {
      map = readFileSync(join(dir, `perf-${pid}.map`), 'utf8')
    } catch {
      // Kept without --names: JIT code stays nameless addresses.
    }
    return readDump(text, readPerfMap(map))
  }
  throw new Error(`no ${side} main-thread dump of phase ${phase} in ${dir}`)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
  const dir = arg('dir', null)
  if (dir === null) throw new Error('--dir=DIR: the directory bench/open-instructions.mjs --keep=DIR --names wrote')
  const phase = arg('phase', 'open-10')
  const top = Number(arg('top', '40'))
  const proxy = findSide(dir, 'proxy', phase)
  const floor = findSide(dir, 'floor', phase)
  const total = (fns) => [...fns.values()].reduce((s, f) => ({ ir: s.ir + f.ir, lines: s.lines + f.lines.size }), { ir: 0, lines: 0 })
  const [p, f] = [total(proxy), total(floor)]
  const row = (r) => `${String(r.proxy.lines - r.floor.lines).padStart(6)}  ${String(r.proxy.lines).padStart(6)} ${String(r.floor.lines).padStart(6)}  ${String(r.proxy.ir).padStart(11)} ${String(r.floor.ir).padStart(11)}  ${r.name}`
  const head = '  diff   proxy  floor  (code lines)   proxy Ir    floor Ir  (over the phase)'
  console.log(`phase ${phase}: code lines proxy ${p.lines} (${Math.round((p.lines * 64) / 1024)} KiB), floor ${f.lines} (${Math.round((f.lines * 64) / 1024)} KiB); instructions ${p.ir} against ${f.ir}`)
  console.log(`by origin\n${head}\n${diffRows(sumBy(proxy, originOf), sumBy(floor, originOf)).map(row).join('\n')}`)
  console.log(`by function, top ${top}\n${head}\n${diffRows(sumBy(proxy, functionOf), sumBy(floor, functionOf)).slice(0, top).map(row).join('\n')}`)
}
