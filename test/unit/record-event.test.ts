import { describe, expect, it } from 'vitest'
import type { BudgetEvent } from '../../src/budget/events.js'
import type { KeyAdmin } from '../../src/budget/types.js'
import type { Metrics } from '../../src/metrics.js'
import { recordEventLater } from '../../src/proxy/record-event.js'

/** A store that keeps what it is given, and a clock that counts its reads. */
function setup(fail = false) {
  const recorded: BudgetEvent[] = []
  const lost = { count: 0 }
  const keys = { recordEvent: async (event: BudgetEvent) => { if (fail) throw new Error('down'); recorded.push(event) } } as unknown as KeyAdmin
  const metrics = { eventLost: () => lost.count++ } as unknown as Metrics
  const clock = { reads: 0, at: 1_700_000_000_000 }
  const now = () => {
    clock.reads++
    return clock.at
  }
  return { keys, metrics, recorded, lost, clock, now }
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

describe('recordEventLater', () => {
  it('records a refusal on the next turn at the clock’s time, and a cut-off', async () => {
    const s = setup()
    recordEventLater(s.keys, s.metrics, { key: 'abcdef0123', provider: 'openai', outcome: 'refused', code: 'budget_exceeded', window: 'day' }, s.now)
    recordEventLater(s.keys, s.metrics, { key: 'abcdef0123', provider: 'anthropic', outcome: 'cutoff', code: 'budget_exceeded' }, s.now)
    expect(s.recorded).toHaveLength(0)
    await turn()
    expect(s.recorded.map((e) => [e.kind, e.provider, e.window, e.time.getTime(), e.keyHashPrefix])).toEqual([
      ['refusal', 'openai', 'day', s.clock.at, 'abcdef01'],
      ['cutoff', 'anthropic', null, s.clock.at, 'abcdef01'],
    ])
  })

  it('records nothing and reads no clock for an admitted request; a refusal not worth showing reads it once', async () => {
    const s = setup()
    recordEventLater(s.keys, s.metrics, { key: 'abcdef0123', provider: 'openai', outcome: 'completed' }, s.now)
    expect(s.clock.reads).toBe(0)
    recordEventLater(s.keys, s.metrics, { key: 'abcdef0123', provider: 'openai', outcome: 'refused', code: 'invalid_request' }, s.now)
    expect(s.clock.reads).toBe(1)
    await turn()
    expect(s.recorded).toHaveLength(0)
  })

  it('counts an event the store could not record as lost', async () => {
    const s = setup(true)
    recordEventLater(s.keys, s.metrics, { key: 'abcdef0123', provider: 'openai', outcome: 'refused', code: 'loop_detected' }, s.now)
    await turn()
    await turn()
    expect(s.lost.count).toBe(1)
  })
})
