import { describe, expect, it } from 'vitest'
import { findDuplicateKey, SCAN_SLICE_STEPS, stringEnd } from '../../src/http/json-keys.js'
import { scanJson } from '../../src/http/json-scan.js'
import { BIG_BODY_BYTES } from '../../src/http/raw-body.js'
import { LAZY_MIN_BYTES, readRequestBody } from '../../src/proxy/request-body.js'
import { countLoopTurns } from '../support/event-loop-turns.js'

// Issue 13, finding 1: the scanner behind the refusal of repeated JSON keys, and its cost on a 10 MiB body.

describe('duplicate-key scanner', () => {
  it('ends a string at its closing quote at every length, past escaped quotes and backslashes on either side of the near search', () => {
    for (let length = 0; length < 80; length++) {
      for (const insert of ['', '"', '\\', '\\"', 'é']) {
        for (const at of [0, 15, 30, 31, 32, 33, 40]) {
          const text = 'x'.repeat(length).slice(0, at) + insert + 'x'.repeat(Math.max(0, length - at))
          const literal = Buffer.from(`${JSON.stringify(text)}:1}`)
          expect(stringEnd(literal, 0)).toBe(Buffer.byteLength(JSON.stringify(text)) - 1)
        }
      }
    }
    expect(stringEnd(Buffer.from(`"${'x'.repeat(40)}`), 0)).toBe(-1)
    expect(stringEnd(Buffer.from(`"${'x'.repeat(10)}`), 0)).toBe(-1)
  })

  it('judges each object by its own keys alone, however many objects came before and whatever scans run beside', async () => {
    const wide = `{${Array.from({ length: 40 }, (_, i) => `"k${i}":${i}`).join(',')}}`
    const clean = Buffer.from(`[${wide},{"k1":1,"a":{"k2":2}},{"a":1},{"a":2,"b":{"a":3}},${wide}]`)
    const repeated = Buffer.from(`[${wide},{"a":1},{"a":2,"b":{"a":3,"c":1,"c":2}}]`)
    expect(findDuplicateKey(clean)).toBeNull()
    expect(findDuplicateKey(repeated)).toBe('c')
    // Interleaved in slices of a few steps each: two scans share no open object.
    const both = await Promise.all([findDuplicateKey(clean, 1 << 18, 3), findDuplicateKey(repeated, 1 << 18, 3), findDuplicateKey(clean, 1 << 18, 5)])
    expect(both).toEqual([null, 'c', null])
  })

  it('finds a repeated key at any depth, escaped or not, and nothing in strings or arrays', async () => {
    expect(await findDuplicateKey(Buffer.from('{"a":{"b":1,"c":[{"x":1},{"x":2}]},"stream":false,"str\\u0065am":true}'))).toBe('stream')
    expect(await findDuplicateKey(Buffer.from('{"a":"\\"b\\\\","b":{"a":1},"c":["a","a"],"d":"{\\"a\\":1,\\"a\\":2}"}'))).toBeNull()
    expect(await findDuplicateKey(Buffer.from('{"m":[{"content":[{"type":"text","type":"input_file"}]}]}'))).toBe('type')
    expect(await findDuplicateKey(Buffer.from('{"é":1,"\\u00e9":2}'))).toBe('é')
  })

  it('finds a repeat whether keys are compared as bytes or as strings: long keys, many keys, escapes', async () => {
    const object = (keys: string[]) => Buffer.from(`{${keys.map((key, i) => `"${key}":${i}`).join(',')}}`)
    const many = Array.from({ length: 40 }, (_, i) => `key_${i}`)
    const long = 'a_key_longer_than_any_compared_byte_by_byte'
    expect(await findDuplicateKey(object([...many, 'key_0']))).toBe('key_0')
    expect(await findDuplicateKey(object(['key_7', ...many.slice(0, 8)]))).toBe('key_7')
    expect(await findDuplicateKey(object([long, 'b', long]))).toBe(long)
    expect(await findDuplicateKey(object(['model', 'm\\u006fdel']))).toBe('model')
    expect(await findDuplicateKey(object(['m\\u006fdel', 'stream', 'model']))).toBe('model')
    expect(await findDuplicateKey(object(['abcd', 'abce', 'abc', 'abcde', `${long}x`, `${long}y`]))).toBeNull()
    expect(await findDuplicateKey(object(many))).toBeNull()
  })

  it('answers a body scanned within one slice in the same turn, and a longer one as a promise with the same answer', async () => {
    const small = Buffer.from('{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream":false}')
    expect(findDuplicateKey(small)).toBe('stream')
    expect(findDuplicateKey(Buffer.from('{"model":"m"}'))).toBeNull()
    // The same body in slices of 8 bytes or of 4 steps: a promise, and the same key.
    for (const sliced of [findDuplicateKey(small, 8), findDuplicateKey(small, 1 << 18, 4)]) {
      expect(sliced).toBeInstanceOf(Promise)
      expect(await sliced).toBe('stream')
    }
  })

  it('scans a 10 MiB body in slices that leave the event loop free', async () => {
    const messages = Array.from({ length: 60_000 }, (_, i) => ({ role: 'user', content: [{ type: 'text', text: `message ${i} ${'x'.repeat(120)}` }] }))
    const raw = Buffer.from(JSON.stringify({ model: 'gpt-test', messages }))
    expect(raw.length).toBeGreaterThan(9 * 1024 * 1024)
    const stopCounting = countLoopTurns()
    expect(await findDuplicateKey(raw)).toBeNull()
    const ticks = stopCounting()
    // At least one turn of the event loop per 256 KiB slice: other requests run while it scans.
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(raw.length / (1 << 18)) - 1)
  })

  it('yields by work too: a dense body of short keys is scanned in slices of at most SCAN_SLICE_STEPS strings', async () => {
    // ~9 MiB of 200,000 small objects: 256 KiB of them took ~25 ms to scan (one slice), 60-90 ms with GC.
    const messages = Array.from({ length: 200_000 }, (_, i) => ({ role: 'user', content: `hi ${i}`, n: i }))
    const raw = Buffer.from(JSON.stringify({ model: 'gpt-test', messages }))
    const keys = 2 + 3 * messages.length
    const stopCounting = countLoopTurns()
    expect(await findDuplicateKey(raw)).toBeNull()
    const ticks = stopCounting()
    // Every key is at least one step: one turn of the event loop per 4,096 keys at the least (the old
    // byte-only slices gave 36 turns for these 600,002 keys).
    expect(SCAN_SLICE_STEPS).toBeLessThanOrEqual(4096)
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(keys / 4096))
  })
})

