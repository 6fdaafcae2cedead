// Where one JIT function's instructions go, by source line: callgrind's count of each instruction run (--dump-instr=yes)
// joined with V8's listing of that function's TurboFan code (--print-opt-code: each instruction's pc offset; its source
// position table, whose entry at or before an offset gives the script offset the instruction came from; with
// --print-opt-source, the functions inlined into it and where each one's source starts). An offset is charged to the
// innermost listed function whose source holds it and shown as that file's line (read from disk where the script is a
// file) or as the function and the offset within it. Each optimized code of the function (OSR, recompiles) is joined by
// its own addresses; the run adds --no-compact-code-space so code is never moved after it is listed.
//   node bench/jit-positions.mjs --fn=NAME [--top=30] [--by=line|position] [--per=N] [--keep=DIR] -- [node flags…] SCRIPT [args…]
//   node bench/jit-positions.mjs --fn=NAME --listing=FILE --dump=FILE [--top=…] [--by=…] [--per=…]   (a kept run's files)
// --per=N divides every count by N (the calls of the measured work, e.g. scans), --keep=DIR keeps the listing
// (DIR/listing.txt) and the main thread's dump (DIR/callgrind.out). Counts are the whole run's, warm-up included: read
// the shares, or difference two runs of different lengths by line. Example: the validating scan's state machine,
//   node bench/jit-positions.mjs --fn=scanSlice --per=1000 -- bench/agent-read-instructions.mjs --child --step=scan --bytes=131072 --warm=1000 --n=0
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The TurboFan codes named `fn` in a --print-opt-code listing (with --print-opt-source): each one's optimization id,
 * first instruction's address, size in bytes, source position table ({ pc, position }, by pc) and the functions whose
 * source it printed for that optimization id ({ script, name, start, end }: script offsets, the function itself first).
 */
export function readListing(text, fn) {
  const sources = new Map()
  const codes = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const head = /^--- FUNCTION SOURCE \((.*)\) id\{(\d+),(-?\d+)\} start\{(\d+)\} ---$/.exec(lines[i])
    if (head !== null) {
      let end = i + 1
      while (end < lines.length && lines[end] !== '--- END ---') end++
      const source = lines.slice(i + 1, end).join('\n')
      const at = head[1].lastIndexOf(':')
      const start = Number(head[4])
      const list = sources.get(head[2]) ?? []
      list.push({ script: head[1].slice(0, at), name: head[1].slice(at + 1), inlined: head[3] !== '-1', start, end: start + source.length })
      sources.set(head[2], list)
      i = end
      continue
    }
    if (lines[i] !== '--- Optimized code ---') continue
    const code = { id: null, name: null, kind: null, start: null, size: 0, positions: [] }
    for (i++; i < lines.length && lines[i] !== '--- End code ---'; i++) {
      const field = /^(optimization_id|name|kind) = (.*)$/.exec(lines[i])
      if (field !== null) code[field[1] === 'optimization_id' ? 'id' : field[1]] = field[2]
      const size = /^Instructions \(size = (\d+)\)$/.exec(lines[i])
      if (size !== null) {
        code.size = Number(size[1])
        code.start = Number.parseInt(/^0x([0-9a-f]+)/.exec(lines[i + 1])[1], 16)
      }
      if (lines[i] === 'Source positions:') {
        for (i += 2; i < lines.length && lines[i].trim() !== ''; i++) {
          const [pc, position] = lines[i].trim().split(/\s+/)
          code.positions.push({ pc: Number.parseInt(pc, 16), position: Number(position) })
        }
      }
    }
    if (code.name === fn && code.start !== null) codes.push(code)
  }
  for (const code of codes) {
    code.positions.sort((a, b) => a.pc - b.pc)
    code.functions = (sources.get(code.id) ?? []).sort((a, b) => Number(a.inlined) - Number(b.inlined))
  }
  return codes
}

/**
 * Each instruction's own count (the first event, Ir) from a callgrind dump made with --dump-instr=yes: addresses
 * absolute (0x…), relative (+n, -n) or repeated (*), compressed or not; a call's line (the callee's inclusive cost) skipped.
 */
export function readInstructionCosts(text) {
  const costs = new Map()
  let columns = 1
  let last = 0
  let skipNext = false
  for (const line of text.split('\n')) {
    if (line.startsWith('positions:')) {
      columns = line.slice(10).trim().split(/\s+/).length
      continue
    }
    if (line.startsWith('calls=')) {
      skipNext = true
      continue
    }
    if (!/^(0x[0-9a-fA-F]+|[+-]\d+|\*)(\s|$)/.test(line)) continue
    const parts = line.trim().split(/\s+/)
    const first = parts[0]
    const address = first === '*' ? last : first.startsWith('0x') ? Number.parseInt(first, 16) : last + Number(first)
    last = address
    if (skipNext) {
      skipNext = false
      continue
    }
    const ir = Number(parts[columns] ?? 0)
    costs.set(address, (costs.get(address) ?? 0) + ir)
  }
  return costs
}

/** The entry of a code's position table at or before `pc` (binary search), or null before its first entry. */
function positionAt(positions, pc) {
  let lo = 0
  let hi = positions.length - 1
  let found = null
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (positions[mid].pc <= pc) {
      found = positions[mid]
      lo = mid + 1
    } else hi = mid - 1
  }
  return found
}

/**
 * Joins `costs` (readInstructionCosts) to `codes` (readListing): Ir by { function, script, position } (position -1:
 * the code's prologue, before its table's first entry; the function null where none listed holds the offset),
 * largest first, and the Ir joined to each code. An offset is charged to the innermost (shortest) listed source holding it.
 */
