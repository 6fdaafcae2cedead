import { describe, expect, it } from 'vitest'
import { usdHeader } from '../../src/proxy/respond.js'

describe('usdHeader', () => {
  it.each([
    [0, '0.000000'],
    [-5, '0.000000'],
    [1, '0.000001'],
    [999_999, '0.999999'],
    [1_000_000, '1.000000'],
    [5_123_456, '5.123456'],
    [9_999_999_123_456, '9999999.123456'],
    [123_456_789_012_345, '123456789.012345'],
    [2.5, '0.000003'],
  ])('writes %d micro-USD as %s', (micros, header) => {
    expect(usdHeader(micros)).toBe(header)
  })

  it('reads as the decimal of the amount, as toFixed(6) of the USD writes it, for integer micros up to 10^15', () => {
    let seed = 12345
    for (let i = 0; i < 20_000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      const micros = Math.floor((seed / 2 ** 32) * 10 ** (i % 16))
      expect(usdHeader(micros)).toBe((micros / 1_000_000).toFixed(6))
    }
  })
})
