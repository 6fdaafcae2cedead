import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKeyAdmin } from '../../src/budget/redis/admin.js'
import { createRedisClient, type RedisClient } from '../../src/budget/redis/redis-client.js'
import { createBudgetStore } from '../../src/budget/redis/store.js'
import { QueuedReserve, QueuedSettle, type BlankRecords } from '../../src/budget/redis/store-records.js'
import type { BudgetStore, Reservation, ReserveInput } from '../../src/budget/types.js'
import { currentPeriods } from '../../src/budget/windows.js'
import { blankKept, kept, keepShapes } from '../../src/proxy/keep-shapes.js'
import { waitReady } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// The Redis store's records and its last script command are kept through a quiet period's full collection as blank
// examples (src/budget/redis/store-records.ts): of the hidden classes the live ones have, holding none of a request's
// data, one of each, replaced at each release.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void
setFlagsFromString('--allow-natives-syntax')
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- V8's intrinsic: whether two objects share a hidden class.
const sameHiddenClass = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean

let redis: TestRedis
let client: RedisClient
let store: BudgetStore
let hash: string
/** Every command the store sent, as sent. */
const sent: Array<{ context: unknown }> = []

beforeAll(async () => {
  redis = await startRedis()
  client = createRedisClient({ url: redis.url, clusterNodes: null, commandTimeoutMs: 2_000 })
  await waitReady(client)
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((command: Parameters<typeof send>[0]) => {
    sent.push(command as unknown as { context: unknown })
    return send(command)
  }) as typeof client.sendCommand
  const admin = createKeyAdmin(client)
  const { record } = await admin.createKey('keep-store-records', ['openai'])
  await admin.setBudget(record.hash, { limits: { daily: 1_000_000_000 } })
  hash = record.hash
  store = createBudgetStore(client)
  store.observeCalls(() => undefined)
  keepShapes(true)
})

afterAll(async () => {
  keepShapes(false)
  client?.disconnect()
  await redis?.stop()
})

const SECRET = 'the prompt the client sent'

/** A reserve's input as the pipeline builds one: its loop check a source closing over the request's body. */
function input(requestId: string, extra: Partial<ReserveInput> = {}): ReserveInput {
  const body = { messages: [{ role: 'user', content: SECRET }] }
  return { keyHash: hash, provider: 'openai', requestId, session: null, loop: () => (body.messages.length > 5 ? null : null), minMicros: 1_000, maxMicros: 1_000, ...extra }
}

async function reserved(requestId: string, extra: Partial<ReserveInput> = {}): Promise<Reservation> {
  const result = await store.reserve(input(requestId, extra))
  if (!result.ok) throw new Error(`refused: ${result.reason}`)
  return result.reservation
}

/** Every object `value` reaches through own data properties, and every string, with their property names. */
function reachable(value: unknown, objects = new Set<object>(), text: string[] = []): { objects: Set<object>; text: string } {
  if (typeof value === 'string') text.push(value)
  else if ((typeof value === 'object' || typeof value === 'function') && value !== null && !objects.has(value)) {
    objects.add(value)
    if (Buffer.isBuffer(value)) text.push(value.toString('latin1'))
    else for (const name of Reflect.ownKeys(value)) {
      text.push(String(name))
      reachable(Object.getOwnPropertyDescriptor(value, name)?.value, objects, text)
    }
  }
  return { objects, text: text.join('\n') }
}