export function joinPositions(codes, costs) {
  const rows = new Map()
  const perCode = []
  for (const code of codes) {
    let joined = 0
    for (const [address, ir] of costs) {
      if (address < code.start || address >= code.start + code.size) continue
      joined += ir
      const entry = positionAt(code.positions, address - code.start)
      const position = entry === null ? -1 : entry.position
      let owner = null
      for (const f of code.functions) if (position >= f.start && position < f.end && (owner === null || f.end - f.start < owner.end - owner.start)) owner = f
      const key = `${owner?.script ?? ''}\0${owner?.name ?? ''}\0${position}`
      const row = rows.get(key) ?? { script: owner?.script ?? null, name: owner?.name ?? null, start: owner?.start ?? 0, position, ir: 0 }
      row.ir += ir
      rows.set(key, row)
    }
    perCode.push({ id: code.id, kind: code.kind, size: code.size, ir: joined })
  }
  return { rows: [...rows.values()].sort((a, b) => b.ir - a.ir), perCode }
}

/** `offset` in `text` as { line, column } (both from 1). */
export function lineOf(text, offset) {
  let line = 1
  let from = 0
  for (let at = text.indexOf('\n'); at !== -1 && at < offset; at = text.indexOf('\n', at + 1)) {
    line++
    from = at + 1
  }
  return { line, column: offset - from + 1 }
}

/** A position row's place: `file:line:column` when `read(script)` gives the script's text, else `name+offset`. */
export function placeOf(row, read) {
  if (row.position < 0) return '(prologue)'
  if (row.script === null) return `? offset ${row.position}`
  const text = read(row.script)
  if (text === null) return `${row.name}+${row.position - row.start}`
  const { line, column } = lineOf(text, row.position)
  return `${row.script.replace(/^.*\//, '')}:${line}:${column}`
}

/** Rows summed by line (`by` 'line') or kept by position ('position'): { place, name, ir, text } largest first. */
export function summarize(rows, read, by = 'line') {
  const out = new Map()
  for (const row of rows) {
    let place = placeOf(row, read)
    if (by === 'line') place = place.replace(/^([^:]+:\d+):\d+$/, '$1')
    const entry = out.get(place) ?? { place, name: row.name, ir: 0, text: '' }
    entry.ir += row.ir
    if (entry.text === '' && row.script !== null && row.position >= 0) {
      const text = read(row.script)
      if (text !== null) entry.text = text.split('\n')[lineOf(text, row.position).line - 1].trim()
    }
    out.set(place, entry)
  }
  return [...out.values()].sort((a, b) => b.ir - a.ir)
}

/** A script's text by the name V8 gave it (a path or a file: URL), or null. */
function readScript(script) {
  try {
    return readFileSync(script.startsWith('file:') ? fileURLToPath(script) : script, 'utf8')
  } catch {
    return null
  }
}

function main() {
  const split = process.argv.indexOf('--')
  const own = split < 0 ? process.argv.slice(2) : process.argv.slice(2, split)
  const arg = (name, fallback) => own.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
  const fn = arg('fn', null)
  if (fn === null) throw new Error('usage: node bench/jit-positions.mjs --fn=NAME [--top=30] [--by=line|position] [--per=N] [--keep=DIR] -- [node flags…] SCRIPT [args…]')
  const top = Number(arg('top', '30'))
  const per = Number(arg('per', '1'))
  const by = arg('by', 'line')
  let listing
  let dump
  if (arg('listing', null) !== null) {
    listing = readFileSync(arg('listing'), 'utf8')
    dump = readFileSync(arg('dump'), 'utf8')
  } else {
    if (split < 0) throw new Error('give the node arguments after --')
    const dir = mkdtempSync(join(tmpdir(), 'jit-positions-'))
    try {
      const flags = ['--print-opt-code', '--print-opt-source', `--print-opt-code-filter=${fn}`, '--no-compact-code-space']
      const args = ['--tool=callgrind', '--dump-instr=yes', '--dump-line=no', '--separate-threads=yes', `--callgrind-out-file=${join(dir, 'out')}.%p`, process.execPath, ...flags, ...process.argv.slice(split + 1)]
      listing = execFileSync('valgrind', args, { maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'], timeout: 60 * 60_000 }).toString('utf8')
      dump = readFileSync(join(dir, readdirSync(dir).find((f) => f.startsWith('out.') && f.endsWith('-01'))), 'utf8')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    const keep = arg('keep', null)
    if (keep !== null) {
      mkdirSync(keep, { recursive: true })
      writeFileSync(join(keep, 'listing.txt'), listing)
      writeFileSync(join(keep, 'callgrind.out'), dump)
    }
  }
  const codes = readListing(listing, fn)
  if (codes.length === 0) throw new Error(`no TurboFan code named ${fn} in the listing`)
  const { rows, perCode } = joinPositions(codes, readInstructionCosts(dump))
  const total = perCode.reduce((a, c) => a + c.ir, 0)
  const scaled = (ir) => Math.round(ir / per).toLocaleString('en-US')
  console.log(`${fn}: ${codes.length} optimized codes, ${scaled(total)} instructions${per === 1 ? '' : ` per ${per.toLocaleString('en-US')}`} (${perCode.map((c) => `opt ${c.id} ${c.size} B: ${scaled(c.ir)}`).join('; ')})`)
  for (const row of summarize(rows, readScript, by).slice(0, top)) {
    const share = total === 0 ? 0 : (100 * row.ir) / total
    console.log(`${scaled(row.ir).padStart(12)} ${share.toFixed(1).padStart(5)}%  ${row.place.padEnd(24)} ${(row.name ?? '').padEnd(18)} ${row.text.slice(0, 90)}`)
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main()
