import { describe, expect, it } from 'vitest'
import { AmountError, formatUsd, microsToUsd, parseCount, parseUsd } from '../../src/money.js'
import { NONE, formatTime, renderBar, renderTable } from '../../src/cli/format.js'
import { parseBudgetFlags, windowJson } from '../../src/cli/budget.js'
import { parseProviders } from '../../src/cli/keys.js'
import { CliError, EXIT_USAGE } from '../../src/cli/errors.js'

describe('parseUsd', () => {
  it.each([
    ['0', 0],
    ['5', 5_000_000],
    ['0.25', 250_000],
    ['.5', 500_000],
    ['1.234567', 1_234_567],
    ['0.000001', 1],
    ['0.1', 100_000],
    ['0.3', 300_000],
    ['19.99', 19_990_000],
    ['007.10', 7_100_000],
    [' 12 ', 12_000_000],
    ['9007199254.740991', Number.MAX_SAFE_INTEGER],
  ])('%j is %d micros, exactly', (text, micros) => {
    expect(parseUsd(text)).toBe(micros)
  })

  it.each([
    ['-1', /negative/],
    ['-0.5', /negative/],
    ['abc', /not a USD amount/],
    ['1e3', /not a USD amount/],
    ['+1', /not a USD amount/],
    ['$5', /not a USD amount/],
    ['1,000', /not a USD amount/],
    ['1.', /not a USD amount/],
    ['.', /not a USD amount/],
    ['', /not a USD amount/],
    ['1.2.3', /not a USD amount/],
    ['Infinity', /not a USD amount/],
    ['0x10', /not a USD amount/],
    ['1.0000001', /too many decimals/],
    ['9007199254.740992', /too large/],
  ])('rejects %j', (text, message) => {
    expect(() => parseUsd(text)).toThrow(AmountError)
    expect(() => parseUsd(text)).toThrow(message)
  })
})

describe('formatUsd and microsToUsd', () => {
  it.each([
    [0, '$0.00'],
    [1, '$0.000001'],
    [1_234_567, '$1.234567'],
    [1_500_000, '$1.50'],
    [12_000_000, '$12.00'],
    [100_000, '$0.10'],
    [120_000, '$0.12'],
    [123_400, '$0.1234'],
    [-2_500_000, '-$2.50'],
  ])('%d micros reads %s', (micros, text) => {
    expect(formatUsd(micros)).toBe(text)
  })

  it('round-trips every formatted amount through parseUsd', () => {
    for (const micros of [0, 1, 99, 1_000_001, 1_234_567, 10_000_000, 987_654_321]) {
      expect(parseUsd(formatUsd(micros).slice(1))).toBe(micros)
    }
  })

  it('gives JSON dollars as micros / 1e6', () => {
    expect(microsToUsd(1_234_567)).toBe(1.234567)
    expect(microsToUsd(100_000)).toBe(0.1)
    expect(microsToUsd(0)).toBe(0)
  })
})

describe('parseCount', () => {
  it('accepts non-negative integers', () => {
    expect(parseCount('0', 'steps')).toBe(0)
    expect(parseCount('50', 'steps')).toBe(50)
  })
  it.each(['-1', '1.5', 'ten', '', '1e2', '99999999999999999999'])('rejects %j', (text) => {
    expect(() => parseCount(text, 'steps')).toThrow(AmountError)
  })
})

describe('renderBar', () => {
  it.each([
    [0, 10_000_000, '[--------------------]   0%'],
    [4_000_000, 10_000_000, '[########------------]  40%'],
    [10_000_000, 10_000_000, '[####################] 100%'],
    [9_999_999, 10_000_000, '[###################-]  99%'],
    [1, 10_000_000, '[--------------------]   0%'],
    [15_000_000, 10_000_000, '[####################] 150%'],
    [5, null, NONE],
    [5, 0, NONE],
  ])('spent %d of %s renders %j', (spent, limit, bar) => {
    expect(renderBar(spent, limit)).toBe(bar)
  })

  it('honours the width', () => {
    expect(renderBar(1, 2, 10)).toBe('[#####-----]  50%')
  })
})

describe('renderTable', () => {
  it('pads columns, right-aligns amounts and upper-cases headers', () => {
    const table = renderTable(
      [{ header: 'name' }, { header: 'limit', align: 'right' }, { header: 'note' }],
      [
        ['a', '$1.00', ''],
        ['longer', '$100.25', 'x'],
      ],
    )
    expect(table.split('\n')).toEqual(['NAME      LIMIT  NOTE', 'a         $1.00', 'longer  $100.25  x'])
  })
})

describe('formatTime', () => {
  it('prints UTC to the second', () => {
    expect(formatTime(new Date('2026-03-01T14:05:00.000Z'))).toBe('2026-03-01 14:05:00 UTC')
  })
})

describe('budget flags', () => {
  it('maps flags to a BudgetChange in micros; 0 stays 0 (remove)', () => {
    expect(parseBudgetFlags({ hourly: '10', monthly: '0', session: '0.5', sessionMaxSteps: '20' })).toEqual({
      limits: { hourly: 10_000_000, monthly: 0 },
      sessionBudgetMicros: 500_000,
      sessionMaxSteps: 20,
    })
  })

  it('refuses no flag at all, and bad values with the flag named, as usage errors', () => {
    expect(() => parseBudgetFlags({})).toThrow(/at least one of --minute/)
    const bad = (() => {
      try {
        parseBudgetFlags({ daily: 'abc' })
      } catch (err) {
        return err
      }
    })()
    expect(bad).toBeInstanceOf(CliError)
    expect((bad as CliError).exitCode).toBe(EXIT_USAGE)
    expect((bad as CliError).message).toMatch(/^--daily: not a USD amount/)
    expect(() => parseBudgetFlags({ sessionMaxSteps: '-3' })).toThrow(/--session-max-steps/)
  })

  it('computes remaining as limit - spent - held, floored at 0, null when unlimited', () => {
    const resetsAt = new Date('2026-03-01T15:00:00.000Z')
    expect(windowJson({ limitMicros: 10_000_000, spentMicros: 4_000_000, heldMicros: 500_000, resetsAt })).toEqual({
      limit_usd: 10,
      spent_usd: 4,
      held_usd: 0.5,
      remaining_usd: 5.5,
      resets_at: '2026-03-01T15:00:00.000Z',
    })
    expect(windowJson({ limitMicros: 1_000_000, spentMicros: 2_000_000, heldMicros: 0, resetsAt }).remaining_usd).toBe(0)
    expect(windowJson({ limitMicros: null, spentMicros: 1, heldMicros: 0, resetsAt }).remaining_usd).toBeNull()
  })
})

describe('parseProviders', () => {
  it('splits commas, accepts repeats and case, de-duplicates in order', () => {
    expect(parseProviders(['openai,Anthropic', 'openai', ' gemini '])).toEqual(['openai', 'anthropic', 'gemini'])
  })
  it('names the unknown provider', () => {
    expect(() => parseProviders(['openai,foo'])).toThrow(/unknown provider 'foo'/)
    expect(() => parseProviders([','])).toThrow(/at least one/)
  })
})
