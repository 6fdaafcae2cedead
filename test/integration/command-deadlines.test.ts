import { Command } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import type { BudgetStore } from '../../src/budget/types.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { createBudgetFixture, reserveInput, type BudgetFixture } from '../support/budget-fixture.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// The budget scripts' command timeout is one timer per timeout length watching the commands in the order
// sent (src/budget/redis/command-deadlines.ts), not ioredis's timer per command: these tests hold it to what
// ioredis's own timeout did.
const TIMEOUT_MS = 300
/** How late a timed-out command may fail on a loaded machine. */
const SLACK_MS = 250

let server: TestRedis
let f: BudgetFixture
let client: RedisClient
let store: BudgetStore

beforeAll(async () => {
  server = await startRedis()
  f = await createBudgetFixture(server.url)
  client = createRedisClient({ url: server.url, clusterNodes: null, commandTimeoutMs: TIMEOUT_MS })
  store = createBudgetStore(client, { now: f.clock.now })
  await new Promise((ready) => (client.status === 'ready' ? ready(null) : client.once('ready', ready)))
})
afterAll(async () => {
  client?.disconnect()
  await f?.close()
  await server?.stop()
})

/** Milliseconds from now until `promise` rejects with StoreUnavailableError. */
/**
 * How long the call `call` makes takes to fail with StoreUnavailableError, timed from just before the call: the
 * command's deadline is stamped inside it, so a clock started after it returns could read short by however long
 * the process was descheduled in between.
 */
async function failsAfter(call: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await expect(call()).rejects.toBeInstanceOf(StoreUnavailableError)
  return performance.now() - started
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('what the script commands rely on in ioredis (fails if an upgrade changes it)', () => {
  it('the client hands each command its commandTimeout through Command#setTimeout, and its reply through transformReply before it resolves', async () => {
    const seen: { timeouts: number[]; resolvedAtReply: boolean | null } = { timeouts: [], resolvedAtReply: null }
    class Probe extends Command {
      override setTimeout(ms: number): void {
        seen.timeouts.push(ms)
      }
      override transformReply(result: Buffer | Buffer[]): string | string[] | Buffer | Buffer[] {
        seen.resolvedAtReply = this.isResolved
        return super.transformReply(result)
      }
    }
    const probe = new Probe('ping', [], { replyEncoding: 'utf8' })
    client.sendCommand(probe)
    expect(await probe.promise).toBe('PONG')
    expect(seen).toEqual({ timeouts: [TIMEOUT_MS], resolvedAtReply: false })
    expect(probe.isResolved).toBe(true)
  })
})

describe('script commands on a frozen Redis', () => {
  it('each fails at its own deadline, not before, and not much later', async () => {
    const hash = await f.newKey({ limits: { daily: 1_000_000 } })
    const held = await f.reserved(hash, 10)
    server.pause()
    let elapsed: number[]
    try {
      const first = failsAfter(() => store.reserve(reserveInput(hash, 1)))
      await sleep(100)
      const second = failsAfter(() => store.settle(held, 5))
      await sleep(100)
      const third = failsAfter(() => store.reserve(reserveInput(hash, 1)))
      elapsed = await Promise.all([first, second, third])
    } finally {
      server.resume()
    }
    for (const ms of elapsed) {
      expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 1)
      expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS)
    }
  })

  it('a settle whose reply came late ran once: the retry finds it settled and charges nothing twice', async () => {
    const hash = await f.newKey({ limits: { daily: 1_000_000 } })
    const reservation = await f.reserved(hash, 400)
    server.pause()
    try {
      await failsAfter(() => store.settle(reservation, 150))
    } finally {
      server.resume()
    }
    // The late reply is read off the connection and dropped; the commands after it get their own replies.
    expect(await store.settle(reservation, 150)).toEqual({ chargedMicros: 150, alreadySettled: true })
    expect(await f.period(hash, 'daily')).toEqual({ spent: 150, held: 0 })
    const next = await store.reserve(reserveInput(hash, 7))
    expect(next).toMatchObject({ ok: true, reservation: { reservedMicros: 7 } })
    if (next.ok) expect(await store.settle(next.reservation, 7)).toEqual({ chargedMicros: 7, alreadySettled: false })
    expect(await f.period(hash, 'daily')).toEqual({ spent: 157, held: 0 })
  })

  it('commands answered after a frozen spell keep failing on time when Redis freezes again', async () => {
    const hash = await f.newKey({ limits: { daily: 1_000_000 } })
    for (let round = 0; round < 2; round++) {
      // Answered commands in flight with the ones that will time out: the line drops them as they are answered.
      const answered = await Promise.all(Array.from({ length: 20 }, () => store.reserve(reserveInput(hash, 1))))
      expect(answered.every((r) => r.ok)).toBe(true)
      server.pause()
      try {
        expect(await failsAfter(() => store.reserve(reserveInput(hash, 1)))).toBeLessThan(TIMEOUT_MS + SLACK_MS)
      } finally {
        server.resume()
      }
      expect((await store.reserve(reserveInput(hash, 1))).ok).toBe(true)
    }
  })
})
