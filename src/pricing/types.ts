import type { Micros } from '../money.js'
import type { ProviderId } from '../providers/types.js'
import type { TokenizerSpec } from '../tokens/output-counter.js'

/** One model's prices in integer micro-USD per 1M tokens. */
export interface Price {
  inputPer1M: Micros
  outputPer1M: Micros
  /** Cache reads; defaults to the input price when the table gives none. */
  cachedInputPer1M: Micros
  /** Cache writes (Anthropic, Bedrock); defaults to the input price when the table gives none. */
  cacheWritePer1M: Micros
  /** The model's largest possible output, used when a request sets no cap. */
  maxOutputTokens: number
  /** The model bills reasoning tokens it does not stream, so a stream cannot be metered from deltas. */
  hiddenReasoning: boolean
  /** Upper bound of input tokens one image (or audio/file part) can cost with this model. */
  tokensPerMedia: number
  /** How streamed output is counted: the model's tiktoken encoding (exact, factor 1) or o200k × a family factor. */
  tokenizer: TokenizerSpec
  /** Azure: the OpenAI model the deployment runs (pricing entry `model`, LOOPERS_AZURE_DEPLOYMENTS); count its tokens as that model's. */
  model?: string
}

/** The merged built-in and file pricing table. */
export interface PricingTable {
  /** Exact id, then the id without a date/version suffix, then the provider's `_fallback`; null if none. */
  lookup(provider: ProviderId, model: string): Price | null
  /** The fee of one call of a provider's hosted tool (e.g. OpenAI `web_search`), from `tool_fees`; null when not priced. */
  toolFee(provider: ProviderId, tool: string): Micros | null
}