describe("the Redis store's kept examples", () => {
  it('are blank copies of the hidden classes the live records and command have, holding no request data', async () => {
    const first = sent.length
    // With its loop check asked (the key's guard not known), then with a session: a ReserveCall with and without its
    // AskedLoop; a settle.
    const asked = input('keep-asked-1')
    const result = await store.reserve(asked)
    expect(result.ok).toBe(true)
    const withSession = await reserved('keep-session-1', { loop: null, session: { id: 'keep-session', budgetMicros: null, maxSteps: null, loopLimit: null } })
    await store.settle(withSession, 500)
    if (result.ok) await store.settle(result.reservation, 500)
    const commands = sent.slice(first)
    const calls = commands.map((command) => command.context).filter((context) => typeof context === 'object' && context !== null && 'asked' in context) as Array<{ requestId: string; asked: object | null }>
    const askedCall = calls.find((call) => call.requestId === 'keep-asked-1')!
    const sessionCall = calls.find((call) => call.requestId === 'keep-session-1')!
    expect(askedCall.asked).not.toBeNull()
    expect(sessionCall.asked).toBeNull()
    // Before a release the last command answered is kept as it is.
    const live = kept.command
    expect(live).toBe(commands.at(-1))

    blankKept()
    const records = kept.records as BlankRecords
    expect(records).not.toBeNull()
    expect(kept.command).not.toBe(live)
    // One hidden class for every path's ReserveCall and AskedLoop, the blank's too; the command's the live one's.
    expect(sameHiddenClass(records.call, askedCall)).toBe(true)
    expect(sameHiddenClass(records.call, sessionCall)).toBe(true)
    expect(sameHiddenClass(records.call.asked!, askedCall.asked!)).toBe(true)
    expect(sameHiddenClass(kept.command!, live!)).toBe(true)

    // Nothing of the requests: no key hash, request id, session, amount or body; not their input or its loop source.
    const held = reachable([kept.command, kept.records])
    for (const secret of [hash, 'keep-asked-1', 'keep-session', SECRET]) expect(held.text).not.toContain(secret)
    expect(held.objects.has(asked)).toBe(false)
    expect(held.objects.has(asked.loop as object)).toBe(false)
    expect(held.objects.has(askedCall)).toBe(false)
    expect(held.objects.has(withSession)).toBe(false)
    const numbers = JSON.stringify(records, (_, value: unknown) => (typeof value === 'function' ? undefined : value))
    expect(numbers).not.toMatch(/1000|500/)
    // The kept reservation's remaining figure is of the live ones' kind (a number: the key is limited), not null.
    expect(result.ok && typeof result.reservation.remainingMicros).toBe('number')
    expect(records.queuedSettle.reservation.remainingMicros).toBe(0)
  })

  it('are replaced at each release, one of each, the ones before let go', async () => {
    const sets: Array<WeakRef<object>> = []
    const commands: Array<WeakRef<object>> = []
    for (let i = 0; i < 3; i++) {
      await store.settle(await reserved(`keep-replaced-${i}`), 0)
      blankKept()
      sets.push(new WeakRef(kept.records!))
      commands.push(new WeakRef(kept.command!))
      expect(Object.keys(kept.records!).sort()).toEqual(['booked', 'call', 'joined', 'queuedReserve', 'queuedSettle'])
      for (const record of Object.values(kept.records!)) expect(Array.isArray(record)).toBe(false)
    }
    await new Promise((resolve) => setImmediate(resolve))
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })
    await new Promise((resolve) => setImmediate(resolve))
    expect(sets.map((ref) => ref.deref() === undefined)).toEqual([true, true, false])
    expect(commands.map((ref) => ref.deref() === undefined)).toEqual([true, true, false])
  })

  it("sends the request path's commands, the layout marker's read with them, as script commands: one class", async () => {
    const fresh = createBudgetStore(client)
    const first = sent.length
    const result = await fresh.reserve(input('keep-one-class'))
    if (!result.ok) throw new Error(`refused: ${result.reason}`)
    await fresh.settle(result.reservation, 0)
    const commands = sent.slice(first) as unknown as Array<{ constructor: { name: string }; args: unknown[] }>
    expect(commands.some((command) => command.args.includes('lp:layout'))).toBe(true)
    expect(commands.map((command) => command.constructor.name)).toEqual(commands.map(() => 'ScriptCommand'))
  })

  it('queued records built by their constructors have their one hidden class, set as reserveBatch sets them', () => {
    const records = kept.records as BlankRecords
    const fixed = records.call.fixed
    const periods = currentPeriods(Date.now())
    const item = new QueuedReserve(input('keep-queued'), Date.now(), periods, performance.now(), fixed, () => undefined, () => undefined)
    expect(sameHiddenClass(item, records.queuedReserve)).toBe(true)
    // reserveBatch's marks: a check as sent, or asked without it.
    item.loop = { scope: 's', step: 'x' }
    item.asked = true
    expect(sameHiddenClass(item, records.queuedReserve)).toBe(true)
    const reservation: Reservation = { keyHash: hash, requestId: 'keep-queued', reservedMicros: 1_000, bookedKeys: fixed.periodKeys, remainingMicros: 5 }
    const settle = new QueuedSettle(reservation, 250, performance.now(), fixed, () => undefined, () => undefined)
    expect(sameHiddenClass(settle, records.queuedSettle)).toBe(true)
  })
})
