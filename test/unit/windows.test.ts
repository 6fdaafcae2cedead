import { setFlagsFromString } from 'node:v8'
import { describe, expect, it } from 'vitest'
import { currentPeriods, periodOf } from '../../src/budget/windows.js'
import type { WindowName } from '../../src/budget/types.js'

const at = (iso: string): number => Date.parse(iso)

describe('periodOf', () => {
  it.each<[WindowName, string, string, string, string]>([
    ['minute', '2026-05-04T13:07:59.999Z', '2026-05-04T13:07', '2026-05-04T13:07:00.000Z', '2026-05-04T13:08:00.000Z'],
    ['minute', '2026-12-31T23:59:30.000Z', '2026-12-31T23:59', '2026-12-31T23:59:00.000Z', '2027-01-01T00:00:00.000Z'],
    ['hourly', '2026-05-04T13:07:00.000Z', '2026-05-04T13', '2026-05-04T13:00:00.000Z', '2026-05-04T14:00:00.000Z'],
    ['hourly', '2026-05-31T23:00:00.000Z', '2026-05-31T23', '2026-05-31T23:00:00.000Z', '2026-06-01T00:00:00.000Z'],
    ['daily', '2026-05-04T00:00:00.000Z', '2026-05-04', '2026-05-04T00:00:00.000Z', '2026-05-05T00:00:00.000Z'],
    ['daily', '2028-02-28T12:00:00.000Z', '2028-02-28', '2028-02-28T00:00:00.000Z', '2028-02-29T00:00:00.000Z'],
    // ISO weeks start on Monday; the week of a Thursday's year. 2026 has 53 weeks.
    ['weekly', '2026-05-04T00:00:00.000Z', '2026-W19', '2026-05-04T00:00:00.000Z', '2026-05-11T00:00:00.000Z'],
    ['weekly', '2026-05-10T23:59:59.999Z', '2026-W19', '2026-05-04T00:00:00.000Z', '2026-05-11T00:00:00.000Z'],
    ['weekly', '2026-12-31T10:00:00.000Z', '2026-W53', '2026-12-28T00:00:00.000Z', '2027-01-04T00:00:00.000Z'],
    ['weekly', '2027-01-01T00:00:00.000Z', '2026-W53', '2026-12-28T00:00:00.000Z', '2027-01-04T00:00:00.000Z'],
    ['weekly', '2027-01-03T23:59:59.000Z', '2026-W53', '2026-12-28T00:00:00.000Z', '2027-01-04T00:00:00.000Z'],
    ['weekly', '2027-01-04T00:00:00.000Z', '2027-W01', '2027-01-04T00:00:00.000Z', '2027-01-11T00:00:00.000Z'],
    ['weekly', '2024-12-30T08:00:00.000Z', '2025-W01', '2024-12-30T00:00:00.000Z', '2025-01-06T00:00:00.000Z'],
    ['weekly', '2021-01-03T08:00:00.000Z', '2020-W53', '2020-12-28T00:00:00.000Z', '2021-01-04T00:00:00.000Z'],
    ['monthly', '2026-05-31T23:59:59.999Z', '2026-05', '2026-05-01T00:00:00.000Z', '2026-06-01T00:00:00.000Z'],
    ['monthly', '2026-12-15T00:00:00.000Z', '2026-12', '2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z'],
    ['monthly', '2027-01-01T00:00:00.000Z', '2027-01', '2027-01-01T00:00:00.000Z', '2027-02-01T00:00:00.000Z'],
  ])('%s at %s is %s [%s, %s)', (window, now, id, start, resetsAt) => {
    const p = periodOf(window, at(now))
    expect(p).toMatchObject({ window, id })
    expect(p.start.toISOString()).toBe(start)
    expect(p.resetsAt.toISOString()).toBe(resetsAt)
  })

  it.each<[WindowName, string, number]>([
    ['minute', '2026-05-04T13:07:00.000Z', 60],
    ['hourly', '2026-05-04T13:07:00.000Z', 3_600],
    ['daily', '2026-05-04T13:07:00.000Z', 86_400],
    ['weekly', '2026-05-04T13:07:00.000Z', 7 * 86_400],
    ['monthly', '2026-02-10T00:00:00.000Z', 28 * 86_400],
    ['monthly', '2028-02-10T00:00:00.000Z', 29 * 86_400],
    ['monthly', '2026-05-10T00:00:00.000Z', 31 * 86_400],
  ])('%s period at %s lasts %i s', (window, now, length) => {
    const p = periodOf(window, at(now))
    expect((p.resetsAt.getTime() - p.start.getTime()) / 1000).toBe(length)
  })

  it('changes period exactly at the boundary, not a millisecond before', () => {
    const before = at('2026-05-04T13:07:59.999Z')
    expect(periodOf('minute', before).id).not.toBe(periodOf('minute', before + 1).id)
    expect(periodOf('minute', before - 1).id).toBe(periodOf('minute', before).id)
  })
})

describe('currentPeriods', () => {
  it('lists the five windows in check order', () => {
    const ids = currentPeriods(at('2027-01-01T00:00:00.000Z')).map((p) => `${p.window}=${p.id}`)
    expect(ids).toEqual(['minute=2027-01-01T00:00', 'hourly=2027-01-01T00', 'daily=2027-01-01', 'weekly=2026-W53', 'monthly=2027-01'])
  })

  // Built with WINDOW_NAMES.map, the list was packed when the minute's first call ran interpreted and holey once it ran
  // optimized: another hidden class, so the Redis store's reserve and fixedKeys deoptimized at that minute ("wrong
  // map") and were compiled again (~50-70 ms of CPU each time, a few minutes into every proxy's life).
  it('builds the list with one hidden class, whether the code building it runs interpreted or optimized', () => {
    setFlagsFromString('--allow-natives-syntax')
    const prepare = new Function('f', '%PrepareFunctionForOptimization(f)') as (f: unknown) => void
    const optimizeOnNextCall = new Function('f', '%OptimizeFunctionOnNextCall(f)') as (f: unknown) => void
    const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: unknown, b: unknown) => boolean
    const start = at('2031-03-04T05:06:00.000Z')
    const interpreted = currentPeriods(start)
    prepare(currentPeriods)
    for (let minute = 1; minute <= 4; minute++) currentPeriods(start + minute * 60_000)
    optimizeOnNextCall(currentPeriods)
    const optimized = currentPeriods(start + 10 * 60_000)
    expect(optimized[0]?.id).toBe('2031-03-04T05:16')
    expect(sameMap(interpreted, optimized)).toBe(true)
  })
})
