import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestKey } from '../support/e2e.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { startProxy, type TestProxy } from '../support/proxy.js'

// Faults of the embedded store: a database that cannot be opened, and one whose write lock another
// process holds past the busy timeout. Both fail closed: 503 budget_unavailable, nothing forwarded.
let dir: string
let fake: FakeOpenAi

const ask = (proxy: TestProxy, key: string): Promise<unknown> =>
  new OpenAI({ apiKey: key, baseURL: `${proxy.url}/openai/v1`, defaultHeaders: { 'X-Loopers-Provider-Key': 'sk-up' }, maxRetries: 0 })
    .chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'loopers-fault-db-'))
  fake = await startFakeOpenAi()
})
afterAll(async () => {
  await fake?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('embedded store faults', () => {
  it('a database that cannot be opened: the proxy starts, /health and every request answer 503, nothing is forwarded', async () => {
    // A regular file where the folder should be: mkdir fails on every attempt.
    writeFileSync(join(dir, 'not-a-folder'), '')
    const proxy = await startProxy({ LOOPERS_DB: join(dir, 'not-a-folder', 'loopers.db'), LOOPERS_OPENAI_BASE_URL: fake.url }, { waitForStore: false })
    try {
      expect((await fetch(`${proxy.url}/health`)).status).toBe(503)
      const before = fake.received.length
      const res = await fetch(`${proxy.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer lp-${'a'.repeat(43)}`, 'content-type': 'application/json', 'x-loopers-provider-key': 'sk-up' },
        body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
      })
      expect(res.status).toBe(503)
      expect(res.headers.get('x-loopers-error-code')).toBe('budget_unavailable')
      expect(fake.received.length).toBe(before)
      expect(proxy.logText()).toContain('check LOOPERS_DB')
    } finally {
      await proxy.close()
    }
  })

  it('a write lock held by another process past the busy timeout: 503 while held, served once released', async () => {
    const path = join(dir, 'locked.db')
    const proxy = await startProxy({ LOOPERS_DB: path, LOOPERS_OPENAI_BASE_URL: fake.url })
    const other = new DatabaseSync(path)
    try {
      const { key, hash } = await createTestKey(proxy, 'locked', ['openai'], { daily: 1_000_000 })
      const before = fake.received.length
      other.exec('BEGIN IMMEDIATE')
      const started = Date.now()
      const refused = await ask(proxy, key).catch((e: unknown) => e)
      const waited = Date.now() - started
      expect(refused).toBeInstanceOf(OpenAI.APIError)
      expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(503)
      expect(fake.received.length).toBe(before)
      // The busy timeout is short: a blocked event loop for a fraction of a second, not seconds.
      expect(waited).toBeLessThan(2_000)
      other.exec('COMMIT')
      await ask(proxy, key)
      expect(fake.received.length).toBe(before + 1)
      expect((await proxy.admin.status(hash))?.daily.heldMicros).toBe(0)
    } finally {
      other.close()
      await proxy.close()
    }
  })
})
