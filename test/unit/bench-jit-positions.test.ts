import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { joinPositions, readInstructionCosts, readListing, summarize } from '../../bench/jit-positions.mjs'

// Issue 12: a JIT function's instructions are read by source line (the validating scan's state machine, scanSlice). An
// instruction charged to the wrong table entry, a call's inclusive cost counted as an instruction's own, or another
// optimized code's addresses joined would point at the wrong line.

const FIXTURES = join(import.meta.dirname, '../fixtures/bench')
const listing = readFileSync(join(FIXTURES, 'jit-listing.txt'), 'utf8')
const dump = readFileSync(join(FIXTURES, 'jit-callgrind.out'), 'utf8')
const source = readFileSync(join(FIXTURES, 'sum.js'), 'utf8')
const read = (script: string): string | null => (script === '/app/sum.js' ? source : null)

describe('jit positions', () => {
  it("reads each optimized code of the named function: its start, size, position table and its optimization's sources", () => {
    const codes = readListing(listing, 'add')
    expect(codes.map((c) => [c.id, c.start, c.size])).toEqual([
      ['0', 0x7f80d80040c0, 64],
      ['2', 0x7f80d8004300, 16],
    ])
    expect(codes[0]?.positions).toEqual([
      { pc: 0xb, position: 12 },
      { pc: 0x19, position: 29 },
      { pc: 0x30, position: 77 },
      { pc: 0x38, position: 33 },
    ])
    expect(codes[0]?.functions).toEqual([
      { script: '/app/sum.js', name: 'add', inlined: false, start: 12, end: 46 },
      { script: '/app/sum.js', name: '', inlined: true, start: 0, end: 86 },
      { script: '/app/sum.js', name: 'helper', inlined: true, start: 62, end: 86 },
    ])
  })

  it("counts each instruction's own cost, following relative and repeated addresses, never a call's inclusive cost", () => {
    const costs = readInstructionCosts(dump)
    expect(costs.get(0x7f80d80040d9)).toBe(5 + 1)
    expect(costs.has(0x7f80d80040f2)).toBe(false)
    expect(costs.get(0x7f80d80040fa)).toBe(11)
    expect([...costs.values()].reduce((a, b) => a + b, 0)).toBe(161)
  })

  it('charges an instruction to the table entry at or before it, in the innermost function holding it, per code', () => {
    const { rows, perCode } = joinPositions(readListing(listing, 'add'), readInstructionCosts(dump))
    expect(perCode.map((c) => [c.id, c.ir])).toEqual([
      ['0', 2 + 3 + 6 + 7 + 24],
      ['2', 23 + 29],
    ])
    expect(rows.map((r) => [r.name, r.position, r.ir])).toEqual([
      ['add', 29, 6 + 23 + 29],
      ['add', 33, 11 + 13],
      ['helper', 77, 7],
      ['add', 12, 3],
      [null, -1, 2],
    ])
  })

  it("sums by the script's line, or keeps line and column", () => {
    const { rows } = joinPositions(readListing(listing, 'add'), readInstructionCosts(dump))
    expect(summarize(rows, read).map((r) => [r.place, r.name, r.ir])).toEqual([
      ['sum.js:1', 'add', 85],
      ['sum.js:2', 'helper', 7],
      ['(prologue)', null, 2],
    ])
    expect(summarize(rows, read, 'position').slice(0, 3).map((r) => [r.place, r.ir])).toEqual([
      ['sum.js:1:30', 58],
      ['sum.js:1:34', 24],
      ['sum.js:2:31', 7],
    ])
    expect(summarize(rows, () => null, 'position')[0]?.place).toBe('add+17')
  })
})
