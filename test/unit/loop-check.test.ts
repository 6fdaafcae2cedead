import { describe, expect, it } from 'vitest'
import { createLoopCheck, loopCheckOf } from '../../src/loop/check.js'
import type { ReserveInput } from '../../src/budget/types.js'

const fingerprint = { conversation: '0123456789abcdef', step: 'fedcba9876543210' }
const input = (loop: ReserveInput['loop'], session: ReserveInput['session'] = null): ReserveInput =>
  ({ keyHash: 'k', provider: 'openai', requestId: 'r', minMicros: 1, maxMicros: 1, session, loop })

describe('a loop check as a source', () => {
  it('computes its fingerprint on the first call only and returns the same check after', () => {
    let calls = 0
    const source = createLoopCheck(() => {
      calls++
      return fingerprint
    }, null)
    expect(calls).toBe(0)
    const check = source()
    expect(check).toEqual({ scope: `c:${fingerprint.conversation}`, step: fingerprint.step })
    expect(source()).toBe(check)
    expect(loopCheckOf(input(source))).toBe(check)
    expect(calls).toBe(1)
  })

  it('scopes by the session when there is one; null when the body holds no conversation', () => {
    const session = { id: 'sess-1', budgetMicros: null, maxSteps: null }
    expect(loopCheckOf(input(createLoopCheck(() => fingerprint, 'sess-1'), session))).toEqual({ scope: 's:sess-1', step: fingerprint.step })
    let calls = 0
    const none = createLoopCheck(() => {
      calls++
      return null
    }, null)
    expect(loopCheckOf(input(none))).toBeNull()
    expect(loopCheckOf(input(none))).toBeNull()
    expect(calls).toBe(1)
  })

  it('a check given is returned as is; none is null; a computed check is checked as a given one is', () => {
    const given = { scope: 'c:0123456789abcdef', step: '0000000000000001' }
    expect(loopCheckOf(input(given))).toBe(given)
    expect(loopCheckOf(input(null))).toBeNull()
    expect(loopCheckOf(input(undefined))).toBeNull()
    expect(() => loopCheckOf(input(() => ({ scope: 'c:0123456789abcdef', step: 'not hex' })))).toThrow(RangeError)
    // A session scope needs that session.
    expect(() => loopCheckOf(input(createLoopCheck(() => fingerprint, 'sess-1')))).toThrow(RangeError)
  })

  it('a fingerprint that throws throws again when asked again: never read as no conversation', () => {
    let calls = 0
    const source = createLoopCheck(() => {
      calls++
      if (calls === 1) throw new Error('unreadable')
      return fingerprint
    }, null)
    expect(() => source()).toThrow('unreadable')
    expect(source()).toEqual({ scope: `c:${fingerprint.conversation}`, step: fingerprint.step })
    expect(calls).toBe(2)
  })
})
