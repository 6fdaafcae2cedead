import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { budgetStatus } from '../../src/cli/budget.js'
import { listKeys } from '../../src/cli/keys.js'
import { ConfigError, loadConfig } from '../../src/config.js'
import { startServer } from '../../src/server.js'
import { createTestKey, settle } from '../support/e2e.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { freePort, startRedis, type TestRedis } from '../support/redis.js'

/**
 * The admin listener's dashboard and JSON API: the same shapes as `keys list --json` and `budget status --json`,
 * the bearer token on every route but /health and /ready, the strict headers, and no secret in any answer.
 */

const TOKEN = 'admin-token-for-tests-0123456789'
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

let redis: TestRedis
let fake: FakeOpenAi
let open: TestProxy
let guarded: TestProxy

beforeAll(async () => {
  redis = await startRedis()
  fake = await startFakeOpenAi()
  const env = { REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_OPENAI_API_KEY: 'sk-server-held-0123456789' }
  open = await startProxy(env)
  guarded = await startProxy({ ...env, LOOPERS_ADMIN_TOKEN: TOKEN })
})

afterAll(async () => {
  await open?.close()
  await guarded?.close()
  await fake?.close()
  await redis?.stop()
})

const get = (proxy: TestProxy, path: string, headers: Record<string, string> = {}) => fetch(`${proxy.server.adminUrl}${path}`, { headers })

describe('GET /api/keys and /api/keys/{hash}', () => {
  it('serve each key in the keys-list shape plus its windows in the budget-status shape, spend included', async () => {
    const { key, hash } = await createTestKey(open, 'api-shape', ['openai'], { daily: 2_000_000, hourly: 500_000 })
    await new OpenAI({ baseURL: `${open.url}/openai/v1`, apiKey: key, maxRetries: 0 }).chat.completions.create({
      model: 'gpt-test',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 20,
    })
    await settle(open)
    const response = await get(open, '/api/keys')
    expect(response.status).toBe(200)
    const keys = (await response.json()) as Array<Record<string, unknown>>
    const listed = JSON.parse(await listKeys(open.admin, true)) as Array<Record<string, unknown>>
    expect(keys.map(({ windows: _windows, ...rest }) => rest)).toEqual(listed)
    const mine = keys.find((k) => k.hash === hash)!
    const status = JSON.parse(await budgetStatus(open.admin, hash, true)) as { windows: unknown }
    expect(mine.windows).toEqual(status.windows)
    const daily = (mine.windows as Record<string, { spent_usd: number; limit_usd: number }>).daily!
    expect(daily.limit_usd).toBe(2)
    expect(daily.spent_usd).toBeGreaterThan(0)

    const one = await get(open, `/api/keys/${hash.toUpperCase()}`)
    expect(one.status).toBe(200)
    expect(await one.json()).toEqual(mine)
    expect(JSON.stringify(keys)).not.toContain(key)
  })

  it('answer 404 not_found for an unknown or malformed hash', async () => {
    for (const path of [`/api/keys/${'0'.repeat(64)}`, '/api/keys/not-a-hash']) {
      const response = await get(open, path)
      expect(response.status).toBe(404)
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('not_found')
    }
  })

  it('name a key by a unique hash prefix of 8+ digits or by its name; an ambiguous name is a 400', async () => {
    const { hash } = await createTestKey(open, 'api-by-name', ['openai'], { daily: 1_000_000 })
    for (const ref of [hash.slice(0, 8), 'api-by-name']) {
      const response = await get(open, `/api/keys/${ref}`)
      expect(response.status, ref).toBe(200)
      expect(((await response.json()) as { hash: string }).hash).toBe(hash)
    }
    await createTestKey(open, 'api-twin', ['openai'], { daily: 1_000_000 })
    await createTestKey(open, 'api-twin', ['openai'], { daily: 1_000_000 })
    const ambiguous = await get(open, '/api/keys/api-twin')
    expect(ambiguous.status).toBe(400)
    expect(((await ambiguous.json()) as { error: { code: string; message: string } }).error.message).toMatch(/ambiguous key: 2 keys match/)
    expect((await get(open, `/api/keys/${hash.slice(0, 7)}`)).status).toBe(404)
  })

  it('answer 503 budget_unavailable while the store is away', async () => {
    const away = await startProxy({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` }, { waitForStore: false })
    try {
      const response = await get(away, '/api/keys')
      expect(response.status).toBe(503)
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('budget_unavailable')
    } finally {
      await away.close()
    }
  })
})

describe('GET / (the dashboard page)', () => {
  it('serves one HTML page with its own script and style only, under a strict Content-Security-Policy', async () => {
    const page = await get(open, '/')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toContain('text/html')
    const html = await page.text()
    expect(html).toContain('<script src="/dashboard.js"')
    expect(html).not.toMatch(/https?:\/\//) // nothing from elsewhere: works offline
    expect(html).not.toMatch(/<script>(?!<)/)
    for (const path of ['/', '/dashboard.js', '/dashboard.css', '/api/keys', '/metrics', '/health']) {
      const response = await get(open, path)
      expect(response.headers.get('content-security-policy'), path).toBe(CSP)
      expect(response.headers.get('x-content-type-options'), path).toBe('nosniff')
      expect(response.headers.get('referrer-policy'), path).toBe('no-referrer')
    }
    expect((await get(open, '/dashboard.js')).headers.get('content-type')).toContain('text/javascript')
  })
})

describe('LOOPERS_ADMIN_TOKEN', () => {
  it('guards every admin route but /health and /ready; / answers 401 with the page that asks for the token', async () => {
    for (const path of ['/api/keys', `/api/keys/${'0'.repeat(64)}`, '/metrics']) {
      for (const auth of [undefined, 'Bearer wrong-token', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`]) {
        const response = await get(guarded, path, auth === undefined ? {} : { authorization: auth })
        expect(response.status, `${path} ${auth}`).toBe(401)
        expect(response.headers.get('x-loopers-error-code')).toBe('invalid_key')
        expect(await response.text()).not.toContain(TOKEN)
      }
      expect((await get(guarded, path, { authorization: `Bearer ${TOKEN}` })).status, path).not.toBe(401)
    }
    const page = await get(guarded, '/')
    expect(page.status).toBe(401)
    expect(await page.text()).toContain('id="token-form"')
    expect((await get(guarded, '/', { authorization: `Bearer ${TOKEN}` })).status).toBe(200)
    for (const path of ['/health', '/ready', '/dashboard.js', '/dashboard.css']) expect((await get(guarded, path)).status, path).toBe(200)
  })

  it('is required to bind the admin listener beyond loopback: start-up refuses with one line', async () => {
    const config = loadConfig({ REDIS_URL: redis.url, HOST: '127.0.0.1', PORT: '0', LOOPERS_ADMIN_PORT: '0', LOOPERS_ADMIN_HOST: '0.0.0.0' })
    const refused = await startServer(config).then(
      async (s) => {
        await s.close(0)
        return null
      },
      (error: unknown) => error,
    )
    expect(refused).toBeInstanceOf(ConfigError)
    expect((refused as ConfigError).problems).toHaveLength(1)
    expect((refused as ConfigError).problems[0]).toContain('LOOPERS_ADMIN_TOKEN')
    for (const host of ['127.0.0.1', 'localhost', '::1']) {
      expect(() => loadConfig({ LOOPERS_ADMIN_HOST: host })).not.toThrow()
    }
  })
})
