import { describe, expect, it } from 'vitest'
import { createSummaryWriter, writeNumber } from '../../src/log-line.js'
import { createSummary, type Summary } from '../../src/proxy/summary.js'
import { seededRandom } from '../support/seeded-random.js'

const bytes = Buffer.alloc(1_024)

/** What writeNumber writes for `value`, read back. */
function written(value: number): string {
  return bytes.toString('latin1', 0, writeNumber(bytes, 0, value))
}

/** What pino writes for a number: String of it, null when not finite. */
const expected = (value: number): string => (Number.isFinite(value) ? String(value) : 'null')

/** The values of `values` whose writing differs from String's (none, when writeNumber is right). */
function mismatches(values: Iterable<number>): Array<[number, string]> {
  const wrong: Array<[number, string]> = []
  for (const value of values) if (written(value) !== expected(value)) wrong.push([value, written(value)])
  return wrong
}

function* times<T>(count: number, make: () => T): Generator<T> {
  for (let i = 0; i < count; i++) yield make()
}

describe('writeNumber', () => {
  it('writes every micro-USD amount from -$2 to $2 as String of micros / 1e6 does', () => {
    const values = function* () {
      for (let micros = -2_000_000; micros <= 2_000_000; micros++) yield micros / 1e6
    }
    expect(mismatches(values())).toEqual([])
  })

  it('writes random micro-USD amounts up to the edge of its fast path ($1e9) as String does', () => {
    const next = seededRandom(12)
    // Spread over every magnitude: 10^0 … 10^15 micros.
    const micros = () => Math.floor(10 ** (next() * 15) * next() * 10)
    expect(mismatches(times(300_000, () => micros() / 1e6))).toEqual([])
    expect(mismatches(times(100_000, () => -micros() / 1e6))).toEqual([])
  })

  it('writes durations rounded to 0.01 and 0.001 ms as String does', () => {
    const next = seededRandom(34)
    const ms = () => 10 ** (next() * 12) * next()
    expect(mismatches(times(300_000, () => Math.round(ms() * 100) / 100))).toEqual([])
    expect(mismatches(times(300_000, () => Math.round(ms() * 1000) / 1000))).toEqual([])
  })

  it('writes integers as String does', () => {
    const next = seededRandom(56)
    const values = function* () {
      for (let n = 0; n <= 100_000; n++) yield n
      yield* times(200_000, () => Math.floor(next() * Number.MAX_SAFE_INTEGER))
      yield* times(100_000, () => -Math.floor(next() * 2 ** 40))
      yield* times(100_000, () => 1_700_000_000_000 + Math.floor(next() * 1e11))
    }
    expect(mismatches(values())).toEqual([])
  })

  it('writes any other double as String does', () => {
    const next = seededRandom(78)
    const view = new DataView(new ArrayBuffer(8))
    const anyDouble = () => {
      view.setUint32(0, Math.floor(next() * 2 ** 32))
      view.setUint32(4, Math.floor(next() * 2 ** 32))
      return view.getFloat64(0)
    }
    expect(mismatches(times(100_000, anyDouble))).toEqual([])
    expect(mismatches(times(100_000, () => next() * 1e9))).toEqual([])
    expect(mismatches(times(100_000, () => next()))).toEqual([])
  })

  it.each<[string, number]>([
    ['zero', 0],
    ['negative zero', -0],
    ['one micro', 0.000001],
    ['below a micro', 0.0000001],
    ['just below one micro', 0.0000009999999],
    ['a tenth of a micro above a micro', 0.0000011],
    ['a sum that is not a count of micros', 0.1 + 0.2],
    ['the last micro below the fast path', 999_999_999.999999],
    ['the fast path edge', 1e9],
    ['a micro above the fast path edge', 1_000_000_000.000001],
    ['doubles a micro cannot tell apart', 8_600_000_000.000001],
    ['int32 edge', 2 ** 31 - 1],
    ['int32 edge plus one', 2 ** 31],
    ['a half above the int32 edge', 2 ** 31 + 0.5],
    ['a billion', 1e9 - 1],
    ['a billion and a half', 1_000_000_000.5],
    ['the largest safe integer', Number.MAX_SAFE_INTEGER],
    ['the smallest safe integer', Number.MIN_SAFE_INTEGER],
    ['beyond safe integers', 2 ** 53],
    ['where String turns to exponents', 1e21],
    ['the largest double', Number.MAX_VALUE],
    ['the smallest double', Number.MIN_VALUE],
    ['a timestamp', 1_764_900_000_123],
    ['NaN', Number.NaN],
    ['infinity', Number.POSITIVE_INFINITY],
    ['minus infinity', Number.NEGATIVE_INFINITY],
  ])('writes %s as String does', (_name, value) => {
    expect(written(value)).toBe(expected(value))
  })
})

describe('createSummaryWriter', () => {
  const write = createSummaryWriter(30, 'loopers')
  const line = (summary: Summary, room = bytes.length): number => write(bytes.subarray(0, room), 0, 1_764_900_000_123, summary, 1.5)

  it('writes the line', () => {
    const summary = Object.assign(createSummary(), { key: 'abcdef12', stream: false, status: 200, reservedUsd: 0.000123 })
    expect(bytes.toString('latin1', 0, line(summary))).toBe(
      '{"level":30,"time":1764900000123,"service":"loopers","key":"abcdef12","stream":false,"status":200,"reservedUsd":0.000123,"ms":1.5,"msg":"request"}\n',
    )
  })

  it.each<[string, Partial<Summary>]>([
    ['a string above 128 characters', { model: 'm'.repeat(129) }],
    ['a character beyond ASCII', { model: 'modèle' }],
    ['DEL', { model: 'a\u007fb' }],
    ['a quote', { model: 'a"b' }],
    ['a backslash', { model: 'a\\b' }],
    ['a control character', { model: 'a\nb' }],
    ['an object', { model: { name: 'x' } as unknown as string }],
    ['a name beyond ASCII', { ['modèle' as 'model']: 'x' }],
  ])('leaves a line with %s to the text path (-1)', (_name, fields) => {
    expect(line(Object.assign(createSummary(), fields))).toBe(-1)
  })

  it('returns -1 when the room left may not hold the line', () => {
    expect(line(Object.assign(createSummary(), { key: 'abcdef12' }), 200)).toBe(-1)
  })
})
