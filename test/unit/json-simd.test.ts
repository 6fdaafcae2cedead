import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { holdBody, MAX_HELD_BYTES, stringEnd } from '../../src/http/json-simd.js'

// Issue 12: the wasm walk over a string must end where the scan's JS walk ends it, a byte at a time: at every
// position modulo its sixteen-byte loads, at a body's end whatever its length, over whatever the memory held before.

const HEX = new Set([...'0123456789abcdefABCDEF'].map((c) => c.charCodeAt(0)))
const SIMPLE = new Set([...'"\\/bfnrt'].map((c) => c.charCodeAt(0)))

/** stringEnd's answer for the string whose content starts at `k`, a byte at a time. */
function expectedEnd(raw: Buffer, k: number): number {
  let escaped = 0
  while (k < raw.length) {
    const c = raw[k] as number
    if (c === 0x22) return 2 * k + escaped
    if (c < 0x20) return -1
    if (c !== 0x5c) {
      k++
      continue
    }
    escaped = 1
    const next = raw[k + 1]
    if (next !== undefined && SIMPLE.has(next)) k += 2
    else if (next === 0x75 && [2, 3, 4, 5].every((d) => HEX.has(raw[k + d] ?? -1))) k += 6
    else return -1
  }
  return -1
}

/** The end stringEnd gives for `raw`'s string from `k`, `raw` held afresh. */
function endOf(raw: Buffer, k: number): number {
  expect(holdBody(raw, 0, 0)).not.toBe(0)
  return stringEnd(k, raw.length)
}

const piece = fc.oneof(
  fc.integer({ min: 0, max: 40 }).map((n) => Buffer.from('abcdefghijklmnopqrstuvwxyz0123456789ABCD'.slice(0, n))),
  fc.constantFrom(...['"', '\\"', '\\\\', '\\/', '\\n', '\\u00e9', '\\uABcd', '\\x', '\\u12G4', '\\u12', '\\', '\\U0041'].map((e) => Buffer.from(e))),
  fc.constantFrom(0x00, 0x09, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff).map((b) => Buffer.from([b])),
)
const body = fc.array(piece, { maxLength: 12 }).map((pieces) => Buffer.concat(pieces))

describe('wasm string walk', () => {
  it('ends each string where a byte-at-a-time walk ends it, from every start', () => {
    fc.assert(
      fc.property(body, (raw) => {
        holdBody(raw, 0, 0)
        const starts = Array.from({ length: raw.length + 1 }, (_, k) => k)
        expect(starts.map((k) => stringEnd(k, raw.length))).toEqual(starts.map((k) => expectedEnd(raw, k)))
      }),
      { numRuns: 4_000, seed: 12 },
    )
  })

  it('finds a quote, backslash or control byte at every position modulo 16, in bodies of every length modulo 16', () => {
    for (const special of [0x22, 0x00, 0x1f, 0x5c]) {
      for (let length = 1; length <= 50; length++) {
        for (let at = 0; at < length; at++) {
          const raw = Buffer.alloc(length, 0x61)
          raw[at] = special
          for (const k of [0, at, Math.max(0, at - 15)]) expect(endOf(raw, k), `${special} at ${at} of ${length} from ${k}`).toBe(expectedEnd(raw, k))
        }
      }
    }
  })

  it('tells every byte value apart at every lane: only a quote, a backslash and a control byte stop the walk', () => {
    for (let byte = 0; byte < 256; byte++) {
      for (let at = 0; at < 18; at++) {
        const raw = Buffer.alloc(at + 5, 0x61)
        raw[at] = byte
        raw[at + 4] = 0x22
        expect(endOf(raw, 0), `${byte} at ${at}`).toBe(expectedEnd(raw, 0))
      }
    }
  })

  it('reads on past an escape at every lane, whatever follows it in the same sixteen bytes or the next', () => {
    // An escape ending inside a load's sixteen bytes clears its lanes from the mask: the escaped quote or backslash
    // must not be met, and what follows it, in the same sixteen or past them, must be.
    const escapes = ['\\n', '\\"', '\\\\', '\\/', '\\u00e9', '\\uD83D']
    const thens = ['"', '\\"', '\\n', '\\u0041', '\\x', '\\', '\x01', '\x1f']
    for (const escape of escapes) {
      for (const then of thens) {
        for (let at = 0; at < 34; at++) {
          for (let gap = 0; gap < 20; gap++) {
            const raw = Buffer.from(`${'a'.repeat(at)}${escape}${'b'.repeat(gap)}${then}${'c'.repeat(gap % 7)}"`, 'latin1')
            holdBody(raw, 0, 0)
            for (const k of [0, at % 16, at]) expect(stringEnd(k, raw.length), `${escape} at ${at}, ${then} ${gap} after, from ${k}`).toBe(expectedEnd(raw, k))
          }
        }
      }
    }
  })

  it('never ends a string on the bytes a longer body left past a shorter one\'s end', () => {
    const longer = Buffer.alloc(200, 0x22)
    for (let length = 0; length < 100; length++) {
      holdBody(longer, 0, 0)
      expect(endOf(Buffer.alloc(length, 0x61), 0)).toBe(-1)
      holdBody(longer, 0, 0)
      expect(endOf(Buffer.from(`${'a'.repeat(length)}\\`), 0)).toBe(-1)
    }
  })

  it('holds a body larger than its memory first held, and none larger than MAX_HELD_BYTES', () => {
    const raw = Buffer.alloc(MAX_HELD_BYTES, 0x61)
    raw[MAX_HELD_BYTES - 1] = 0x22
    expect(endOf(raw, 5)).toBe(2 * (MAX_HELD_BYTES - 1))
    expect(holdBody(Buffer.alloc(MAX_HELD_BYTES + 1), 0, 0)).toBe(0)
  })

  it('holds the largest body in the memory it made at first: never grown, so its buffer is never detached', async () => {
    // A module of its own: this file's other tests have held bodies of every size already.
    vi.resetModules()
    const simd = await import('../../src/http/json-simd.js')
    // A grown memory's old ArrayBuffer is detached, and V8 then checks every typed-array access in the process for it.
    const wasm = (globalThis as unknown as { WebAssembly: { Memory: { prototype: { grow(pages: number): number } } } }).WebAssembly
    const grow = vi.spyOn(wasm.Memory.prototype, 'grow')
    try {
      simd.holdBody(Buffer.from('"a"'), 0, 0)
      const raw = Buffer.alloc(MAX_HELD_BYTES, 0x61)
      raw[MAX_HELD_BYTES - 1] = 0x22
      expect(simd.holdBody(raw, 0, 0)).not.toBe(0)
      expect(simd.stringEnd(0, raw.length)).toBe(2 * (MAX_HELD_BYTES - 1))
      expect(grow).not.toHaveBeenCalled()
    } finally {
      grow.mockRestore()
    }
  })

  it('keeps a hold until another is made, then recopies from where it is asked', () => {
    const first = Buffer.from(`${'a'.repeat(40)}"${'b'.repeat(40)}"`)
    const second = Buffer.from(`${'c'.repeat(60)}"`)
    const hold = holdBody(first, 0, 0)
    expect(holdBody(first, 0, hold)).toBe(hold)
    expect(stringEnd(0, first.length)).toBe(80)
    const other = holdBody(second, 0, 0)
    expect(other).not.toBe(hold)
    expect(stringEnd(0, second.length)).toBe(120)
    // The first body's bytes from 41 on are recopied; what lies before is the second's.
    expect(holdBody(first, 41, hold)).toBe(hold)
    expect(stringEnd(41, first.length)).toBe(2 * 81)
  })
})
