import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { loopKeyStart } from '../../src/budget/redis/redis-keys.js'
import { script } from '../../src/budget/redis/script-command.js'
import type { Reservation, ReserveInput } from '../../src/budget/types.js'
import { loopScope } from '../../src/loop/rule.js'
import { createBudgetFixture, reserveInput as input, type BudgetFixture } from '../support/budget-fixture.js'
import { startTestStore, type TestStore } from '../support/stores.js'

// A rolling upgrade runs the previous release's reserve.lua (kept as a fixture: the script at 1b88310, before a loop
// scope's '#e' was written 65 characters long) and this one on one Redis, alternately on one key's loop scope. Each
// request of a sequence goes to one key through this release's store, to another through the previous release's script
// (the store's own command for that request, sent again as the earlier script, as settle-twin-redis.test.ts does), and
// to others alternating between the two, both orders: every request's answer, and each scope's steps, must agree, so a
// loop is refused at the same request whichever process answers. The previous release sends lone reserves here; its
// settles are this release's settle.lua (unchanged since).

const BEFORE = readFileSync(new URL('../fixtures/lua/reserve-1b88310.lua', import.meta.url), 'utf8')

const hex = (n: number): string => n.toString(16).padStart(16, '0')
const CONVERSATION = hex(7)
const STEP = hex(3)
const SCOPE = loopScope(null, { conversation: CONVERSATION, step: '' })
const LOOP = { loop: { scope: loopScope(null, { conversation: CONVERSATION, step: STEP }), step: STEP } }
const CHANGE = { limits: { daily: 1e9 }, loopLimit: 3 }

type Answer = 'ok' | (string | number)[]
type Process = 'new' | 'old'

