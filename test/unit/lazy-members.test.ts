import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LAZY_MIN_BYTES, readLazyBody } from '../../src/proxy/request-body.js'

// Issue 12: a lazily read body's members, small ones defined at once and large ones parsed on first read, are each
// read without JSON.parse where their bytes tell the value (literals, numbers, short strings without escapes): every
// value is still JSON.parse's, -0 and U+FFFD for bad UTF-8 included.

const PAD = 'x'.repeat(LAZY_MIN_BYTES)

/** `{"v":<value>,"w":[<value>],"pad":…}` read lazily and whole, from the same bytes. */
function readBoth(value: Buffer): { lazy: Record<string, unknown>; parsed: Record<string, unknown> } {
  const raw = Buffer.concat([Buffer.from('{"v":'), value, Buffer.from(',"w":['), value, Buffer.from(`],"pad":"${PAD}"}`)])
  const read = readLazyBody(raw, null)
  if (read instanceof Promise) throw new Error('a body read in one slice')
  return { lazy: read.json, parsed: JSON.parse(raw.toString('utf8')) as Record<string, unknown> }
}

const expectSame = (value: Buffer): void => {
  const { lazy, parsed } = readBoth(value)
  expect(lazy.v).toEqual(parsed.v)
  expect(Object.is(lazy.v, parsed.v) || typeof parsed.v === 'object').toBe(true)
  expect(lazy.w).toEqual(parsed.w)
}

describe('lazily read members', () => {
  it('reads every scalar as JSON.parse does, however spelled', () => {
    for (const text of ['-0', '0', '-0.0', '1e400', '-1e400', '1E-7', '0.1', '123456789012345678901234567890', '2.5e+3', '-12.75e-2', 'true', 'false', 'null', '""', '"a\\"b"', '"\\u00e9t\\u00E9"', '"été 🦊"', '"\\ud83e"', `"${'y'.repeat(80)}"`]) expectSame(Buffer.from(text))
    // Bytes that are no UTF-8 inside a string: U+FFFD, as toString('utf8') of the whole body gives.
    expectSame(Buffer.from([0x22, 0x61, 0xff, 0xc3, 0x22]))
    expectSame(Buffer.from([0x22, 0xe2, 0x82, 0x22]))
  })

  it('reads any JSON value as JSON.parse does', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fc.double(), fc.integer(), fc.string({ unit: 'binary', maxLength: 70 })), (value) => {
        expectSame(Buffer.from(JSON.stringify(value) ?? 'null'))
      }),
      { numRuns: 2000 },
    )
  })
})
