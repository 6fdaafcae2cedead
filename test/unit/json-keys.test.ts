import { describe, expect, it } from 'vitest'
import { findDuplicateKey, LINEAR_KEYS, MAX_SPARE_FRAMES, openFrame, seen, spareFrames } from '../../src/http/json-keys.js'
import { scanJson, type JsonScan } from '../../src/http/json-scan.js'

// Issue 12: an object's first LINEAR_KEYS keys are kept as offsets in a fixed-size array of its frame, frames are
// pooled across scans, and a key past that is kept in a Set: the repeated-key rule must hold at every key count, at
// every position of the repeat, and in a frame reused after any other.

// Whitespace JSON.parse skips, long enough that the validating scan walks the body's strings in wasm (json-simd.ts).
const HELD_PAD = ' '.repeat(1024)

/** The first repeated key of `text` by each scan: the key scan, the validating scan walked in JS and held in wasm. */
function repeats(text: string): (string | null)[] {
  const duplicateOf = (scan: JsonScan) => (scan.ok ? scan.keys.duplicate : scan.problem)
  return [findDuplicateKey(Buffer.from(text)) as string | null, duplicateOf(scanJson(Buffer.from(text), null) as JsonScan), duplicateOf(scanJson(Buffer.from(HELD_PAD + text), null) as JsonScan)]
}

const object = (keys: readonly string[]) => `{${keys.map((key, i) => `"${key}":${i}`).join(',')}}`
const keys = (count: number) => Array.from({ length: count }, (_, i) => `k${i}`)

describe('repeated keys and the frames that hold them', () => {
  it('finds a repeat of every key at every later position, in objects around LINEAR_KEYS keys', () => {
    for (const count of [1, 2, LINEAR_KEYS - 1, LINEAR_KEYS, LINEAR_KEYS + 1, LINEAR_KEYS + 2]) {
      const names = keys(count)
      expect(repeats(object(names))).toEqual([null, null, null])
      for (let first = 0; first < count; first++) {
        for (let at = first + 1; at <= count; at++) {
          const repeated = [...names.slice(0, at), names[first] as string, ...names.slice(at)]
          expect(repeats(object(repeated)), `${count} keys, k${first} again at ${at}`).toEqual([`k${first}`, `k${first}`, `k${first}`])
        }
      }
    }
  })

  it('judges an object in a frame reused after objects of more keys than the linear case holds, or with a long or escaped key', () => {
    const before = [object(keys(3 * LINEAR_KEYS)), object(keys(LINEAR_KEYS + 1)), object(['a_key_longer_than_any_compared_byte_by_byte', 'k1']), object(['k\\u0030', 'k1'])]
    for (const first of before) {
      // Siblings, then nested: each object after the first opens a frame the one before it gave back.
      const fewer = keys(LINEAR_KEYS - 1)
      expect(repeats(`{"list":[${first},${object(fewer)},${object(fewer)}]}`)).toEqual([null, null, null])
      expect(repeats(`{"list":[${first},${object(['k0', 'k1', 'k0'])}]}`)).toEqual(['k0', 'k0', 'k0'])
      expect(repeats(`{"list":[${first},${object([...fewer, 'k3'])}]}`)).toEqual(['k3', 'k3', 'k3'])
      expect(repeats(`{"a":${first},"b":${object(['k1', 'k2'])},"c":{"d":${first}}}`)).toEqual([null, null, null])
    }
  })

  it('gives frames back to the pool, reset and at most MAX_SPARE_FRAMES of them, however deep the nesting', () => {
    for (const depth of [1, MAX_SPARE_FRAMES - 1, MAX_SPARE_FRAMES, MAX_SPARE_FRAMES + 1, 3 * MAX_SPARE_FRAMES]) {
      const nested = `${'{"k0":1,"k1":2,"x":'.repeat(depth)}${object(keys(LINEAR_KEYS + 3))}${'}'.repeat(depth)}`
      expect(repeats(nested)).toEqual([null, null, null])
      expect(repeats(`{"list":[${nested},${object(['x', 'k1', 'x'])}]}`)).toEqual(['x', 'x', 'x'])
      expect(spareFrames.length).toBeLessThanOrEqual(MAX_SPARE_FRAMES)
      for (const frame of spareFrames) expect([frame.keys, frame.set, frame.expectKey, frame.quotes.length]).toEqual([0, null, true, 2 * LINEAR_KEYS])
    }
  })

  it('finds a repeat among keys on either side of 2 GiB into a body (past a 32-bit offset, and a small integer)', () => {
    // A body of 2 GiB stood in for: byte k of `text` is at 2 ** 31 - 9 + k.
    const text = '"ab" "cd" "ef" "ef" "ab"'
    const base = 2 ** 31 - 9
    const bytes = Buffer.from(text, 'latin1')
    const raw = new Proxy(bytes, {
      get: (target, property) => {
        if (typeof property === 'string' && /^\d+$/.test(property)) return target[Number(property) - base]
        if (property === 'toString') return (encoding: BufferEncoding, start: number, end: number) => target.toString(encoding, start - base, end - base)
        return Reflect.get(target, property)
      },
    })
    const frame = openFrame()
    const key = (n: number) => [base + 5 * n, base + 5 * n + 3] as const
    expect(seen(raw, frame, ...key(0), true)).toBe(false)
    // The second key ends at the offset; the next wholly past it, then again, then the first again.
    expect(seen(raw, frame, ...key(1), true)).toBe(false)
    expect(seen(raw, frame, ...key(2), true)).toBe(false)
    expect(seen(raw, frame, ...key(3), true)).toBe(true)
    expect(seen(raw, frame, ...key(4), true)).toBe(true)
  })
})
