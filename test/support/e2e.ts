/**
 * Mechanics the e2e suites share: a fresh key with its budget, a key's daily window once settled, its
 * summary lines, a flood of concurrent requests, and the checks every provider's suite makes the same way.
 */
import { expect } from 'vitest'
import type { WindowName } from '../../src/budget/types.js'
import type { Micros } from '../../src/money.js'
import type { ProviderId } from '../../src/providers/types.js'
import { daily, summaries, type Totals } from './fault-checks.js'
import type { Received } from './fake-server.js'
import { eventually, type TestProxy } from './proxy.js'

/**
 * Creates a key for `providers` and, when given, sets its `limits`; returns the raw key and its hash.
 * The key is marked `unlimited` (a key without limits is refused: budget_not_set) and its loop guard is
 * off: these suites send one request many times at once (floods), which the guard rightly reads as a
 * loop; the loop guard has suites of its own (test/integration/loop-guard, test/e2e/loop-guard).
 */
export async function createTestKey(
  proxy: TestProxy,
  name: string,
  providers: ProviderId[],
  limits?: Partial<Record<WindowName, Micros>>,
): Promise<{ key: string; hash: string }> {
  const created = await proxy.admin.createKey(name, providers, { unlimited: true, loopLimit: 0 })
  if (limits !== undefined) await proxy.admin.setBudget(created.record.hash, { limits })
  return { key: created.key, hash: created.record.hash }
}

/** The daily window of `hash` as it stands now, holds of running requests included. */
export function currentDaily(proxy: TestProxy, hash: string): Promise<Totals> {
  return daily(proxy.admin, hash)
}

/** Resolves once every request so far has settled on each of `proxies` (settlement lands just after the answer). */
export async function settle(...proxies: TestProxy[]): Promise<void> {
  for (const running of proxies) await eventually(() => running.inflight() === 0, 'settlement')
}

/** The daily window of `hash` once every request so far has settled on `proxy` and `others`. */
export async function settledDaily(proxy: TestProxy, hash: string, others: TestProxy[] = []): Promise<Totals> {
  await settle(proxy, ...others)
  return currentDaily(proxy, hash)
}

/** The summary line of the key's `n`th request, once the proxy has written it (it follows the answer). */
export async function summaryAt(proxy: TestProxy, hash: string, n: number): Promise<Record<string, unknown>> {
  await eventually(() => summaries(proxy, hash).length >= n, `summary line ${n}`)
  return summaries(proxy, hash)[n - 1]!
}

/** The summary line of the key's latest request written so far; `{}` before the first. */
export function latestSummary(proxy: TestProxy, hash: string): Record<string, unknown> {
  return summaries(proxy, hash).at(-1) ?? {}
}

/** Sends `count` requests at once; resolves with the answers of those admitted and the errors of those refused. */
export async function flood<T>(count: number, send: () => Promise<T>): Promise<{ ok: T[]; refused: unknown[] }> {
  const results = await Promise.allSettled(Array.from({ length: count }, () => send()))
  return {
    ok: results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])),
    refused: results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : [])),
  }
}

/** What an upstream received minus its free token-counting calls (the proxy's exact counts near a limit). */
export function metered<R extends Received>(received: R[]): R[] {
  return received.filter((r) => !/count_tokens|:countTokens|\/count-tokens/.test(r.url))
}

/** Nothing the upstream received may contain the proxy key or a Loopers control header. */
export function expectNoProxyKeyIn(received: Received[], key: string): void {
  for (const request of received) {
    expect(JSON.stringify(request.headers)).not.toContain(key)
    expect(request.url).not.toContain('lp-')
    expect(request.raw).not.toContain(key)
    expect(Object.keys(request.headers).filter((h) => h.startsWith('x-loopers-'))).toEqual([])
  }
}

/**
 * A stream of one-token " tok" chunks cut at a budget for `chunks` of them (counted × `factor`, the model's
 * estimate factor, rounded up): the client got exactly those whole chunks (the meter checks event by event,
 * however reads group them) and the proxy counted the next one, the one that did not fit.
 */
export function expectCutAtBudget(text: string, counted: number, factor = 1, chunks = 20): void {
  expect(text).toBe(' tok'.repeat(chunks))
  expect(counted).toBe(Math.ceil((chunks + 1) * factor))
}
