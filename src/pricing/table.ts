import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { z } from 'zod'
import type { Micros } from '../money.js'
import { PROVIDER_IDS, type ProviderId } from '../providers/types.js'
import type { Price, PricingTable } from './types.js'
import { encodingForModel } from '../tokens/tiktoken.js'
import { withZod, type Zod } from '../transient-zod.js'
import type { TokenizerSpec } from '../tokens/output-counter.js'

/** The built-in table: `<root>/pricing/default.json`, two levels above both `src/pricing/` and `dist/pricing/`. */
export const DEFAULT_PRICING_PATH = fileURLToPath(new URL('../../pricing/default.json', import.meta.url))

/** The key of a provider's catch-all entry, used when no model entry matches. */
const FALLBACK_KEY = '_fallback'

const DEFAULT_MAX_OUTPUT_TOKENS = 4096
const DEFAULT_TOKENS_PER_MEDIA = 2000
/** $10,000 per 1M tokens: far above any list price, and low enough that cost math stays below 2^53. */
const MAX_USD_PER_1M = 10_000

/** A pricing file's schema, built for each read (zod is loaded only while it runs: ../transient-zod.ts). */
function fileSchema(z: Zod) {
  const usdPer1M = z.number().finite().min(0).max(MAX_USD_PER_1M)

  const entrySchema = z.strictObject({
    /** Azure only: the OpenAI model this deployment runs; its price applies unless the entry sets its own. */
    model: z.string().min(1).optional(),
    input_per_1m: usdPer1M.optional(),
    output_per_1m: usdPer1M.optional(),
    cached_input_per_1m: usdPer1M.optional(),
    cache_write_per_1m: usdPer1M.optional(),
    max_output_tokens: z.number().int().min(0).max(10_000_000).optional(),
    hidden_reasoning: z.boolean().optional(),
    tokens_per_media: z.number().int().min(0).max(10_000_000).optional(),
    // Output tokens per o200k token for a family without a public tokenizer (an estimate, rounded up).
    token_factor: z.number().finite().min(0.5).max(4).optional(),
  }).refine((e) => e.model !== undefined || (e.input_per_1m !== undefined && e.output_per_1m !== undefined), {
    message: 'needs input_per_1m and output_per_1m (or, for an Azure deployment, "model")',
  })

  const modelsSchema = z.record(z.string().min(1), entrySchema)

  /** A hosted tool's fee per call, with where it was published. */
  const toolFeeSchema = z.strictObject({ usd_per_call: z.number().finite().min(0).max(100), source: z.string().min(1) })
  const toolFeesSchema = z.strictObject(
    Object.fromEntries(PROVIDER_IDS.map((id) => [id, z.record(z.string().min(1), toolFeeSchema).optional()])) as Record<
      ProviderId,
      z.ZodOptional<z.ZodRecord<z.ZodString, typeof toolFeeSchema>>
    >,
  )

  return z.strictObject({
    ...(Object.fromEntries(PROVIDER_IDS.map((id) => [id, modelsSchema.optional()])) as Record<ProviderId, z.ZodOptional<typeof modelsSchema>>),
    tool_fees: toolFeesSchema.optional(),
  })
}

type PricingFile = z.output<ReturnType<typeof fileSchema>>

type PriceEntry = NonNullable<PricingFile['openai']>[string]

/**
 * Loads the built-in table and merges the file at `filePath` over it (a model entry in the file replaces
 * the built-in one; `_fallback` prices unknown models of that provider). Throws an Error with one line per
 * problem, each naming the file and the JSON path, when either file is unreadable or invalid.
 */
