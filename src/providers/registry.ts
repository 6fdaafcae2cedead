import type { Config } from '../config.js'
import { createAnthropicAdapter } from './anthropic.js'
import { createAzureAdapter } from './azure.js'
import { createBedrockAdapter } from './bedrock.js'
import { createGeminiAdapter } from './gemini.js'
import { createMistralAdapter } from './mistral.js'
import { createOpenAiAdapter } from './openai.js'
import type { ProviderAdapter, ProviderId } from './types.js'

export type AdapterRegistry = Record<ProviderId, ProviderAdapter>

/** One adapter per provider id, built from configuration. Adding a provider adds one line here. */
export function createAdapters(config: Config): AdapterRegistry {
  return {
    anthropic: createAnthropicAdapter({ baseUrl: config.upstream.anthropic, apiKey: config.credentials.anthropic }),
    azure: createAzureAdapter({ endpoint: config.upstream.azure, apiKey: config.credentials.azure }),
    bedrock: createBedrockAdapter({ baseUrl: config.upstream.bedrock, apiKey: config.credentials.bedrockApiKey, aws: config.credentials.aws, region: config.credentials.awsRegion }),
    gemini: createGeminiAdapter({ baseUrl: config.upstream.gemini, apiKey: config.credentials.gemini }),
    mistral: createMistralAdapter({ baseUrl: config.upstream.mistral, apiKey: config.credentials.mistral }),
    openai: createOpenAiAdapter({ baseUrl: config.upstream.openai, apiKey: config.credentials.openai }),
  }
}
