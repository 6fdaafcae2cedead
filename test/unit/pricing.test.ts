import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { costMicros, outputTokensFor, tokensCost } from '../../src/pricing/cost.js'
import { DEFAULT_PRICING_PATH, loadPricing } from '../../src/pricing/table.js'
import type { Price } from '../../src/pricing/types.js'
import { PROVIDER_IDS, type ProviderId } from '../../src/providers/types.js'

const dir = mkdtempSync(join(tmpdir(), 'loopers-pricing-'))
let files = 0
function pricingFile(content: unknown): string {
  const path = join(dir, `pricing-${++files}.json`)
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

const table = loadPricing({ filePath: null })
const builtIn = JSON.parse(readFileSync(DEFAULT_PRICING_PATH, 'utf8')) as Record<ProviderId, Record<string, unknown>>

function price(provider: ProviderId, model: string): Price {
  const found = table.lookup(provider, model)
  if (found === null) throw new Error(`no price for ${provider}/${model}`)
  return found
}

describe('built-in pricing table', () => {
  it('covers every provider, Azure with no entries', () => {
    // Every provider, plus the per-call fees of hosted tools.
    expect(Object.keys(builtIn).sort()).toEqual([...PROVIDER_IDS, 'tool_fees'].sort())
    expect(builtIn.azure).toEqual({})
    expect(table.lookup('azure', 'gpt-4o')).toBeNull()
  })

  it('prices hosted tools per call, each fee with its source', () => {
    expect(table.toolFee('openai', 'web_search')).toBe(10_000)
    expect(table.toolFee('openai', 'file_search')).toBe(2_500)
    expect(table.toolFee('anthropic', 'web_search')).toBe(10_000)
    expect(table.toolFee('openai', 'code_interpreter')).toBeNull()
    expect(table.toolFee('azure', 'web_search')).toBeNull()
  })

  const entries = PROVIDER_IDS.flatMap((provider) => Object.keys(builtIn[provider] ?? {}).map((model) => [provider, model] as const))

  it('has over 140 entries', () => {
    expect(entries.length).toBeGreaterThan(140)
  })

  it.each(entries)('%s %s is valid and positive', (provider, model) => {
    const p = price(provider, model)
    const embedding = model.includes('embed')
    for (const value of [p.inputPer1M, p.outputPer1M, p.cachedInputPer1M, p.cacheWritePer1M, p.maxOutputTokens, p.tokensPerMedia]) {
      expect(Number.isSafeInteger(value)).toBe(true)
    }
    expect(p.inputPer1M).toBeGreaterThan(0)
    expect(p.cachedInputPer1M).toBeGreaterThan(0)
    expect(p.cachedInputPer1M).toBeLessThanOrEqual(p.inputPer1M)
    expect(p.cacheWritePer1M).toBeGreaterThanOrEqual(p.inputPer1M)
    expect(p.tokensPerMedia).toBeGreaterThan(0)
    if (embedding) {
      expect(p.outputPer1M).toBe(0)
      expect(p.maxOutputTokens).toBe(0)
    } else {
      expect(p.outputPer1M).toBeGreaterThan(0)
      expect(p.maxOutputTokens).toBeGreaterThanOrEqual(2048)
    }
  })

  it.each([
    ['openai', 'gpt-4o', 2_500_000, 10_000_000, 1_250_000, 16_384],
    ['openai', 'gpt-4o-mini', 150_000, 600_000, 75_000, 16_384],
    ['openai', 'gpt-5', 1_250_000, 10_000_000, 125_000, 128_000],
    ['openai', 'o1-pro', 150_000_000, 600_000_000, 150_000_000, 100_000],
    ['openai', 'gpt-4.1-nano', 100_000, 400_000, 25_000, 32_768],
    ['anthropic', 'claude-sonnet-4-20250514', 3_000_000, 15_000_000, 300_000, 64_000],
    ['anthropic', 'claude-3-5-haiku-20241022', 800_000, 4_000_000, 80_000, 8_192],
    ['gemini', 'gemini-2.5-pro', 1_250_000, 10_000_000, 125_000, 65_536],
    ['bedrock', 'anthropic.claude-3-haiku-20240307-v1:0', 250_000, 1_250_000, 250_000, 4_096],
    ['mistral', 'mistral-large-latest', 2_000_000, 6_000_000, 2_000_000, 131_072],
  ] as const)('%s %s costs as listed', (provider, model, input, output, cached, maxOut) => {
    expect(price(provider, model)).toMatchObject({ inputPer1M: input, outputPer1M: output, cachedInputPer1M: cached, maxOutputTokens: maxOut })
  })

  it('prices Anthropic cache writes at 1.25x and reads at 0.1x input', () => {
    for (const model of Object.keys(builtIn.anthropic)) {
      const p = price('anthropic', model)
      expect(p.cacheWritePer1M).toBe(Math.round(p.inputPer1M * 1.25))
      expect(p.cachedInputPer1M).toBe(Math.round(p.inputPer1M * 0.1))
    }
  })

  it.each([
    ['openai', 'o1', true],
    ['openai', 'o3-mini', true],
    ['openai', 'o4-mini', true],
    ['openai', 'gpt-5-nano', true],
    ['openai', 'gpt-4o', false],
    ['openai', 'gpt-4.1', false],
    ['anthropic', 'claude-sonnet-4-5', true],
    ['anthropic', 'claude-3-7-sonnet-latest', false],
    ['gemini', 'gemini-2.5-flash', true],
    ['gemini', 'gemini-2.0-flash', false],
    ['mistral', 'magistral-medium-latest', false],
  ] as const)('%s %s hidden reasoning is %s', (provider, model, hidden) => {
    expect(price(provider, model).hiddenReasoning).toBe(hidden)
  })
})

describe('lookup', () => {
  it('strips a trailing date snapshot', () => {
    expect(table.lookup('openai', 'gpt-4o-2024-08-06')).toEqual(price('openai', 'gpt-4o'))
    expect(table.lookup('openai', 'o1-pro-2025-03-19')).toEqual(price('openai', 'o1-pro'))
    expect(table.lookup('anthropic', 'claude-3-5-haiku-20991231')).toEqual(price('anthropic', 'claude-3-5-haiku'))
  })

  it('prefers an exact snapshot entry over the stripped id', () => {
    expect(price('openai', 'gpt-4o-2024-05-13').inputPer1M).toBe(5_000_000)
    expect(price('openai', 'gpt-4o-2024-11-20').inputPer1M).toBe(2_500_000)
  })

  it('never prefix-matches', () => {
    expect(price('openai', 'o1-pro').inputPer1M).toBe(150_000_000)
    expect(price('openai', 'o1').inputPer1M).toBe(15_000_000)
    expect(price('openai', 'gpt-4o-mini').inputPer1M).toBe(150_000)
    expect(table.lookup('openai', 'gpt-4o-mini-transcribe')).toBeNull()
    expect(table.lookup('openai', 'gpt-4o-foo')).toBeNull()
    expect(table.lookup('openai', 'o1-')).toBeNull()
    expect(table.lookup('openai', 'gpt')).toBeNull()
    expect(table.lookup('openai', 'gpt-4o-2024-08-06-extra')).toBeNull()
    expect(table.lookup('anthropic', 'claude-sonnet-4-5-x')).toBeNull()
  })

  const sonnet35 = 'anthropic.claude-3-5-sonnet-20240620-v1:0'
  it.each([
    `us.${sonnet35}`,
    `eu.${sonnet35}`,
    `apac.${sonnet35}`,
    `us-gov.${sonnet35}`,
    `global.${sonnet35}`,
    `arn:aws:bedrock:us-east-1::foundation-model/${sonnet35}`,
    `arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.${sonnet35}`,
    `arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:inference-profile/us-gov.${sonnet35}`,
    encodeURIComponent(`arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.${sonnet35}`),
  ])('resolves the Bedrock id %s', (model) => {
    expect(table.lookup('bedrock', model)).toEqual(price('bedrock', sonnet35))
  })

  it('prices the Bedrock global profile of Claude 4.5 below the geographic one', () => {
    const id = 'anthropic.claude-sonnet-4-5-20250929-v1:0'
    expect(price('bedrock', `global.${id}`).inputPer1M).toBe(3_000_000)
    expect(price('bedrock', `us.${id}`).inputPer1M).toBe(3_300_000)
    expect(price('bedrock', `arn:aws:bedrock:us-east-1:1:inference-profile/global.${id}`).inputPer1M).toBe(3_000_000)
  })

  it('strips region prefixes and ARNs for Bedrock only', () => {
    expect(table.lookup('anthropic', 'us.claude-3-haiku-20240307')).toBeNull()
    expect(table.lookup('bedrock', 'anthropic.claude-3-haiku')).toBeNull()
    expect(table.lookup('bedrock', 'arn:aws:bedrock:us-east-1:1:application-inference-profile/abc123')).toBeNull()
    expect(table.lookup('bedrock', 'xx.anthropic.claude-3-haiku-20240307-v1:0')).toBeNull()
  })
})

describe('pricing file', () => {
  it('merges per-model entries over the built-in table and applies defaults', () => {
    const t = loadPricing({
      filePath: pricingFile({
        openai: { 'gpt-4o': { input_per_1m: 1, output_per_1m: 2 }, 'my-model': { input_per_1m: 0.5, output_per_1m: 1.5, max_output_tokens: 999 } },
        azure: { 'prod-gpt4o': { input_per_1m: 2.5, output_per_1m: 10, cached_input_per_1m: 1.25, max_output_tokens: 16384 } },
      }),
    })
    expect(t.lookup('openai', 'gpt-4o')).toEqual({
      inputPer1M: 1_000_000,
      outputPer1M: 2_000_000,
      cachedInputPer1M: 1_000_000,
      cacheWritePer1M: 1_000_000,
      maxOutputTokens: 4096,
      hiddenReasoning: false,
      tokensPerMedia: 2000,
      tokenizer: { encoding: 'o200k_base', factor: 1 },
    })
    expect(t.lookup('openai', 'gpt-4o-2024-08-06')?.inputPer1M).toBe(1_000_000)
    expect(t.lookup('openai', 'my-model')?.maxOutputTokens).toBe(999)
    expect(t.lookup('openai', 'gpt-4o-mini')).toEqual(price('openai', 'gpt-4o-mini'))
    expect(t.lookup('azure', 'prod-gpt4o')?.cachedInputPer1M).toBe(1_250_000)
    expect(t.lookup('openai', 'unknown-model')).toBeNull()
  })

  it('uses a provider fallback for unknown models of that provider only', () => {
    const t = loadPricing({ filePath: pricingFile({ openai: { _fallback: { input_per_1m: 10, output_per_1m: 30, max_output_tokens: 8192 } } }) })
    expect(t.lookup('openai', 'gpt-9-ultra')?.inputPer1M).toBe(10_000_000)
    expect(t.lookup('openai', 'gpt-4o')?.inputPer1M).toBe(2_500_000)
    expect(t.lookup('anthropic', 'claude-9')).toBeNull()
  })

  it('rounds USD to whole micro-USD once at load', () => {
    const t = loadPricing({ filePath: pricingFile({ mistral: { m: { input_per_1m: 0.0000015, output_per_1m: 0.075, cached_input_per_1m: 0.0000004 } } }) })
    expect(t.lookup('mistral', 'm')).toMatchObject({ inputPer1M: 2, outputPer1M: 75_000, cachedInputPer1M: 0 })
  })

  it('rejects a bad file with one line per problem naming the file and JSON path', () => {
    const path = pricingFile({
      opneai: {},
      openai: {
        'gpt-4o': { input_per_1m: '2.5', output_per_1m: 10 },
        'o1': { input_per_1m: -1, output_per_1m: 60, input_per_1M: 15 },
      },
      bedrock: { 'anthropic.claude-3-haiku-20240307-v1:0': { input_per_1m: 0.25, output_per_1m: 1.25, max_output_tokens: 1.5 } },
    })
    let message = ''
    try {
      loadPricing({ filePath: path })
    } catch (err) {
      message = (err as Error).message
    }
    const lines = message.split('\n')
    expect(lines).toHaveLength(5)
    for (const line of lines) expect(line.startsWith(`${path}: $`)).toBe(true)
    expect(message).toContain('opneai')
    expect(message).toContain('$.openai["gpt-4o"].input_per_1m')
    expect(message).toContain('$.openai.o1.input_per_1m')
    expect(message).toContain('input_per_1M')
    expect(message).toContain('$.bedrock["anthropic.claude-3-haiku-20240307-v1:0"].max_output_tokens')
  })

  it('reports unreadable and non-JSON files in one line', () => {
    expect(() => loadPricing({ filePath: join(dir, 'missing.json') })).toThrow(/missing\.json: cannot read pricing file/)
    const bad = pricingFile('{ "openai": ')
    expect(() => loadPricing({ filePath: bad })).toThrow(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: invalid JSON: [^\\n]+$`))
  })
})

describe('Azure deployments that name their model', () => {
  it('LOOPERS_AZURE_DEPLOYMENTS prices a deployment as that OpenAI model and keeps the model for tokenizing', () => {
    const t = loadPricing({ filePath: null, azureDeployments: { 'my-dep': 'gpt-4o', mini: 'gpt-4o-mini-2024-07-18' } })
    expect(t.lookup('azure', 'my-dep')).toEqual({ ...price('openai', 'gpt-4o'), model: 'gpt-4o' })
    expect(t.lookup('azure', 'mini')).toEqual({ ...price('openai', 'gpt-4o-mini'), model: 'gpt-4o-mini-2024-07-18' })
    expect(t.lookup('azure', 'other')).toBeNull()
    expect(price('openai', 'gpt-4o').model).toBeUndefined()
  })

  it('a pricing-file entry "model" does the same; its own prices win, and it wins over the environment', () => {
    const t = loadPricing({
      filePath: pricingFile({ azure: { 'my-dep': { model: 'o3' }, 'eu-dep': { model: 'gpt-4o', input_per_1m: 2.75 }, both: { model: 'gpt-4o-mini' } } }),
      azureDeployments: { both: 'gpt-4o' },
    })
    expect(t.lookup('azure', 'my-dep')).toEqual({ ...price('openai', 'o3'), model: 'o3' })
    expect(t.lookup('azure', 'my-dep')?.hiddenReasoning).toBe(price('openai', 'o3').hiddenReasoning)
    expect(t.lookup('azure', 'eu-dep')).toEqual({
      ...price('openai', 'gpt-4o'),
      inputPer1M: 2_750_000,
      cachedInputPer1M: 2_750_000,
      cacheWritePer1M: 2_750_000,
      model: 'gpt-4o',
    })
    expect(t.lookup('azure', 'both')?.model).toBe('gpt-4o-mini')
  })

  it('an OpenAI price from the same file applies to the deployment', () => {
    const t = loadPricing({ filePath: pricingFile({ openai: { 'my-ft': { input_per_1m: 3, output_per_1m: 12 } }, azure: { d: { model: 'my-ft' } } }) })
    expect(t.lookup('azure', 'd')?.outputPer1M).toBe(12_000_000)
  })

  it('refuses a model with no OpenAI price, "model" outside azure, and an entry with neither prices nor model', () => {
    expect(() => loadPricing({ filePath: null, azureDeployments: { d: 'gpt-9' } })).toThrow(
      /^LOOPERS_AZURE_DEPLOYMENTS: Azure deployment 'd' names model 'gpt-9', which has no OpenAI price/,
    )
    const path = pricingFile({ openai: { x: { model: 'gpt-4o' } } })
    expect(() => loadPricing({ filePath: path })).toThrow('$.openai["x"].model: only Azure deployments name a model')
    expect(() => loadPricing({ filePath: pricingFile({ azure: { d: { input_per_1m: 1 } } }) })).toThrow(/needs input_per_1m and output_per_1m/)
  })
})

function flat(input: number, output: number, cached = input, write = input): Price {
  return { inputPer1M: input, outputPer1M: output, cachedInputPer1M: cached, cacheWritePer1M: write, maxOutputTokens: 4096, hiddenReasoning: false, tokensPerMedia: 2000, tokenizer: { encoding: 'o200k_base', factor: 1 } }
}

/** Uniform integers up to `max` (fc.integer stops at 2^31 − 1). */
function nat(max: number, min = 0): fc.Arbitrary<number> {
  return fc.bigInt({ min: BigInt(min), max: BigInt(max) }).map(Number)
}

/** Reference: exact ceil(Σ t·p / 1e6) in BigInt. */
function referenceCost(terms: Array<[number, number]>): number {
  const sum = terms.reduce((acc, [t, p]) => acc + BigInt(t) * BigInt(p), 0n)
  return Number((sum + 999_999n) / 1_000_000n)
}

describe('cost math', () => {
  it('charges each usage field at its price', () => {
    const p = flat(2_500_000, 10_000_000, 1_250_000, 3_125_000)
    expect(costMicros(p, { inputTokens: 1000, cachedInputTokens: 2000, cacheWriteTokens: 400, outputTokens: 500 })).toBe(2500 + 2500 + 1250 + 5000)
    expect(costMicros(p, {})).toBe(0)
    expect(costMicros(p, { outputTokens: 3 })).toBe(30)
  })

  it('rounds up once for the whole request', () => {
    expect(costMicros(flat(150_000, 600_000), { inputTokens: 1 })).toBe(1)
    expect(costMicros(flat(100_000, 500_000), { inputTokens: 5, outputTokens: 1 })).toBe(1)
    expect(costMicros(flat(100_000, 500_000), { inputTokens: 5, outputTokens: 2 })).toBe(2)
    expect(tokensCost(1, 1)).toBe(1)
    expect(tokensCost(0, 600_000_000)).toBe(0)
    expect(tokensCost(1_000_000, 150_000)).toBe(150_000)
    expect(tokensCost(1_000_001, 150_000)).toBe(150_001)
  })

  it('keeps integer precision at 10^8 tokens × $600 per 1M', () => {
    const p = flat(600_000_001, 600_000_000)
    expect(costMicros(p, { outputTokens: 100_000_000 })).toBe(60_000_000_000)
    // 100,000,001 × 600,000,001 = 60,000,000,700,000,001 (> 2^53): floating point loses the last unit.
    expect(costMicros(p, { inputTokens: 100_000_001 })).toBe(60_000_000_701)
    expect(tokensCost(100_000_001, 600_000_001)).toBe(60_000_000_701)
    expect(Math.ceil((100_000_001 * 600_000_001) / 1e6)).not.toBe(60_000_000_701)
  })

  it('matches exact BigInt arithmetic', () => {
    const tokens = nat(100_000_000_000)
    const per1M = nat(10_000_000_000)
    fc.assert(
      fc.property(fc.tuple(tokens, per1M), fc.tuple(tokens, per1M), fc.tuple(tokens, per1M), fc.tuple(tokens, per1M), (a, b, c, d) => {
        const p = flat(a[1], d[1], b[1], c[1])
        expect(costMicros(p, { inputTokens: a[0], cachedInputTokens: b[0], cacheWriteTokens: c[0], outputTokens: d[0] })).toBe(referenceCost([a, b, c, d]))
        expect(tokensCost(a[0], a[1])).toBe(referenceCost([a]))
      }),
      { numRuns: 500 },
    )
  })

  it('treats unreported, negative and non-finite counts as 0 and rounds fractions up', () => {
    const p = flat(1_000_000, 1_000_000)
    expect(costMicros(p, { inputTokens: undefined, outputTokens: -5 })).toBe(0)
    expect(costMicros(p, { inputTokens: Number.NaN })).toBe(0)
    expect(costMicros(p, { inputTokens: 1.2 })).toBe(2)
  })

  it('outputTokensFor gives the most output that fits', () => {
    const p = flat(0, 10_000_000)
    expect(outputTokensFor(p, 1_000_000, 0)).toBe(100_000)
    expect(outputTokensFor(p, 1_000_000, 999_999)).toBe(0)
    expect(outputTokensFor(p, 1_000_000, 999_990)).toBe(1)
    expect(outputTokensFor(p, 1_000_000, 1_000_000)).toBe(0)
    expect(outputTokensFor(p, 1_000_000, 2_000_000)).toBe(0)
    expect(outputTokensFor(flat(0, 0), 5, 0)).toBe(Number.MAX_SAFE_INTEGER)
    expect(outputTokensFor(flat(0, 600_000_000), 1_000_000_000_000, 0)).toBe(1_666_666_666)
  })

  it('outputTokensFor is the largest count whose cost fits', () => {
    fc.assert(
      fc.property(nat(10_000_000_000, 1000), nat(1_000_000_000_000), nat(1_000_000_000), (per1M, budget, already) => {
        const n = outputTokensFor(flat(0, per1M), budget, already)
        const left = Math.max(0, budget - already)
        expect(tokensCost(n, per1M)).toBeLessThanOrEqual(left)
        expect(tokensCost(n + 1, per1M)).toBeGreaterThan(left)
      }),
      { numRuns: 500 },
    )
  })
})
