import { describe, expect, it } from 'vitest'
import { ProxyError } from '../../src/errors.js'
import { readLoopLimit, readSession } from '../../src/proxy/control-headers.js'

function invalid(run: () => unknown): ProxyError {
  try {
    run()
  } catch (error) {
    if (error instanceof ProxyError) return error
    throw error
  }
  throw new Error('expected a ProxyError')
}

describe('X-Loopers-Loop-Limit', () => {
  it('is null when absent', () => {
    expect(readLoopLimit({})).toBeNull()
  })

  it.each([
    ['0', 0],
    ['3', 3],
    [' 12 ', 12],
    ['999999999', 999_999_999],
  ])('reads %j as %d', (value, expected) => {
    expect(readLoopLimit({ 'x-loopers-loop-limit': value })).toBe(expected)
  })

  it.each(['-1', '1.5', '1e3', 'ten', '0x10', '1000000000', '+4'])('refuses %j with invalid_request', (value) => {
    const error = invalid(() => readLoopLimit({ 'x-loopers-loop-limit': value }))
    expect(error.code).toBe('invalid_request')
    expect(error.status).toBe(400)
  })

  it('needs a session, like the other session limits', () => {
    const error = invalid(() => readSession({ 'x-loopers-loop-limit': '3' }))
    expect(error.code).toBe('invalid_request')
    expect(error.message).toMatch(/Loop-Limit/)
  })

  it('is validated with the session headers', () => {
    expect(readSession({ 'x-loopers-session-id': 'run-1', 'x-loopers-loop-limit': '2' })).toMatchObject({ id: 'run-1', budgetMicros: null, maxSteps: null })
    expect(invalid(() => readSession({ 'x-loopers-session-id': 'run-1', 'x-loopers-loop-limit': 'many' })).code).toBe('invalid_request')
  })
})
