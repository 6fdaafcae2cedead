import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { byteTable, createWordSet } from '../../src/http/json-keys.js'

// Issue 12: the JSON scans' byte tables are Int8Arrays. Node sets the prototype of each Uint8Array its C++ side makes
// a Buffer of (every request body chunk), which leaves Uint8Array's map unstable: TurboFan then checks the map of a
// constant Uint8Array table at every load (+2.1 % of the validating scan's state machine at 128 KiB); an Int8Array's
// map stays stable and is not checked.

// The modules whose walks read byte tables in their loops (json-simd.ts's Uint8Array is the wasm memory, set, not read by index).
const SCANS = ['json-scan.ts', 'json-keys.ts', 'json-members.ts', 'json-pick.ts']

describe('byte tables', () => {
  it('are Int8Arrays of the size asked, zeroed', () => {
    const table = byteTable()
    expect(table).toBeInstanceOf(Int8Array)
    expect(table.length).toBe(256)
    expect(table.every((v) => v === 0)).toBe(true)
    expect(byteTable(3 * 256).length).toBe(768)
  })

  it("hold a word set's heads and tails", () => {
    const words = createWordSet(['image_url', 'file'])
    expect(words.heads).toBeInstanceOf(Int8Array)
    expect(words.tails).toBeInstanceOf(Int8Array)
    expect(words.heads[9 * 256 + 'i'.charCodeAt(0)]).toBe(1)
    expect(words.tails[4 * 256 + 'e'.charCodeAt(0)]).toBe(1)
  })

  it.each(SCANS)('%s makes no Uint8Array table', (file) => {
    const source = readFileSync(new URL(`../../src/http/${file}`, import.meta.url), 'utf8')
    expect(source).not.toMatch(/new Uint8Array\(/)
  })
})
