/**
 * The stack most e2e suites run on: a budget store of one kind, a fake OpenAI upstream and a proxy in front of
 * both, started before the suite's tests and stopped after them. Call inside a `describe`.
 */
import { startFakeOpenAi, type FakeOpenAi } from './fake-openai.js'
import { useProviderStack, type ProviderStack } from './provider-stack.js'
import type { StoreKind } from './stores.js'

export type OpenAiStack = Pick<ProviderStack<FakeOpenAi>, 'store' | 'fake' | 'proxy'>

/** Registers the hooks; the fields are set once `beforeAll` has run. `env` is added to the proxy's environment. */
export function useOpenAiStack(kind: StoreKind, env: Record<string, string> = {}): OpenAiStack {
  return useProviderStack('openai', () => startFakeOpenAi(), { kind, env })
}