// Issue 12: a body of LAZY_MIN_BYTES up to 1 MiB is judged by the validating scan on the event loop instead of
// JSON.parse; it yields as the key scan does, by bytes and by work, and the read of such a body with it.
describe('validating scanner', () => {
  const underBig = (make: (i: number) => unknown, stop = BIG_BODY_BYTES - 4096) => {
    const messages: unknown[] = []
    let bytes = 0
    for (let i = 0; bytes < stop; i++) {
      const message = make(i)
      bytes += JSON.stringify(message).length + 1
      messages.push(message)
    }
    messages.pop()
    return { raw: Buffer.from(JSON.stringify({ model: 'gpt-test', messages })), count: messages.length }
  }

  it('scans a body just under 1 MiB in slices that leave the event loop free, and so does reading it', async () => {
    const { raw } = underBig((i) => ({ role: 'user', content: `message ${i} ${'x'.repeat(400)}` }))
    expect(raw.length).toBeGreaterThan(BIG_BODY_BYTES - 8192)
    expect(raw.length).toBeLessThan(BIG_BODY_BYTES)
    let stopCounting = countLoopTurns()
    const scan = await scanJson(raw, null)
    let ticks = stopCounting()
    expect(scan.ok).toBe(true)
    // At least one turn of the event loop per 256 KiB slice.
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(raw.length / (1 << 18)) - 1)
    // The whole read (the scan, then the small members parsed): the same turns; no counting worker is needed.
    expect(raw.length).toBeGreaterThanOrEqual(LAZY_MIN_BYTES)
    stopCounting = countLoopTurns()
    const read = await readRequestBody(raw, null, { inspect: () => Promise.reject(new Error('not for this size')) } as never)
    ticks = stopCounting()
    expect(read.json.model).toBe('gpt-test')
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(raw.length / (1 << 18)) - 1)
  })

  it('yields by work too: a dense body just under 1 MiB is scanned in slices of at most SCAN_SLICE_STEPS strings', async () => {
    const { raw, count } = underBig((i) => ({ role: 'user', content: `hi ${i}`, n: i }))
    const keys = 2 + 3 * count
    const stopCounting = countLoopTurns()
    expect((await scanJson(raw, null)).ok).toBe(true)
    const ticks = stopCounting()
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(keys / SCAN_SLICE_STEPS))
  })
})