export function loadPricing(opts: { filePath: string | null; azureDeployments?: Record<string, string> }): PricingTable {
  const builtIn = readPricingFile(DEFAULT_PRICING_PATH)
  const override = opts.filePath === null ? {} : readPricingFile(opts.filePath)
  const prices = new Map<ProviderId, Map<string, Price>>()
  // OpenAI first: an Azure deployment that names its model is priced from the merged OpenAI table.
  for (const provider of ['openai', ...PROVIDER_IDS.filter((id) => id !== 'openai')] as const) {
    const models = new Map<string, Price>()
    const deployments = provider === 'azure' ? deploymentEntries(opts.azureDeployments ?? {}) : {}
    const sources: Array<[string, Record<string, PriceEntry> | undefined]> = [
      [DEFAULT_PRICING_PATH, builtIn[provider]],
      ['LOOPERS_AZURE_DEPLOYMENTS', deployments],
      [opts.filePath ?? '', override[provider]],
    ]
    for (const [source, entries] of sources) {
      for (const [model, entry] of Object.entries(entries ?? {})) {
        models.set(model, toPrice(source, provider, model, entry, prices.get('openai')))
      }
    }
    prices.set(provider, models)
  }
  const fees = new Map<string, Micros>()
  for (const source of [builtIn.tool_fees, override.tool_fees]) {
    for (const provider of PROVIDER_IDS) {
      for (const [tool, fee] of Object.entries(source?.[provider] ?? {})) fees.set(`${provider}/${tool}`, toMicros(fee.usd_per_call))
    }
  }
  return {
    toolFee: (provider, tool) => fees.get(`${provider}/${tool}`) ?? null,
    lookup(provider, model) {
      const models = prices.get(provider)
      if (models === undefined) return null
      return findPrice(provider, models, model) ?? models.get(FALLBACK_KEY) ?? null
    },
  }
}

/** The entry of `model` (exact, then its candidate ids), without the provider's fallback; null if none. */
function findPrice(provider: ProviderId, models: Map<string, Price>, model: string): Price | null {
  // The exact id is every provider's first candidate: a listed model is found without building the others.
  const exact = models.get(model)
  if (exact !== undefined) return exact
  for (const candidate of candidateIds(provider, model)) {
    const price = models.get(candidate)
    if (price !== undefined) return price
  }
  return null
}

/** LOOPERS_AZURE_DEPLOYMENTS as pricing entries: `{ "<deployment>": { "model": "<openai model>" } }`. */
function deploymentEntries(deployments: Record<string, string>): Record<string, PriceEntry> {
  return Object.fromEntries(Object.entries(deployments).map(([deployment, model]) => [deployment, { model }]))
}

