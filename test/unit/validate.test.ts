import { describe, expect, it } from 'vitest'
import type { ReserveInput } from '../../src/budget/types.js'
import { assertReserveInput } from '../../src/budget/validate.js'

const input = (loop: ReserveInput['loop'], sessionId: string | null = null): ReserveInput => ({
  keyHash: 'a'.repeat(64),
  provider: 'openai',
  requestId: 'req-1',
  session: sessionId === null ? null : { id: sessionId, budgetMicros: null, maxSteps: null },
  loop,
  minMicros: 1,
  maxMicros: 2,
})

describe("a reserve's loop step and scope", () => {
  it.each([
    ['a conversation scope', 'c:0123456789abcdef', null],
    ["a session's scope", 's:run-1.a_b:c', 'run-1.a_b:c'],
    ['a session scope of 128 characters', `s:${'x'.repeat(128)}`, 'x'.repeat(128)],
  ])('accepts %s', (_what, scope, session) => {
    expect(() => assertReserveInput(input({ scope, step: 'fedcba9876543210' }, session))).not.toThrow()
  })

  it.each([
    ['upper-case hex', 'FEDCBA9876543210'],
    ['15 digits', 'fedcba987654321'],
    ['17 digits', 'fedcba98765432100'],
    ['a letter past f', 'fedcba987654321g'],
    ['nothing', ''],
  ])('refuses a step of %s', (_what, step) => {
    expect(() => assertReserveInput(input({ scope: 'c:0123456789abcdef', step }))).toThrow('loop.step must be 16 hex chars')
  })

  it.each([
    ['upper-case hex', 'c:0123456789ABCDEF'],
    ['15 digits', 'c:0123456789abcde'],
    ['17 digits', 'c:0123456789abcdef0'],
    ['no conversation', 'c:'],
    ['no session id', 's:'],
    ['a session id with a space', 's:run 1'],
    ['a session id of 129 characters', `s:${'x'.repeat(129)}`],
    ['another prefix', 'x:0123456789abcdef'],
    ['no prefix', '0123456789abcdef'],
  ])('refuses a scope of %s', (_what, scope) => {
    expect(() => assertReserveInput(input({ scope, step: 'fedcba9876543210' }))).toThrow('loop.scope must be')
  })

  it("refuses a session scope that is not the request's session", () => {
    expect(() => assertReserveInput(input({ scope: 's:run-2', step: 'fedcba9876543210' }, 'run-1'))).toThrow('a session loop scope needs that session')
  })
})
