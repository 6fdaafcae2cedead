import { afterAll, beforeAll } from 'vitest'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import { startFakeOpenAi, type FakeOpenAi } from './fake-openai.js'
import { startProxyProcess, type ProxyProcess } from './proxy-process.js'
import { waitReady } from './proxy.js'
import { startRedis, type TestRedis } from './redis.js'

/** An upstream the stack starts and stops: a fake provider server. */
export interface Upstream {
  url: string
  close(): Promise<void>
}

export interface SpawnedStack<U extends Upstream = FakeOpenAi> {
  redis: TestRedis
  fake: U
  /** `loopers serve` in its own process (its event loop is not the test's). */
  proxy: ProxyProcess
  admin: KeyAdmin
}

/**
 * A Redis, a fake OpenAI upstream and a spawned proxy pointed at both (server-held upstream key), for the
 * suite; `env` (read when the suite starts) adds or overrides the proxy's environment.
 */
export function useSpawnedOpenAiStack(env: () => Record<string, string> = () => ({})): SpawnedStack {
  return useSpawnedStack(() => startFakeOpenAi(), env)
}

/** useSpawnedOpenAiStack with the OpenAI upstream `startUpstream` starts (a fake with answers of its own). */
export function useSpawnedStack<U extends Upstream>(startUpstream: () => Promise<U>, env: () => Record<string, string> = () => ({})): SpawnedStack<U> {
  const stack = {} as SpawnedStack<U>
  let client: RedisClient | undefined
  beforeAll(async () => {
    stack.redis = await startRedis()
    stack.fake = await startUpstream()
    stack.proxy = await startProxyProcess({
      REDIS_URL: stack.redis.url,
      LOOPERS_OPENAI_BASE_URL: stack.fake.url,
      LOOPERS_OPENAI_API_KEY: 'sk-upstream',
      ...env(),
    })
    client = createRedisClient({ url: stack.redis.url, clusterNodes: null, commandTimeoutMs: 2_000 })
    await waitReady(client)
    stack.admin = createKeyAdmin(client)
  }, 60_000)
  afterAll(async () => {
    await stack.proxy?.stop()
    client?.disconnect()
    await stack.fake?.close()
    await stack.redis?.stop()
  })
  return stack
}
