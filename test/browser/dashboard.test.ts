import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatUsd } from '../../src/money.js'
import { createTestKey, settle } from '../support/e2e.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { fileURLToPath } from 'node:url'
import { startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

/**
 * The spend dashboard in a real browser (Debian's chromium, driven by playwright-core): against a running proxy with
 * keys and spend, the page shows them, redraws after a new request without reloading, and asks for the admin token
 * when one is set. LOOPERS_SCREENSHOT=<path> also writes the screenshot the README shows (docs/dashboard.png).
 */

const CHROMIUM = '/usr/bin/chromium'
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
const TOKEN = 'browser-admin-token-0123456789abcdef'
/** Prices that make a short test request cost cents, so the page (and its screenshot) shows amounts like real ones. */
const PRICES = fileURLToPath(new URL('../fixtures/pricing/dashboard-prices.json', import.meta.url))

let redis: TestRedis
let fake: FakeOpenAi
let open: TestProxy
let guarded: TestProxy
let profile: string
let browser: BrowserContext
let agentKey: string
let batchKey: string
const pageErrors: string[] = []

/** A new browser context on a new empty profile directory. */
async function launch(): Promise<BrowserContext> {
  const dir = mkdtempSync(join(tmpdir(), 'loopers-chromium-'))
  profile = dir
  return chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1100, height: 900 } })
}

async function ask(proxy: TestProxy, key: string, maxTokens: number): Promise<void> {
  await new OpenAI({ baseURL: `${proxy.url}/openai/v1`, apiKey: key, maxRetries: 0 }).chat.completions.create({
    model: 'gpt-test',
    messages: [{ role: 'user', content: 'hello there' }],
    max_tokens: maxTokens,
  })
  await settle(proxy)
}

async function newPage(url: string): Promise<Page> {
  const page = await browser.newPage()
  page.on('pageerror', (error) => pageErrors.push(error.message))
  await page.goto(url)
  return page
}

/** USD as the page and the CLI print it. */
const usd = (value: number): string => formatUsd(Math.round(value * 1e6))

const card = (page: Page, name: string) => page.locator('article.key', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) })

beforeAll(async () => {
  redis = await startRedis()
  fake = await startFakeOpenAi()
  const env = { REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_OPENAI_API_KEY: 'sk-server-held-0123456789', LOOPERS_PRICING_PATH: PRICES }
  open = await startProxy(env)
  guarded = await startProxy({ ...env, LOOPERS_ADMIN_TOKEN: TOKEN })
  const agent = await createTestKey(open, 'research-agent', ['openai', 'anthropic'], { daily: 2_000_000, monthly: 25_000_000 })
  agentKey = agent.key
  await ask(open, agentKey, 60)
  // An hourly limit in whole cents that the spend so far fills to 80-85 %: its bar turns amber.
  const spent = (await open.admin.status(agent.hash))!.hourly.spentMicros
  await open.admin.setBudget(agent.hash, { limits: { hourly: Math.ceil(spent / 0.85 / 10_000) * 10_000 } })
  batchKey = (await createTestKey(open, 'nightly-batch', ['openai'], { daily: 5_000_000 })).key
  const revoked = await createTestKey(open, 'old-ci-key', ['gemini'], { weekly: 5_000_000 })
  await open.admin.revokeKey(revoked.hash)
  browser = await launch()
})

afterAll(async () => {
  await browser?.close()
  if (profile !== undefined) rmSync(profile, { recursive: true, force: true })
  await open?.close()
  await guarded?.close()
  await fake?.close()
  await redis?.stop()
})

describe('the spend dashboard in Chromium', () => {
  it('shows every key with its windows, spend and bars, and redraws after a new request without reloading', async () => {
    const page = await newPage(`${open.server.adminUrl}/`)
    const agent = card(page, 'research-agent')
    await agent.waitFor()
    const api = (await (await fetch(`${open.server.adminUrl}/api/keys`)).json()) as Array<{ hash: string; name: string; windows: Record<string, { spent_usd: number }> }>
    const agentJson = api.find((k) => k.name === 'research-agent')!
    await expect.poll(() => agent.locator('code').textContent()).toBe(agentJson.hash.slice(0, 12))
    await expect.poll(() => agent.locator('.meta').textContent()).toBe('providers: openai, anthropic')
    await expect.poll(() => agent.locator('.badge').textContent()).toBe('active')
    await expect.poll(() => card(page, 'old-ci-key').locator('.badge').textContent()).toBe('revoked')
    const daily = agent.locator('tr[data-window="daily"]')
    await expect.poll(() => daily.locator('td').nth(1).textContent()).toBe('$2.00')
    const spentBefore = agentJson.windows.daily!.spent_usd
    expect(spentBefore).toBeGreaterThan(0)
    await expect.poll(() => daily.locator('td.spent').textContent()).toBe(usd(spentBefore))
    await expect.poll(() => agent.locator('tr[data-window="minute"] .unlimited').textContent()).toBe('no limit')
    // The hourly limit is over 80 % used: the bar turns amber.
    const hourly = agent.locator('tr[data-window="hourly"] .bar-spent')
    expect(await hourly.getAttribute('class')).toMatch(/warn|over/)
    expect(await hourly.evaluate((el) => el.getBoundingClientRect().width)).toBeGreaterThan(0)
    expect(await page.locator('#token-form').isHidden()).toBe(true)
    // Sections whose endpoints this server does not have yet keep their placeholders.
    for (const id of ['sessions', 'events', 'history']) await expect.poll(() => page.locator(`#${id} .placeholder`).textContent()).toBe('Not recorded by this server yet.')

    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 7))
    const batchDaily = card(page, 'nightly-batch').locator('tr[data-window="daily"] td.spent')
    expect(await batchDaily.textContent()).toBe('$0.00')
    await ask(open, batchKey, 30)
    await expect.poll(() => batchDaily.textContent(), { timeout: 10_000 }).not.toBe('$0.00')
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(7) // same document: not reloaded
    expect(await page.content()).not.toContain(agentKey)
    expect(await page.content()).not.toContain('lp-')

    const png = await page.screenshot({ fullPage: true })
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG')
    const target = process.env.LOOPERS_SCREENSHOT
    if (target !== undefined && target !== '') writeFileSync(target, png)
    expect(pageErrors).toEqual([])
    await page.close()
  })

  it('asks for the admin token once, keeps it for the tab session, and refuses a wrong one', async () => {
    const page = await newPage(`${guarded.server.adminUrl}/`)
    const form = page.locator('#token-form')
    await expect.poll(() => form.isVisible()).toBe(true)
    await expect.poll(() => page.locator('#content').isHidden()).toBe(true)
    await page.fill('#token-input', 'not-the-token')
    await page.click('#token-form button')
    await expect.poll(() => page.locator('#token-error').isVisible()).toBe(true)
    await expect.poll(() => form.isVisible()).toBe(true)
    await page.fill('#token-input', TOKEN)
    await page.click('#token-form button')
    await expect.poll(() => card(page, 'research-agent').isVisible()).toBe(true)
    await expect.poll(() => form.isHidden()).toBe(true)
    await page.reload()
    await expect.poll(() => card(page, 'research-agent').isVisible()).toBe(true)
    expect(await form.isHidden()).toBe(true)
    expect(await page.content()).not.toContain(TOKEN)
    expect(pageErrors).toEqual([])
    await page.close()
  })
})
