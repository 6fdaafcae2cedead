import { randomUUID } from 'node:crypto'
import type { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { startProxyProcess, type ProxyProcess } from '../support/proxy-process.js'
import { waitReady } from '../support/proxy.js'
import { startRedisCluster, type TestCluster } from '../support/redis-cluster.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Every request has the same body, so its reservation (body bytes, at 1 micro-USD per token) is
// known; the fake upstream reports exactly that usage, so each admitted request costs what it held.
const BODY = JSON.stringify({ model: 'embed-test', input: 'flood' })
const COST = Buffer.byteLength(BODY)
const ADMITTED = 50
const REQUESTS = 400
// This file tests admission, not the fail-closed timeout: a loaded 2-core CI machine can take longer
// than the 500 ms default to answer a burst of 400 scripts, and a timeout refuses (503) — safe, but noise here.
const FLOOD_REDIS_TIMEOUT_MS = 5_000

let fake: FakeOpenAi

beforeAll(async () => {
  fake = await startFakeOpenAi({ promptTokens: COST })
})
afterAll(async () => {
  await fake?.close()
})

/** Sends REQUESTS concurrent requests for one key, alternating between the proxies. */
async function flood(proxies: ProxyProcess[], key: string): Promise<number[]> {
  return Promise.all(
    Array.from({ length: REQUESTS }, (_, i) =>
      fetch(`${proxies[i % proxies.length]!.url}/openai/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-up' },
        body: BODY,
      }).then(async (r) => {
        await r.arrayBuffer()
        return r.status
      }),
    ),
  )
}

async function floodAndCheck(proxies: ProxyProcess[], admin: KeyAdmin, created?: { key: string; record: { hash: string } }): Promise<void> {
  const { key, record } = created ?? (await admin.createKey(`flood-${randomUUID()}`, ['openai'], { unlimited: true, loopLimit: 0 }))
  await admin.setBudget(record.hash, { limits: { daily: ADMITTED * COST } })
  const before = fake.received.length
  const statuses = await flood(proxies, key)
  expect(statuses.filter((s) => s === 200)).toHaveLength(ADMITTED)
  expect(statuses.filter((s) => s === 429)).toHaveLength(REQUESTS - ADMITTED)
  // The upstream's own count is the judge: never more requests served than the budget holds.
  expect(fake.received.length - before).toBe(ADMITTED)
  const status = await admin.status(record.hash)
  expect(status!.daily.spentMicros).toBe(ADMITTED * COST)
  expect(status!.daily.heldMicros).toBe(0)
}

describe('several proxy processes sharing one Redis', () => {
  let redis: TestRedis
  let client: RedisClient
  let proxies: ProxyProcess[] = []

  beforeAll(async () => {
    redis = await startRedis()
    client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: 2_000 })
    await waitReady(client)
    const env = { REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_REDIS_TIMEOUT_MS: String(FLOOD_REDIS_TIMEOUT_MS) }
    proxies = await Promise.all([startProxyProcess(env), startProxyProcess(env)])
  })
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    client?.disconnect()
    await redis?.stop()
  })

  it(`admit exactly ${ADMITTED} of ${REQUESTS} concurrent requests across both, and the upstream serves ${ADMITTED}`, async () => {
    await floodAndCheck(proxies, createKeyAdmin(client))
  })

  it('exit cleanly on SIGTERM', async () => {
    const extra = await startProxyProcess({ REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url })
    expect(await extra.stop()).toBe(0)
  })
})

describe('a three-master Redis Cluster', () => {
  let cluster: TestCluster
  let client: RedisClient
  let proxies: ProxyProcess[] = []

  beforeAll(async () => {
    cluster = await startRedisCluster(3)
    client = createRedisClient({ url: 'redis://127.0.0.1:6379', clusterNodes: cluster.nodes, commandTimeoutMs: 2_000 })
    await waitReady(client)
    const env = {
      REDIS_CLUSTER_NODES: cluster.nodes.join(','),
      LOOPERS_OPENAI_BASE_URL: fake.url,
      LOOPERS_REDIS_TIMEOUT_MS: String(FLOOD_REDIS_TIMEOUT_MS),
    }
    proxies = await Promise.all([startProxyProcess(env), startProxyProcess(env)])
  }, 60_000)
  afterAll(async () => {
    await Promise.all(proxies.map((p) => p.stop()))
    client?.disconnect()
    await cluster?.stop()
  })

  it('floods two proxies through the cluster with zero overshoot, for keys on every master', async () => {
    const admin = createKeyAdmin(client)
    const cluster = client as Cluster
    // Pick one key per master: a key's budget data lives in the slot of its {hash} tag.
    const byMaster = new Map<string, { key: string; record: { hash: string } }>()
    for (let i = 0; i < 60 && byMaster.size < 3; i++) {
      const created = await admin.createKey(`flood-${i}`, ['openai'], { unlimited: true, loopLimit: 0 })
      const slot = Number(await cluster.call('CLUSTER', 'KEYSLOT', `{${created.record.hash}}`))
      const master = cluster.slots[slot]?.[0]
      if (master !== undefined && !byMaster.has(master)) byMaster.set(master, created)
    }
    expect(byMaster.size).toBe(3)
    for (const created of byMaster.values()) await floodAndCheck(proxies, admin, created)
  })
})
