/**
 * The stack most e2e suites run on: a budget store of one kind, a fake OpenAI upstream and a proxy in front of
 * both, started before the suite's tests and stopped after them. Call inside a `describe`.
 */
import { afterAll, beforeAll } from 'vitest'
import { startFakeOpenAi, type FakeOpenAi } from './fake-openai.js'
import { startProxy, type TestProxy } from './proxy.js'
import { startTestStore, type StoreKind, type TestStore } from './stores.js'

export interface OpenAiStack {
  readonly store: TestStore
  readonly fake: FakeOpenAi
  readonly proxy: TestProxy
}

/** Registers the hooks; the fields are set once `beforeAll` has run. `env` is added to the proxy's environment. */
export function useOpenAiStack(kind: StoreKind, env: Record<string, string> = {}): OpenAiStack {
  const stack = {} as { store: TestStore; fake: FakeOpenAi; proxy: TestProxy }
  beforeAll(async () => {
    stack.store = await startTestStore(kind)
    stack.fake = await startFakeOpenAi()
    stack.proxy = await startProxy({ ...stack.store.env, LOOPERS_OPENAI_BASE_URL: stack.fake.url, ...env })
  })
  afterAll(async () => {
    await stack.proxy?.close()
    await stack.fake?.close()
    await stack.store?.stop()
  })
  return stack
}
