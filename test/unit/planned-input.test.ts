import { describe, expect, it } from 'vitest'
import { costMicros, withPlannedInput } from '../../src/pricing/cost.js'
import type { Price } from '../../src/pricing/types.js'
import type { Usage } from '../../src/providers/types.js'

// Four different rates, so a count read into the wrong field changes the cost.
const price = { inputPer1M: 3_000_000, cachedInputPer1M: 1_500_000, cacheWritePer1M: 3_750_000, outputPer1M: 15_000_000 } as Price
const PLANNED = 1_234

describe('withPlannedInput', () => {
  it.each<[string, Usage]>([
    ['nothing reported', {}],
    ['output only', { outputTokens: 57 }],
    ['input present but undefined (charged as not reported, as the spread has it)', { inputTokens: undefined, outputTokens: 9 }],
    ['every count', { inputTokens: 700, cachedInputTokens: 300, cacheWriteTokens: 40, outputTokens: 81 }],
    ['cache counts without input', { cachedInputTokens: 11, cacheWriteTokens: 5, outputTokens: 2 }],
    ['zero input', { inputTokens: 0, outputTokens: 3 }],
  ])('costs what { inputTokens: planned, ...usage } costs: %s', (_name, usage) => {
    const spread: Usage = { inputTokens: PLANNED, ...usage }
    const made = withPlannedInput(usage, PLANNED)
    expect(costMicros(price, made)).toBe(costMicros(price, spread))
    for (const field of ['inputTokens', 'cachedInputTokens', 'cacheWriteTokens', 'outputTokens'] as const) expect(made[field]).toBe(spread[field])
  })

  it('leaves the usage it reads unchanged and gives each call its own object', () => {
    const usage: Usage = { outputTokens: 4 }
    const first = withPlannedInput(usage, 10)
    const second = withPlannedInput({ inputTokens: 2 }, 20)
    expect(usage).toEqual({ outputTokens: 4 })
    expect(first).not.toBe(second)
    expect([first.inputTokens, second.inputTokens]).toEqual([10, 2])
  })
})