/** Reads and validates one pricing file; throws one line per problem. */
function readPricingFile(filePath: string): PricingFile {
  let text: string
  try {
    text = readFileSync(filePath, 'utf8')
  } catch (err) {
    throw new Error(`${filePath}: cannot read pricing file: ${(err as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new Error(`${filePath}: invalid JSON: ${(err as Error).message}`)
  }
  const parsed = withZod((z) => {
    const result = fileSchema(z).safeParse(json)
    return result.success ? { data: result.data } : { issues: result.error.issues.map((issue) => `${filePath}: ${jsonPath(issue.path)}: ${issue.message}`) }
  })
  if (parsed.data === undefined) throw new Error(parsed.issues.join('\n'))
  return parsed.data
}

function jsonPath(path: readonly PropertyKey[]): string {
  let out = '$'
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`
    else if (typeof key === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) out += `.${key}`
    else out += `[${JSON.stringify(String(key))}]`
  }
  return out
}

function toMicros(usd: number): Micros {
  return Math.round(usd * 1e6)
}

/**
 * Output tokens per o200k token, per provider, for entries that name no `token_factor`. Claude: published
 * comparisons with GPT-4o's tokenizer give +16% (English), +21% (math), +30% (code); 1.35 rarely
 * undercounts. Mistral: Tekken is close to o200k, the older SentencePiece tokenizers up to ~30% above it.
 * Gemini: only counts text before its first running usage arrives. OpenAI and Azure count exactly.
 */
export const DEFAULT_TOKEN_FACTOR: Readonly<Record<ProviderId, number>> = { openai: 1, azure: 1, anthropic: 1.35, bedrock: 1.35, mistral: 1.25, gemini: 1.25 }

/** OpenAI models by their id's encoding; an Azure deployment by its entry's `model`, else o200k; others o200k × factor. */
function tokenizerFor(provider: ProviderId, id: string, entry: PriceEntry): TokenizerSpec {
  const named = entry.model ?? (provider === 'openai' ? id : null)
  return { encoding: named === null ? 'o200k_base' : encodingForModel(named), factor: entry.token_factor ?? DEFAULT_TOKEN_FACTOR[provider] }
}

/**
 * One entry as a Price. An Azure entry naming `model` starts from that OpenAI model's price (fields the
 * entry sets win) and keeps `model`, so it is tokenized as that model too. Throws one line naming the source.
 */
function toPrice(source: string, provider: ProviderId, id: string, entry: PriceEntry, openai: Map<string, Price> | undefined): Price {
  let base: Price | null = null
  if (entry.model !== undefined) {
    if (provider !== 'azure') throw new Error(`${source}: $.${provider}[${JSON.stringify(id)}].model: only Azure deployments name a model`)
    base = openai === undefined ? null : findPrice('openai', openai, entry.model)
    if (base === null) {
      throw new Error(`${source}: Azure deployment '${id}' names model '${entry.model}', which has no OpenAI price (add it under "openai" in the pricing file)`)
    }
  }
  const inputPer1M = entry.input_per_1m === undefined ? base!.inputPer1M : toMicros(entry.input_per_1m)
  const explicitInput = entry.input_per_1m !== undefined
  return {
    inputPer1M,
    outputPer1M: entry.output_per_1m === undefined ? base!.outputPer1M : toMicros(entry.output_per_1m),
    cachedInputPer1M:
      entry.cached_input_per_1m !== undefined ? toMicros(entry.cached_input_per_1m) : explicitInput || base === null ? inputPer1M : base.cachedInputPer1M,
    cacheWritePer1M:
      entry.cache_write_per_1m !== undefined ? toMicros(entry.cache_write_per_1m) : explicitInput || base === null ? inputPer1M : base.cacheWritePer1M,
    maxOutputTokens: entry.max_output_tokens ?? base?.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
    hiddenReasoning: entry.hidden_reasoning ?? base?.hiddenReasoning ?? false,
    tokensPerMedia: entry.tokens_per_media ?? base?.tokensPerMedia ?? DEFAULT_TOKENS_PER_MEDIA,
    tokenizer: tokenizerFor(provider, id, entry),
    ...(entry.model === undefined ? {} : { model: entry.model }),
  }
}

const SNAPSHOT_SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{8})$/
/** Bedrock cross-region inference profile prefixes (`us.anthropic.…`, `global.anthropic.…`). */
const BEDROCK_REGION_PREFIX = /^(?:us|us-gov|eu|apac|ap|jp|au|ca|global)\./
const BEDROCK_ARN = /^arn:[^:]+:bedrock:[^:]*:[^:]*:(?:foundation-model|inference-profile)\/(.+)$/

/** The ids tried in order: exact, without a date snapshot; for Bedrock also from an ARN and without a region prefix. */
function candidateIds(provider: ProviderId, model: string): string[] {
  const ids = withSnapshot(model)
  if (provider !== 'bedrock') return ids
  let id = model
  // The model id travels in the URL path, so an ARN may still be percent-encoded.
  if (id.includes('%')) {
    try {
      id = decodeURIComponent(id)
    } catch {
      // not valid percent-encoding: keep the id as it is
    }
    ids.push(...withSnapshot(id))
  }
  const arn = BEDROCK_ARN.exec(id)
  if (arn?.[1] !== undefined) {
    id = arn[1]
    ids.push(...withSnapshot(id))
  }
  const unprefixed = id.replace(BEDROCK_REGION_PREFIX, '')
  if (unprefixed !== id) ids.push(...withSnapshot(unprefixed))
  return ids
}

function withSnapshot(id: string): string[] {
  const base = id.replace(SNAPSHOT_SUFFIX, '')
  return base === id || base.length === 0 ? [id] : [id, base]
}
