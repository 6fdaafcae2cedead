import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashKey, isProxyKey } from '../../src/keys.js'
import { KEY_INDEX } from '../../src/budget/redis/redis-keys.js'
import { WINDOW_NAMES } from '../../src/budget/types.js'
import { createBudgetFixture, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, STORE_KINDS, type TestStore } from '../support/stores.js'

describe.each(STORE_KINDS)('%s store', (kind) => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore(kind)
    f = await createBudgetFixture(server)
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  describe('key admin', () => {
    it('create → list → get → setBudget → status → revoke round trip', async () => {
      f.clock.set('2026-05-04T12:00:30.000Z')
      const { key, record } = await f.admin.createKey('ci-agent', ['openai', 'anthropic'])
      expect(isProxyKey(key)).toBe(true)
      expect(record).toEqual({
        hash: hashKey(key),
        name: 'ci-agent',
        providers: ['openai', 'anthropic'],
        active: true,
        createdAt: '2026-05-04T12:00:30.000Z',
        limits: {},
        sessionBudgetMicros: null,
        sessionMaxSteps: null,
        unlimited: false,
        rpm: null,
        loopLimit: null,
        loopWindowSeconds: null,
      })
      // The Redis store also indexes every key hash for listing.
      if (kind === 'redis') expect(await f.redis.sismember(KEY_INDEX, record.hash)).toBe(1)
      expect((await f.admin.listKeys()).map((r) => r.hash)).toContain(record.hash)
      expect(await f.admin.getKey(record.hash)).toEqual(record)

      const updated = await f.admin.setBudget(record.hash, {
        limits: { daily: 5_000_000, monthly: 50_000_000 },
        sessionBudgetMicros: 1_000_000,
        sessionMaxSteps: 20,
      })
      expect(updated).toMatchObject({ limits: { daily: 5_000_000, monthly: 50_000_000 }, sessionBudgetMicros: 1_000_000, sessionMaxSteps: 20 })
      // 0 removes a limit; untouched limits stay.
      const removed = await f.admin.setBudget(record.hash, { limits: { daily: 0, minute: 7 }, sessionMaxSteps: 0 })
      expect(removed).toMatchObject({ limits: { minute: 7, monthly: 50_000_000 }, sessionBudgetMicros: 1_000_000, sessionMaxSteps: null })
      expect(removed?.limits.daily).toBeUndefined()

      const r = await f.store.reserve({
        keyHash: record.hash, provider: 'anthropic', requestId: randomUUID(), minMicros: 5, maxMicros: 5, session: null,
      })
      expect(r.ok).toBe(true)
      const r2 = await f.store.reserve({
        keyHash: record.hash, provider: 'openai', requestId: randomUUID(), minMicros: 2, maxMicros: 2, session: null,
      })
      if (!r2.ok) throw new Error('refused')
      await f.store.settle(r2.reservation, 1)
      const status = await f.admin.status(record.hash)
      expect(status).toEqual({
        minute: { limitMicros: 7, spentMicros: 1, heldMicros: 5, requests: 2, resetsAt: new Date('2026-05-04T12:01:00.000Z') },
        hourly: { limitMicros: null, spentMicros: 1, heldMicros: 5, resetsAt: new Date('2026-05-04T13:00:00.000Z') },
        daily: { limitMicros: null, spentMicros: 1, heldMicros: 5, resetsAt: new Date('2026-05-05T00:00:00.000Z') },
        weekly: { limitMicros: null, spentMicros: 1, heldMicros: 5, resetsAt: new Date('2026-05-11T00:00:00.000Z') },
        monthly: { limitMicros: 50_000_000, spentMicros: 1, heldMicros: 5, resetsAt: new Date('2026-06-01T00:00:00.000Z') },
      })
      f.clock.advance(60_000)
      expect((await f.admin.status(record.hash))?.minute).toMatchObject({ spentMicros: 0, heldMicros: 0 })

      expect(await f.admin.revokeKey(record.hash)).toBe(true)
      expect(await f.admin.getKey(record.hash)).toMatchObject({ active: false })
      expect((await f.admin.listKeys()).find((k) => k.hash === record.hash)?.active).toBe(false)
    })

    it('never stores the raw key', async () => {
      const { key, record } = await f.admin.createKey('secret', ['gemini'])
      const stored = await f.raw.dump()
      expect(stored).toContain(record.hash)
      expect(stored).not.toContain(key)
      expect(stored).not.toContain(key.slice(3))
    })

    it('answers null / false for unknown or malformed hashes and writes nothing', async () => {
      const unknown = 'f'.repeat(64)
      expect(await f.admin.getKey(unknown)).toBeNull()
      expect(await f.admin.revokeKey(unknown)).toBe(false)
      expect(await f.admin.setBudget(unknown, { limits: { daily: 1 } })).toBeNull()
      expect(await f.admin.status(unknown)).toBeNull()
      expect(await f.admin.getKey('../etc')).toBeNull()
      expect(await f.raw.dump()).not.toContain(unknown)
    })

    it('rejects bad input', async () => {
      await expect(f.admin.createKey('x', [])).rejects.toThrow(RangeError)
      await expect(f.admin.createKey('', ['openai'])).rejects.toThrow(RangeError)
      await expect(f.admin.createKey('x', ['nope' as 'openai'])).rejects.toThrow(RangeError)
      const { record } = await f.admin.createKey('x', ['openai'])
      await expect(f.admin.setBudget(record.hash, { limits: { daily: -1 } })).rejects.toThrow(RangeError)
      await expect(f.admin.setBudget(record.hash, { limits: { daily: 0.5 } })).rejects.toThrow(RangeError)
      expect((await f.admin.getKey(record.hash))?.limits).toEqual({})
    })

    it('lists keys in creation order', async () => {
      f.clock.set('2030-01-01T00:00:00.000Z')
      const a = await f.admin.createKey('later-a', ['mistral'])
      f.clock.advance(1_000)
      const b = await f.admin.createKey('later-b', ['azure', 'bedrock'])
      const hashes = (await f.admin.listKeys()).map((k) => k.hash)
      expect(hashes.slice(-2)).toEqual([a.record.hash, b.record.hash])
      expect(WINDOW_NAMES.every((w) => a.record.limits[w] === undefined)).toBe(true)
    })
  })
})
