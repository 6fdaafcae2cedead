/** Stores a key record with a chosen hash, as createKey would, so tests can make two hashes share a prefix. */
import { DatabaseSync } from 'node:sqlite'
import { Redis } from 'ioredis'
import { KEY_INDEX, recordKey } from '../../src/budget/redis/redis-keys.js'
import type { TestStore } from './stores.js'

export async function plantKey(server: TestStore, hash: string, name: string): Promise<void> {
  const createdAt = '2026-05-04T12:00:00.000Z'
  if (server.redis !== null) {
    const redis = new Redis(server.redis.url, { maxRetriesPerRequest: 0 })
    try {
      await redis.hset(recordKey(hash), { name, providers: 'openai', active: '1', created_at: createdAt })
      await redis.sadd(KEY_INDEX, hash)
    } finally {
      redis.disconnect()
    }
    return
  }
  const db = new DatabaseSync(server.dbPath as string, { timeout: 5_000 })
  try {
    db.prepare("INSERT INTO keys (hash, name, providers, active, created_at) VALUES (?, ?, 'openai', 1, ?)").run(hash, name, createdAt)
  } finally {
    db.close()
  }
}
