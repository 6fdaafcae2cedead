import type { Config } from '../config.js'
import { createOpenAiAdapter } from './openai.js'
import type { ProviderAdapter, ProviderId } from './types.js'

export type AdapterRegistry = Partial<Record<ProviderId, ProviderAdapter>>

/** One adapter per supported provider id, built from configuration. Adding a provider adds one line here. */
export function createAdapters(config: Config): AdapterRegistry {
  return {
    openai: createOpenAiAdapter({ baseUrl: config.upstream.openai, apiKey: config.credentials.openai }),
  }
}
