import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { formatUsd } from '../../src/money.js'
import { createTestKey, latestSummary, settle } from '../support/e2e.js'
import { startFakeOpenAi, type FakeOpenAi } from '../support/fake-openai.js'
import { fileURLToPath } from 'node:url'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
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

const openai = (key: string, headers: Record<string, string> = {}) =>
  new OpenAI({ baseURL: `${open.url}/openai/v1`, apiKey: key, maxRetries: 0, defaultHeaders: headers })

/** One refusal (a budget of one cent) and one stream cut at its budget, as the events section shows them. */
async function refuseAndCut(): Promise<void> {
  const tiny = await createTestKey(open, 'tiny-budget', ['openai'], { daily: 10_000 })
  await expect(openai(tiny.key).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(OpenAI.RateLimitError)
  const streamer = await createTestKey(open, 'stream-agent', ['openai'], { daily: 5_000_000 })
  const body = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'go' }], stream: true as const, max_tokens: 900 }
  fake.options = { chunks: 1 }
  for await (const _ of await openai(streamer.key).chat.completions.create(body)) void _
  await settle(open)
  const inputBound = Number(latestSummary(open, streamer.hash).inputBound)
  const spent = (await open.admin.status(streamer.hash))!.daily.spentMicros
  // Room for the input and about 40 output tokens: the 200-chunk stream is cut.
  await open.admin.setBudget(streamer.hash, { limits: { daily: spent + inputBound * 4_000 + 40 * 10_000 } })
  fake.options = { chunks: 200, chunkDelayMs: 1 }
  const cut = await (async () => {
    for await (const _ of await openai(streamer.key).chat.completions.create(body)) void _
  })().catch((e: unknown) => e)
  expect((cut as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded')
  fake.options = {}
  await settle(open)
  await eventually(async () => ((await (await fetch(`${open.server.adminUrl}/api/events`)).json()) as unknown[]).length === 2, 'events recorded')
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
  const env = { REDIS_URL: redis.url, LOOPERS_OPENAI_BASE_URL: fake.url, LOOPERS_OPENAI_API_KEY: 'sk-server-held-0123456789', LOOPERS_PRICING_PATH: PRICES, LOOPERS_STREAM_SLICE_TOKENS: '16' }
  open = await startProxy(env)
  guarded = await startProxy({ ...env, LOOPERS_ADMIN_TOKEN: TOKEN })
  const agent = await createTestKey(open, 'research-agent', ['openai', 'anthropic'], { daily: 2_000_000, monthly: 25_000_000 })
  agentKey = agent.key
  await ask(open, agentKey, 60)
  // A live session of the agent, two steps in.
  for (let i = 0; i < 2; i++) {
    await openai(agentKey, { 'X-Loopers-Session-ID': 'task-1138', 'X-Loopers-Session-Budget': '0.5', 'X-Loopers-Session-Max-Steps': '25' }).chat.completions.create({
      model: 'gpt-test',
      messages: [{ role: 'user', content: `step ${i}` }],
      max_tokens: 20,
    })
  }
  await settle(open)
  // An hourly limit in whole cents that the spend so far fills to 80-85 %: its bar turns amber.
  const spent = (await open.admin.status(agent.hash))!.hourly.spentMicros
  await open.admin.setBudget(agent.hash, { limits: { hourly: Math.ceil(spent / 0.85 / 10_000) * 10_000 } })
  await settle(open)
  await refuseAndCut()
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
    // The live session: its key, id, spend and steps of its limit.
    const session = page.locator('#sessions tr[data-session="task-1138"]')
    const sessionJson = ((await (await fetch(`${open.server.adminUrl}/api/sessions`)).json()) as Array<{ id: string; spent_usd: number }>).find((x) => x.id === 'task-1138')!
    await expect.poll(() => session.locator('td').nth(0).textContent()).toBe(`research-agent ${agentJson.hash.slice(0, 8)}`)
    expect(await session.locator('td').nth(2).textContent()).toBe(usd(sessionJson.spent_usd))
    expect(sessionJson.spent_usd).toBeGreaterThan(0)
    expect(await session.locator('td').nth(4).textContent()).toBe('2 / 25')
    expect(await session.locator('td').nth(5).textContent()).toBe('$0.50')
    // The refusal and the cut-off, newest first, with the key's name and the refusing window.
    const events = page.locator('#events tr[data-kind]')
    await expect.poll(() => events.count()).toBe(2)
    expect(await events.nth(0).locator('td').allTextContents()).toEqual(expect.arrayContaining(['stream cut', 'openai', 'budget_exceeded', 'daily']))
    expect(await events.nth(0).locator('td').nth(2).textContent()).toMatch(/^stream-agent [0-9a-f]{8}$/)
    expect(await events.nth(1).locator('td').allTextContents()).toEqual(expect.arrayContaining(['refused', 'budget_exceeded', 'daily']))
    expect(await events.nth(1).locator('td').nth(2).textContent()).toMatch(/^tiny-budget [0-9a-f]{8}$/)
    // The history chart: 30 bars per key, today's the agent's settled spend, the bar drawn to scale.
    const chart = page.locator(`#history figure[data-hash="${agentJson.hash}"]`)
    await expect.poll(() => chart.locator('rect.history-bar').count()).toBe(30)
    const today = new Date().toISOString().slice(0, 10)
    const todayBar = chart.locator(`rect[data-date="${today}"]`)
    const history = (await (await fetch(`${open.server.adminUrl}/api/keys/${agentJson.hash}/history?days=30`)).json()) as { days: Array<{ spent_usd: number }> }
    expect(Number(await todayBar.getAttribute('data-spent'))).toBe(history.days.at(-1)!.spent_usd)
    expect(history.days.at(-1)!.spent_usd).toBeGreaterThan(0)
    expect(await todayBar.evaluate((el) => el.getBoundingClientRect().height)).toBeGreaterThan(10)
    expect(await chart.locator('rect.history-bar').first().getAttribute('height')).toBe('0')

    await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 7))
    const batchDaily = card(page, 'nightly-batch').locator('tr[data-window="daily"] td.spent')
    expect(await batchDaily.textContent()).toBe('$0.00')
    await ask(open, batchKey, 30)
    await expect.poll(() => batchDaily.textContent(), { timeout: 10_000 }).not.toBe('$0.00')
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(7) // same document: not reloaded
    // The chart redraws too (it is fetched just after the key list).
    const batchHash = await card(page, 'nightly-batch').getAttribute('data-hash')
    await expect.poll(() => page.locator(`#history figure[data-hash="${batchHash}"] figcaption`).textContent()).not.toContain('$0.00 in')
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
