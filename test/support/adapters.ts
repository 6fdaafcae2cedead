import { createAnthropicAdapter } from '../../src/providers/anthropic.js'
import { createAzureAdapter } from '../../src/providers/azure.js'
import { createBedrockAdapter } from '../../src/providers/bedrock.js'
import { createGeminiAdapter } from '../../src/providers/gemini.js'
import { createMistralAdapter } from '../../src/providers/mistral.js'
import { createOpenAiAdapter } from '../../src/providers/openai.js'
import type { ProviderAdapter, ProviderId } from '../../src/providers/types.js'

/** One adapter per provider, on test base URLs, without credentials: for tests that read bodies and streams only. */
export const TEST_ADAPTERS: Readonly<Record<ProviderId, ProviderAdapter>> = {
  openai: createOpenAiAdapter({ baseUrl: 'https://openai.test', apiKey: null }),
  azure: createAzureAdapter({ endpoint: 'https://azure.test', apiKey: null }),
  anthropic: createAnthropicAdapter({ baseUrl: 'https://anthropic.test', apiKey: null }),
  gemini: createGeminiAdapter({ baseUrl: 'https://gemini.test', apiKey: null }),
  mistral: createMistralAdapter({ baseUrl: 'https://mistral.test', apiKey: null }),
  bedrock: createBedrockAdapter({ baseUrl: 'https://bedrock.test', apiKey: null, aws: null, region: 'us-east-1' }),
}
