/**
 * The stack an e2e suite runs on: a budget store, one provider's fake upstream and a proxy in front of both,
 * started before the suite's tests and stopped after them; optionally a fresh key (and an emptied fake)
 * before each test. Call inside a `describe` or at a suite's top level.
 */
import { afterAll, beforeAll, beforeEach } from 'vitest'
import type { WindowName } from '../../src/budget/types.js'
import type { Micros } from '../../src/money.js'
import type { ProviderId } from '../../src/providers/types.js'
import { preloadEncoding } from '../../src/tokens/tiktoken.js'
import { createTestKey } from './e2e.js'
import { resetFake, type FakeUpstream } from './fake-server.js'
import { startProxy, type TestProxy } from './proxy.js'
import { startTestStore, type StoreKind, type TestStore } from './stores.js'

/** The running parts; set once `beforeAll` has run (`key` and `hash` before each test, with `key` given). */
export interface ProviderStack<F> {
  readonly store: TestStore
  readonly fake: F
  readonly proxy: TestProxy
  /** The running test's raw key and its hash. */
  readonly key: string
  readonly hash: string
}

export interface ProviderStackOptions {
  /** The store's kind (default: the embedded one). */
  kind?: StoreKind
  /** Added to the proxy's environment after the store's and the upstream's. */
  env?: Record<string, string>
  /** Before each test: the fake's requests, ledger and options reset, and a key of this name (with these limits, if any). */
  key?: { name: string; limits?: Partial<Record<WindowName, Micros>> }
  /** The proxy runs in this process and counts output with o200k: built first, so no stream meets the byte fallback. */
  preload?: boolean
}

/** Small stream slices, so a stream must extend its reservation several times. */
export const SMALL_SLICES = { LOOPERS_STREAM_SLICE_TOKENS: '16' }

/** A loaded CI machine must not turn a flood's budget checks into store timeouts (503s). */
export const PATIENT_STORE = { LOOPERS_REDIS_TIMEOUT_MS: '5000' }

/** The variable that points the proxy at a provider's upstream. */
const UPSTREAM_ENV: Record<ProviderId, string> = {
  openai: 'LOOPERS_OPENAI_BASE_URL',
  anthropic: 'LOOPERS_ANTHROPIC_BASE_URL',
  gemini: 'LOOPERS_GEMINI_BASE_URL',
  mistral: 'LOOPERS_MISTRAL_BASE_URL',
  bedrock: 'LOOPERS_BEDROCK_BASE_URL',
  azure: 'LOOPERS_AZURE_ENDPOINT',
}

/** Registers the hooks for `provider`'s stack, its upstream started by `startFake`; returns the parts. */
export function useProviderStack<F extends FakeUpstream<object>>(
  provider: ProviderId,
  startFake: () => Promise<F>,
  options: ProviderStackOptions = {},
): ProviderStack<F> {
  const stack = {} as { store: TestStore; fake: F; proxy: TestProxy; key: string; hash: string }
  beforeAll(async () => {
    if (options.preload === true) await preloadEncoding('o200k_base')
    stack.store = await startTestStore(options.kind)
    stack.fake = await startFake()
    stack.proxy = await startProxy({ ...stack.store.env, [UPSTREAM_ENV[provider]]: stack.fake.url, ...options.env })
  })
  afterAll(async () => {
    await stack.proxy?.close()
    await stack.fake?.close()
    await stack.store?.stop()
  })
  const key = options.key
  if (key !== undefined) {
    beforeEach(async () => {
      resetFake(stack.fake)
      const created = await createTestKey(stack.proxy, key.name, [provider], key.limits)
      stack.key = created.key
      stack.hash = created.hash
    })
  }
  return stack
}
