import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DEFAULT_LOOP_LIMIT, DEFAULT_LOOP_WINDOW_SECONDS, LOOP_IN_FLIGHT_TOLERATED, LOOP_STEPS_AFTER_TRIM, LOOP_STEPS_PER_SCOPE } from '../../src/loop/rule.js'

// The reserve scripts hold the loop rule's constants as literals (arguments cost Redis time on every call): they
// must be the release's, as src/loop/rule.ts has them and the embedded store uses them.

describe('lua/reserve.lua and lua/reserve-batch.lua: the loop rule\'s constants', () => {
  it.each(['reserve', 'reserve-batch'])('are those of src/loop/rule.ts in %s.lua', (name) => {
    const lua = readFileSync(new URL(`../../lua/${name}.lua`, import.meta.url), 'utf8')
    const line = lua.match(/^local defaultLoopLimit, defaultLoopWindow, stepsKept, stepsAfterTrim, inFlightTolerated = (.*)$/m)
    expect(line?.[1]?.split(', ').map(Number)).toEqual([
      DEFAULT_LOOP_LIMIT, DEFAULT_LOOP_WINDOW_SECONDS, LOOP_STEPS_PER_SCOPE, LOOP_STEPS_AFTER_TRIM, LOOP_IN_FLIGHT_TOLERATED,
    ])
  })
})
