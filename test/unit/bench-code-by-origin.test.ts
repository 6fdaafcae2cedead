import { describe, expect, it } from 'vitest'
import { diffRows, functionOf, nameAt, originOf, readDump, readPerfMap, sumBy } from '../../bench/code-by-origin.mjs'

// Issue 12: the open loop's extra CPU is read as extra code run (callgrind's code lines, proxy against floor); a
// call's inclusive cost counted as an instruction's own, or JIT code left unnamed, would point at the wrong code.

const map = readPerfMap(["1000 80 JS:*'handle /app/dist/proxy/pipeline.js:33:26", "2000 40 JS:^send /app/node_modules/ioredis/built/Redis.js:9:1", '3000 10 Builtins_X', ''].join('\n'))

// positions: instr line; events: Ir. Two JIT functions with no object (???), one native one; a call's cost line.
const dump = `events: Ir
ob=???
fl=???
fn=0x0000000000001000
0x1000 0 3
0x1004 0 2
0x1040 0 1
calls=1 0x2000
0x1044 0 500
0x1048 0 4
fn=0x0000000000002000
0x2000 0 7
ob=/usr/lib/libc.so.6
fl=./malloc.c
fn=malloc
0x76ab0 31 5
0x76af0 31 5
`

describe('code by origin', () => {
  it('names JIT code from the perf map, and nothing outside an entry', () => {
    expect(nameAt(map, 0x1000)).toBe("JS:*'handle /app/dist/proxy/pipeline.js:33:26")
    expect(nameAt(map, 0x107f)).toBe("JS:*'handle /app/dist/proxy/pipeline.js:33:26")
    expect(nameAt(map, 0x1080)).toBeNull()
    expect(nameAt(map, 0x0fff)).toBeNull()
  })

  it("counts each function's own instructions and 64-byte code lines, not a call's inclusive cost", () => {
    const fns = readDump(dump, map)
    const handle = fns.get("JIT JS:*'handle /app/dist/proxy/pipeline.js:33:26")
    expect(handle?.ir).toBe(3 + 2 + 1 + 4)
    expect(handle?.lines.size).toBe(2)
    expect(fns.get('JIT JS:^send /app/node_modules/ioredis/built/Redis.js:9:1')?.ir).toBe(7)
    expect(fns.get('libc.so.6 malloc')).toEqual({ ir: 10, lines: new Set([Math.floor(0x76ab0 / 64), Math.floor(0x76af0 / 64)]) })
  })

  it('groups by origin and by function, proxy less floor largest first', () => {
    const fns = readDump(dump, map)
    expect([...fns.keys()].map(originOf)).toEqual(['JIT dist/proxy/pipeline.js', 'JIT ioredis', 'native libc.so.6'])
    expect(functionOf("JIT JS:*'handle /app/dist/proxy/pipeline.js:33:26")).toBe("JIT JS:*'handle")
    const floor = readDump(dump.replace(/fn=0x0+1000[\s\S]*?(?=fn=0x0+2000)/, ''), map)
    const rows = diffRows(sumBy(fns, originOf), sumBy(floor, originOf))
    expect(rows[0]).toEqual({ name: 'JIT dist/proxy/pipeline.js', proxy: { ir: 10, lines: 2 }, floor: { ir: 0, lines: 0 } })
    expect(rows.slice(1).map((r) => r.proxy.lines - r.floor.lines)).toEqual([0, 0])
  })
})
