import { describe, expect, it } from 'vitest'
import { fingerprintRequest } from '../../src/loop/fingerprint.js'
import { DEFAULT_LOOP_LIMIT, DEFAULT_LOOP_WINDOW_SECONDS } from '../../src/loop/rule.js'
import { loadLoopFixtures, type LoopFixture } from '../support/loop-fixtures.js'
import { createLoopReference, type LoopVerdict } from '../support/loop-reference.js'

const fixtures = loadLoopFixtures()
const looping = fixtures.filter((f) => f.tripsAt !== null)
const healthy = fixtures.filter((f) => f.tripsAt === null)

/** Replays a fixture through the rule for one key; returns every verdict in request order. */
function replay(fixture: LoopFixture, keyLimit: number | null = null): LoopVerdict[] {
  const rule = createLoopReference(keyLimit, DEFAULT_LOOP_WINDOW_SECONDS)
  return fixture.requests.map((request) => {
    const fingerprint = fingerprintRequest(fixture.shape, request.body)
    if (fingerprint === null) throw new Error(`${fixture.name}: a conversation request has no fingerprint`)
    return rule.check({ fingerprint, sessionId: request.session, sessionLimit: null, nowMs: request.atSeconds * 1000 })
  })
}

describe('recorded agent transcripts', () => {
  it('covers at least five looping and five healthy transcripts in the formats of five providers (three loop shapes)', () => {
    expect(looping.length).toBeGreaterThanOrEqual(5)
    expect(healthy.length).toBeGreaterThanOrEqual(5)
    expect(new Set(fixtures.map((f) => f.shape)).size).toBe(3) // messages (OpenAI chat, Anthropic, Converse), Responses, Gemini
  })

  it.each(looping.map((f) => [f.name, f] as const))('%s trips at its expected request under the default rule', (_name, fixture) => {
    const verdicts = replay(fixture)
    const first = verdicts.findIndex((v) => !v.ok)
    expect(first).toBe(fixture.tripsAt)
    expect(verdicts[first]).toEqual({ ok: false, repeats: DEFAULT_LOOP_LIMIT + 1, limit: DEFAULT_LOOP_LIMIT })
    // Once tripped, the loop stays refused while it keeps repeating within the window (refusals record nothing).
    expect(verdicts.slice(first).every((v) => !v.ok)).toBe(true)
  })

  it.each(healthy.map((f) => [f.name, f] as const))('%s never trips under the default rule', (_name, fixture) => {
    const verdicts = replay(fixture)
    expect(verdicts.filter((v) => !v.ok)).toEqual([])
    // The margin the default keeps: the worst healthy transcript (retries plus sampling) stays a repeat below it.
    expect(Math.max(...verdicts.map((v) => v.repeats))).toBeLessThanOrEqual(DEFAULT_LOOP_LIMIT - 1)
  })

  it.each(looping.map((f) => [f.name, f] as const))('%s passes untouched with the guard off (limit 0)', (_name, fixture) => {
    expect(replay(fixture, 0).every((v) => v.ok)).toBe(true)
  })

  it.each(looping.map((f) => [f.name, f] as const))('%s trips earlier under a lower limit', (_name, fixture) => {
    const first = replay(fixture, 2).findIndex((v) => !v.ok)
    expect(first).toBeGreaterThan(0)
    expect(first).toBe((fixture.tripsAt as number) - (DEFAULT_LOOP_LIMIT - 2) * periodOf(fixture))
  })
})

/** Requests between two occurrences of a looping step: the loop's period. */
function periodOf(fixture: LoopFixture): number {
  const steps = fixture.requests.map((r) => fingerprintRequest(fixture.shape, r.body)?.step)
  const last = steps.length - 1
  return last - steps.lastIndexOf(steps[last], last - 1)
}
