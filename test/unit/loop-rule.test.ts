import { describe, expect, it } from 'vitest'
import { checksScopeSize, DEFAULT_LOOP_LIMIT, effectiveLoopLimit, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE, loopScope } from '../../src/loop/rule.js'
import type { LoopFingerprint } from '../../src/loop/types.js'
import { createLoopReference, type LoopRequest } from '../support/loop-reference.js'

const fp = (step: string, conversation = 'c0'): LoopFingerprint => ({ conversation, step })
const at = (seconds: number, step = 's1', extra: Partial<LoopRequest> = {}): LoopRequest => ({
  fingerprint: fp(step), sessionId: null, sessionLimit: null, nowMs: seconds * 1000, ...extra,
})

describe('effectiveLoopLimit', () => {
  it.each([
    [null, null, DEFAULT_LOOP_LIMIT],
    [5, null, 5],
    [5, 3, 3],
    [5, 9, 5],
    [5, 0, 0],
    [0, null, null],
    [0, 4, 4],
  ])('key %j, session %j → %j', (key, session, expected) => {
    expect(effectiveLoopLimit(key, session)).toBe(expected)
  })
})

describe('loopScope', () => {
  it('is the session when there is one, else the conversation', () => {
    expect(loopScope('run-1', fp('s', 'abc'))).toBe('s:run-1')
    expect(loopScope(null, fp('s', 'abc'))).toBe('c:abc')
  })
})

describe('the loop rule (reference)', () => {
  it('lets `limit` repeats through and refuses the next, recording nothing once refused', () => {
    const rule = createLoopReference(2, 60)
    expect([0, 1, 2].map((s) => rule.check(at(s)))).toEqual([
      { ok: true, repeats: 0, limit: 2 },
      { ok: true, repeats: 1, limit: 2 },
      { ok: true, repeats: 2, limit: 2 },
    ])
    expect(rule.check(at(3))).toEqual({ ok: false, repeats: 3, limit: 2 })
    expect(rule.check(at(4))).toEqual({ ok: false, repeats: 3, limit: 2 })
    expect(rule.check(at(5, 's2')).ok).toBe(true)
  })

  it('forgets a step once its window, counted from its first sighting, has passed', () => {
    const rule = createLoopReference(1, 60)
    rule.check(at(0))
    rule.check(at(30))
    expect(rule.check(at(59)).ok).toBe(false)
    expect(rule.check(at(60))).toEqual({ ok: true, repeats: 0, limit: 1 })
  })

  it('counts a repeat only while at most one request of its step is in flight; an ended one counts no more', () => {
    const rule = createLoopReference(2, 60)
    const fired = [0, 0, 0, 0, 0].map(() => rule.check(at(0, 's1', { endsAtOnce: false })))
    // Fired at once: the first two count (the second may be a client's next request while the first settles).
    expect(fired.map((v) => v.repeats)).toEqual([0, 1, 2, 2, 2])
    for (const v of fired) if (v.ok) v.end()
    for (const v of fired) if (v.ok) v.end() // ending twice changes nothing
    expect(rule.check(at(1))).toEqual({ ok: true, repeats: 2, limit: 2 })
    expect(rule.check(at(2))).toEqual({ ok: false, repeats: 3, limit: 2 })
    // A request of an earlier window that ends late leaves the new window's entry alone.
    const old = rule.check(at(61, 's2', { endsAtOnce: false }))
    rule.check(at(62, 's2', { endsAtOnce: false }))
    expect(rule.check(at(122, 's2', { endsAtOnce: false })).repeats).toBe(0) // a new window
    expect(rule.check(at(123, 's2', { endsAtOnce: false })).repeats).toBe(1) // two in flight now
    if (old.ok) old.end()
    expect(rule.check(at(124, 's2', { endsAtOnce: false })).repeats).toBe(2) // not counted: two in flight
    expect(rule.check(at(125, 's2', { endsAtOnce: false })).repeats).toBe(2)
  })

  it('counts only admitted requests', () => {
    const rule = createLoopReference(1, 60)
    rule.check(at(0))
    expect(rule.check(at(1, 's1', { admitted: false })).ok).toBe(true)
    expect(rule.check(at(2)).ok).toBe(true)
    expect(rule.check(at(3)).ok).toBe(false)
  })

  it('keeps sessions apart, and conversations apart without a session', () => {
    const rule = createLoopReference(1, 60)
    rule.check(at(0, 's1', { sessionId: 'a' }))
    rule.check(at(0, 's1', { sessionId: 'a' }))
    expect(rule.check(at(0, 's1', { sessionId: 'b' })).repeats).toBe(0)
    expect(rule.check(at(0, 's1')).repeats).toBe(0)
    expect(rule.check(at(0, 's1', { fingerprint: fp('s1', 'c1') })).repeats).toBe(0)
    expect(rule.check(at(0, 's1', { sessionId: 'a' })).ok).toBe(false)
  })

  it('takes a session header that lowers the limit, keeps the lowering, and never raises the key limit', () => {
    const rule = createLoopReference(5, 60)
    const session = (limit: number | null) => at(0, 's1', { sessionId: 'run', sessionLimit: limit })
    expect(rule.check(session(9)).limit).toBe(5)
    expect(rule.check(session(1)).limit).toBe(1)
    expect(rule.check(session(null))).toEqual({ ok: false, repeats: 2, limit: 1 })
    expect(rule.check(session(7))).toEqual({ ok: false, repeats: 2, limit: 1 })
  })

  it('turns the guard off for a key limit of 0 unless a session asks for it', () => {
    const rule = createLoopReference(0, 60)
    for (let s = 0; s < 50; s++) expect(rule.check(at(s)).ok).toBe(true)
    rule.check(at(0, 'x', { sessionId: 'strict', sessionLimit: 0 }))
    expect(rule.check(at(1, 'x', { sessionId: 'strict', sessionLimit: null }))).toEqual({ ok: false, repeats: 1, limit: 0 })
  })

  it(`trims a scope past ${LOOP_STEPS_PER_SCOPE} steps to the newest ${LOOP_STEPS_AFTER_TRIM} when a new step that checks its size comes`, () => {
    const rule = createLoopReference(1, 600)
    for (let i = 0; i < LOOP_STEPS_PER_SCOPE + 4; i++) rule.check(at(i, `step-${i}`))
    // Past the limit, but none of the last four new steps checks the size (their hash does not end in 0): nothing is forgotten.
    expect(checksScopeSize(`step-${LOOP_STEPS_PER_SCOPE}`)).toBe(false)
    expect(rule.check(at(300, 'step-0')).repeats).toBe(1)
    const checker = `step-${LOOP_STEPS_PER_SCOPE + 4}`
    expect(checksScopeSize(checker)).toBe(true)
    rule.check(at(301, checker))
    // Now the oldest went, down to LOOP_STEPS_AFTER_TRIM: the newest of those forgotten is forgotten, the next is counted.
    const firstKept = LOOP_STEPS_PER_SCOPE + 5 - LOOP_STEPS_AFTER_TRIM
    expect(rule.check(at(302, `step-${firstKept - 1}`)).repeats).toBe(0)
    expect(rule.check(at(302, `step-${firstKept}`)).repeats).toBe(1)
  })
})
