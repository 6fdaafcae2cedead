import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createLogger, logRequest } from '../../src/logger.js'
import { createSummary, type Summary } from '../../src/proxy/summary.js'

/** A logger writing into an array of lines, as createLogger's destination. */
function capture(level = 'info'): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = []
  return { logger: createLogger(level, { write: (line: string) => void lines.push(line) }), lines }
}

/** What pino itself writes for the line logRequest builds. */
function pinoLine(summary: Summary, ms: number): string {
  const { logger, lines } = capture()
  logger.info({ ...summary, ms: Math.round(ms * 100) / 100 }, 'request')
  return lines.join('')
}

/** The one line written. */
function only(lines: string[]): string {
  expect(lines).toHaveLength(1)
  return lines[0] ?? ''
}

function filled(fields: Partial<Summary>): Summary {
  return Object.assign(createSummary(), fields)
}

const ok = filled({
  key: 'abcdef12',
  provider: 'openai',
  op: 'chat',
  model: 'gpt-4o-mini',
  stream: false,
  status: 200,
  outcome: 'ok',
  inputBound: 12,
  inputTokens: 10,
  outputTokens: 16,
  reservedUsd: 0.000123,
  chargedUsd: 0.0000456,
  addedMs: 0.412,
  priced: true,
})

describe('logRequest', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(1_764_900_000_123)
  })
  afterEach(() => vi.useRealTimers())

  // Consumers read these lines: the summary's own serializer must write exactly pino's bytes.
  it.each<[string, Summary, number]>([
    ['a metered request', ok, 3.14159],
    ['a refusal at the key gate (its own field order)', { key: 'abcdef12', provider: 'anthropic', outcome: 'refused', code: 'budget_exceeded', status: 402 }, 0.004],
    ['no field set', createSummary(), 0],
    ['a refused window and what it held', filled({ ...ok, outcome: 'refused', code: 'budget_exceeded', window: 'daily', heldUsd: 1.5, status: 402 }), 12],
    ['a long client-sent model, cut', filled({ model: 'm'.repeat(5000) }), 1],
    ['a model of exactly the limit', filled({ model: 'm'.repeat(128) }), 1],
    ['quotes and backslashes', filled({ model: 'a"b\\c"' }), 1],
    ['quotes in a string above 100 characters', filled({ model: `${'q'.repeat(110)}"\\` }), 1],
    ['control characters', filled({ model: 'line\nbreak\ttab\u0001' }), 1],
    ['a lone surrogate', filled({ model: 'x\ud800y' }), 1],
    ['a lone surrogate above 100 characters', filled({ model: `${'x'.repeat(101)}\ud800` }), 1],
    ['non-ASCII and line separators', filled({ model: 'модель-ü-€-\u2028-😀' }), 1],
    ['a long cause', filled({ outcome: 'error', cause: `connect ECONNREFUSED ${'1'.repeat(300)}` }), 1],
    ['numbers that are not finite', filled({ inputTokens: Number.NaN, chargedUsd: Number.POSITIVE_INFINITY, outputTokens: -0 }), Number.NaN],
    ['a stream that was cut off', filled({ ...ok, stream: true, outcome: 'cutoff', maxTokens: 100 }), 250.005],
  ])('writes what pino writes: %s', (_name, summary, ms) => {
    const { logger, lines } = capture()
    logRequest(logger, summary, ms)
    const line = only(lines)
    expect(line).toBe(pinoLine(summary, ms))
    expect(line.endsWith('\n')).toBe(true)
  })

  it('writes what pino writes for many amounts, token counts and durations', () => {
    // A seeded generator (mulberry32): the same summaries on every run.
    let state = 90
    const next = (): number => {
      state = (state + 0x6d2b79f5) >>> 0
      let t = Math.imul(state ^ (state >>> 15), 1 | state)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
    }
    const micros = (): number => Math.floor(10 ** (next() * 12) * next())
    for (let i = 0; i < 2_000; i++) {
      const summary = filled({
        ...ok,
        inputTokens: Math.floor(next() * 1e6),
        outputTokens: Math.floor(next() * 1e5),
        reservedUsd: micros() / 1e6,
        chargedUsd: micros() / 1e6,
        heldUsd: i % 3 === 0 ? micros() / 1e6 : undefined,
        addedMs: Math.round(next() * 10 ** (next() * 6) * 1000) / 1000,
      })
      const ms = next() * 10 ** (next() * 8)
      const { logger, lines } = capture()
      logRequest(logger, summary, ms)
      expect(only(lines)).toBe(pinoLine(summary, ms))
    }
  })

  it('cuts a long client-sent field to 128 characters', () => {
    const { logger, lines } = capture()
    logRequest(logger, filled({ model: 'm'.repeat(5000) }), 1)
    expect(JSON.parse(only(lines))).toMatchObject({ level: 30, time: 1_764_900_000_123, service: 'loopers', model: `${'m'.repeat(128)}…`, ms: 1, msg: 'request' })
  })

  it('writes nothing above info', () => {
    const { logger, lines } = capture('warn')
    logRequest(logger, ok, 1)
    expect(lines).toEqual([])
  })

  it('writes to a logger createLogger did not make through pino', () => {
    const lines: string[] = []
    const logger = pino({ base: { service: 'loopers' } }, { write: (line: string) => void lines.push(line) })
    logRequest(logger, ok, 2.5)
    expect(JSON.parse(only(lines))).toMatchObject({ ...JSON.parse(pinoLine(ok, 2.5)), time: 1_764_900_000_123 })
  })

  it('redacts a credential even in a summary that carries headers', () => {
    const leaky = { ...ok, headers: { authorization: 'Bearer sk-secret-upstream' } } as Summary
    const { logger, lines } = capture()
    logRequest(logger, leaky, 1)
    expect(lines.join('')).not.toContain('sk-secret-upstream')
    expect(JSON.parse(only(lines)).headers).toEqual({ authorization: '[redacted]' })
  })

  it('hands a field of another type to pino', () => {
    const odd = filled({ model: { name: 'x' } as unknown as string })
    const { logger, lines } = capture()
    logRequest(logger, odd, 1)
    expect(lines).toEqual([pinoLine(odd, 1)])
    expect(JSON.parse(only(lines)).model).toEqual({ name: 'x' })
  })
})
