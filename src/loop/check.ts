import type { LoopCheck, LoopCheckSource, ReserveInput } from '../budget/types.js'
import { assertLoopCheck } from '../budget/validate.js'
import { loopScope } from './rule.js'
import type { LoopFingerprint } from './types.js'

/**
 * A request's loop check as a source (budget/types.ts LoopCheckSource): `fingerprint` is called on the first call
 * only, and the check it makes (scope by `sessionId`, else by conversation) returned on every call; null when it
 * finds no conversation. `fingerprint` must read the body as sent: the adapters' `prepareBody` edits only members
 * the loop shapes never read (src/loop/README.md), so it may run before or after it.
 */
export function createLoopCheck(fingerprint: () => LoopFingerprint | null, sessionId: string | null): LoopCheckSource {
  let done = false
  let check: LoopCheck | null = null
  return () => {
    if (done) return check
    // A fingerprint that throws throws again when asked again: never read as "no conversation".
    const found = fingerprint()
    check = found === null ? null : { scope: loopScope(sessionId, found), step: found.step }
    done = true
    return check
  }
}

/**
 * The loop check a reserve's input holds, or computes now from its source (checked as assertReserveInput checks one
 * given): null when there is none. A store calls it only where a limit may be in force.
 */
export function loopCheckOf(input: ReserveInput): LoopCheck | null {
  const { loop } = input
  if (typeof loop !== 'function') return loop ?? null
  const check = loop()
  if (check !== null) assertLoopCheck(check, input.session)
  return check
}
