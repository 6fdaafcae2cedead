/**
 * The stack a fault suite runs on: a real Redis, the scriptable fault upstream and a proxy in this process in
 * front of both, started before the suite's tests and stopped after them; before each test the upstream's plan
 * and ledger are reset and a fresh key gets a daily limit of 1,000,000 micro-USD. Call at a suite's top level.
 */
import { afterAll, beforeAll, beforeEach } from 'vitest'
import { preloadEncoding } from '../../src/tokens/tiktoken.js'
import { sharedTokenCounter } from '../../src/tokens/worker.js'
import { startFaultUpstream, type FaultPlan, type FaultUpstream } from './fault-upstream.js'
import { startProxy, type TestProxy } from './proxy.js'
import { startRedis, type StartRedisOptions, type TestRedis } from './redis.js'

/** The running parts; set once `beforeAll` has run (`key` and `hash` before each test). */
export interface FaultStack {
  readonly redis: TestRedis
  readonly upstream: FaultUpstream
  readonly proxy: TestProxy
  /** The running test's raw key and its hash. */
  readonly key: string
  readonly hash: string
}

export interface FaultStackOptions {
  /** The name of each test's key. */
  name: string
  /** Added to the proxy's environment after the store's and the upstream's. */
  env?: Record<string, string>
  redis?: StartRedisOptions
  /** The upstream's plan at the start of each test (default: answer). */
  plan?: FaultPlan
}

export function useFaultStack(options: FaultStackOptions): FaultStack {
  const stack = {} as { redis: TestRedis; upstream: FaultUpstream; proxy: TestProxy; key: string; hash: string }
  beforeAll(async () => {
    // The proxy runs in this process and counts output with o200k: built first, so no stream meets the byte fallback.
    await preloadEncoding('o200k_base')
    // Its counting worker builds its own o200k on the first input count; on a loaded machine that first build can
    // outlast the count's timeout, and the request is charged its bound (by design): built first, here too.
    await sharedTokenCounter().warm(['o200k_base'])
    stack.redis = await startRedis(options.redis)
    stack.upstream = await startFaultUpstream()
    stack.proxy = await startProxy({ REDIS_URL: stack.redis.url, LOOPERS_OPENAI_BASE_URL: stack.upstream.url, ...options.env })
  })
  afterAll(async () => {
    await stack.proxy?.close()
    await stack.upstream?.close()
    await stack.redis?.stop()
  })
  beforeEach(async () => {
    stack.upstream.plan = { ...options.plan }
    stack.upstream.exchanges.length = 0
    const created = await stack.proxy.admin.createKey(options.name, ['openai'], { unlimited: true })
    stack.key = created.key
    stack.hash = created.record.hash
    await stack.proxy.admin.setBudget(stack.hash, { limits: { daily: 1_000_000 } })
  })
  return stack
}