describe('reserve.lua and the previous release\'s, alternating on one key\'s loop scope', () => {
  let server: TestStore
  let f: BudgetFixture

  beforeAll(async () => {
    server = await startTestStore('redis')
    f = await createBudgetFixture(server)
  })
  afterAll(async () => {
    await f?.close()
    await server?.stop()
  })

  /** This release's store reserves `x`: its answer, and its reservation when admitted. */
  async function reserveNew(x: ReserveInput): Promise<{ answer: Answer; held: Reservation | null }> {
    const r = await f.store.reserve(x)
    if (r.ok) return { answer: 'ok', held: r.reservation }
    expect(r.reason).toBe('loop_detected')
    return { answer: [r.reason, r.step as string, r.count as number, r.limitCount as number], held: null }
  }

  /**
   * The previous release reserves `x`: the store's reserve commands for the same request on a fresh key of the same
   * budget are sent again, in order, as the earlier script with that key's hash replaced by x's; the last one's reply
   * is the answer (an earlier one, a check sent without its scope while the store thought the guard off, writes
   * nothing). Its reservation is the fresh key's, on x's key, booking the step at the since the reply names.
   */
  async function reserveOld(x: ReserveInput): Promise<{ answer: Answer; held: Reservation | null }> {
    const fresh = await f.newKey(CHANGE)
    const names = new Set<unknown>([script('reserve').sha, script('reserve').lua])
    const spy = vi.spyOn(f.redis, 'sendCommand')
    let shadow: Reservation
    const sent: (string | number)[][] = []
    try {
      const r = await f.store.reserve({ ...x, keyHash: fresh })
      if (!r.ok) throw new Error(`the fresh key refused: ${r.reason}`)
      shadow = r.reservation
      for (const [command] of spy.mock.calls) {
        const args = (command as unknown as { args: (string | number)[] }).args
        if (names.has(String(args[0]))) sent.push(args.slice(1).map((v) => (typeof v === 'string' ? v.replaceAll(fresh, x.keyHash) : v)))
      }
    } finally {
      spy.mockRestore()
    }
    expect(sent.length).toBeGreaterThan(0)
    let reply: unknown
    for (const args of sent) reply = await f.redis.eval(BEFORE, ...(args as [number, ...(string | number)[]]))
    if (Array.isArray(reply)) return { answer: reply as (string | number)[], held: null }
    // Admitted: '<granted> <remaining> <loopSinceMs>' (the last two possibly empty), or what remains (no step booked:
    // a step's first request in its window, which its record tells in flight). The fresh key's request was always
    // its step's first; a booked step is named as the store names it (src/budget/redis/store.ts readAdmitted).
    const since = typeof reply === 'string' ? (reply.split(' ')[2] ?? '') : ''
    const loop = x.loop as { scope: string; step: string }
    const bookedKeys = shadow.bookedKeys.map((k) => k.replaceAll(fresh, x.keyHash))
    expect(bookedKeys.some((k) => k.startsWith(loopKeyStart(x.keyHash)))).toBe(false)
    if (since !== '') bookedKeys.push(`${loopKeyStart(x.keyHash)}${loop.scope}#${since}#${loop.step}`)
    return { answer: 'ok', held: { ...shadow, keyHash: x.keyHash, bookedKeys } }
  }

  /** A scope's fields, '#e' read as its number. */
  async function scope(hash: string): Promise<Record<string, string | number>> {
    const all: Record<string, string | number> = await f.redis.hgetall(loopKeyStart(hash) + SCOPE)
    if (all['#e'] !== undefined) all['#e'] = Number(all['#e'])
    return all
  }

  /**
   * Runs a sequence of requests of one step on one key for each plan (which process answers request i), all keys at
   * each request before the next: request i is settled `settleAfter` requests later (0: at once, before the next;
   * past the end: once all are sent), then the clock moves `advanceMs`. After each request and each late settle every
   * key's scope must hold the same. Returns each plan's answers and its '#e' as stored after each request.
   */
  async function run(plans: ((i: number) => Process)[], steps: { settleAfter: number; advanceMs: number }[]): Promise<{ answers: Answer[]; expires: string[] }[]> {
    f.clock.set('2026-05-04T12:00:30.000Z')
    const keys: string[] = []
    for (const _ of plans) keys.push(await f.newKey(CHANGE))
    const out = plans.map(() => ({ answers: [] as Answer[], expires: [] as string[] }))
    const held: { due: number; r: Reservation }[][] = plans.map(() => [])
    const sameScopes = async (): Promise<void> => {
      const scopes = await Promise.all(keys.map((k) => scope(k)))
      for (const s of scopes.slice(1)) expect(s).toEqual(scopes[0])
    }
    /** Settles, on every key in turn, what is due by request `i`. */
    const settleDue = async (i: number): Promise<void> => {
      for (const list of held) {
        for (const h of list.filter((h) => h.due <= i)) await f.store.settle(h.r, 700)
        list.splice(0, list.length, ...list.filter((h) => h.due > i))
      }
    }
    for (const [i, step] of steps.entries()) {
      const requestId = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`
      for (const [k, plan] of plans.entries()) {
        const hash = keys[k] as string
        const x = input(hash, 1_000, { ...LOOP, requestId })
        const { answer, held: r } = plan(i) === 'new' ? await reserveNew(x) : await reserveOld(x)
        out[k]?.answers.push(answer)
        if (r !== null) held[k]?.push({ due: i + step.settleAfter, r })
        out[k]?.expires.push((await f.redis.hget(loopKeyStart(hash) + SCOPE, '#e')) ?? '')
      }
      await sameScopes()
      await settleDue(i)
      await sameScopes()
      f.clock.advance(step.advanceMs)
    }
    await settleDue(Number.POSITIVE_INFINITY)
    await sameScopes()
    return out
  }

  const onlyNew = (): Process => 'new'
  const onlyOld = (): Process => 'old'
  const newFirst = (i: number): Process => (i % 2 === 0 ? 'new' : 'old')
  const oldFirst = (i: number): Process => (i % 2 === 0 ? 'old' : 'new')
  const plans = [onlyNew, onlyOld, newFirst, oldFirst]

  /** Every plan's answers equal the first's (this release alone), which refuses the loop where `refusedFrom` says. */
  function expectAgreed(out: { answers: Answer[]; expires: string[] }[], refusedFrom: number): void {
    const [alone, ...rest] = out
    for (const o of rest) expect(o.answers).toEqual(alone?.answers)
    const answers = alone?.answers ?? []
    expect(answers.slice(0, refusedFrom).every((a) => a === 'ok')).toBe(true)
    expect(answers.slice(refusedFrom).every((a) => Array.isArray(a) && a[0] === 'loop_detected')).toBe(true)
    // Whoever wrote '#e' last wrote it in its own form: this release 65 characters, the previous one short.
    expect(out[0]?.expires.every((e) => e.length === 65)).toBe(true)
    expect(out[1]?.expires.every((e) => e.length > 0 && e.length < 65)).toBe(true)
  }

  it('repeats settled one by one: the loop is refused at the same request in every plan', async () => {
    const steps = Array.from({ length: 8 }, () => ({ settleAfter: 0, advanceMs: 1_000 }))
    const out = await run(plans, steps)
    expectAgreed(out, 4) // limit 3: three repeats through, the fourth refused
    expect(out[0]?.answers[4]).toEqual(['loop_detected', STEP, 4, 3])
  })

  it('repeats overlapping (one other in flight: counted; two: not), settled late: the same answers and scopes in every plan', async () => {
    const settleAfter = [2, 2, 0, 0, 0, 0, 0, 0, 0]
    const steps = settleAfter.map((n) => ({ settleAfter: n, advanceMs: 500 }))
    const out = await run(plans, steps)
    const answers = out[0]?.answers ?? []
    for (const o of out.slice(1)) expect(o.answers).toEqual(answers)
    // Request 1 runs alongside request 0 (counted), request 2 alongside 0 and 1 (not counted): the loop's fourth
    // counted request is request 4, and request 5 is refused (a sequence settled one by one is refused at request 4).
    expect(answers.map((a) => a === 'ok')).toEqual([true, true, true, true, true, false, false, false, false])
    expect(answers[5]).toEqual(['loop_detected', STEP, 4, 3])
  })

  it('a window passed between repeats: each process extends the expiry in its own form, the count restarts alike', async () => {
    const steps = [
      ...Array.from({ length: 5 }, () => ({ settleAfter: 0, advanceMs: 1_000 })),
      { settleAfter: 0, advanceMs: 601_000 }, // past the default 600 s window: the next request starts a new one
      ...Array.from({ length: 5 }, () => ({ settleAfter: 0, advanceMs: 1_000 })),
    ]
    const out = await run(plans, steps)
    const answers = out[0]?.answers ?? []
    for (const o of out.slice(1)) expect(o.answers).toEqual(answers)
    expect(answers.map((a) => a === 'ok')).toEqual([true, true, true, true, false, false, true, true, true, true, false])
    expect(out[0]?.expires.every((e) => e.length === 65)).toBe(true)
    expect(out[1]?.expires.every((e) => e.length > 0 && e.length < 65)).toBe(true)
    // The alternating plans' last writer of '#e' at the window's start was the process that answered it.
    const [, , newFirstOut, oldFirstOut] = out
    expect(newFirstOut?.expires[6]?.length).toBe(65)
    expect(oldFirstOut?.expires[6]?.length).toBeLessThan(65)
  })
})
