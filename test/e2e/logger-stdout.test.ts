import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'
import { createLogger } from '../../src/logger.js'
import { createSummary, type Summary } from '../../src/proxy/summary.js'

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))
const TIME = 1_764_900_000_123

/** One line to log: a request's summary (and its duration), or a plain pino line. */
type Entry = { summary: Partial<Summary>; ms: number } | { n: number }

/** Many lines (several 64 KiB chunks of stdout): ASCII summaries, summaries that need escaping or are not ASCII, pino lines. */
function entries(): Entry[] {
  const models = ['gpt-4o-mini', 'модель-ü-€-\u2028-😀', 'a"b\\c', 'line\nbreak', 'x\ud800y', 'm'.repeat(300), 'claude-sonnet-4']
  const out: Entry[] = []
  for (let i = 0; i < 3_000; i++) {
    if (i % 13 === 0) out.push({ n: i })
    const model = models[i % 7 === 0 ? (i / 7) % models.length : 0]
    const summary = { key: 'abcdef12', provider: 'openai' as const, op: 'chat', model, stream: i % 2 === 0, status: 200, outcome: 'ok', inputBound: i, inputTokens: i % 500, outputTokens: 16, reservedUsd: (123 + i * 7919) / 1e6, chargedUsd: (i * 31) / 1e6, addedMs: Math.round(i * 0.7351 * 1000) / 1000, priced: true }
    out.push({ summary, ms: i * 1.234567 })
  }
  return out
}

// What leaves the process is what matters: stdout's bytes for summary lines, written by logRequest as bytes into
// chunks, are exactly the bytes pino's own lines would be, in order with the other lines.
it('summary lines on stdout are byte for byte what pino writes, in order with other lines', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'loopers-log-'))
  try {
    const file = join(dir, 'entries.json')
    const list = entries()
    writeFileSync(file, JSON.stringify(list))
    const script = [
      `const { createLogger, logRequest } = await import(${JSON.stringify(join(DIST, 'logger.js'))})`,
      `const { createSummary } = await import(${JSON.stringify(join(DIST, 'proxy/summary.js'))})`,
      `const list = JSON.parse((await import('node:fs')).readFileSync(${JSON.stringify(file)}, 'utf8'))`,
      `Date.now = () => ${TIME}`,
      `const logger = createLogger('info')`,
      `for (const e of list) e.summary === undefined ? logger.info({ n: e.n }, 'line') : logRequest(logger, Object.assign(createSummary(), e.summary), e.ms)`,
      `logger.flush(() => process.exit(0))`,
    ].join('\n')
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    const chunks: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk))
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
    expect(code).toBe(0)

    // pino's own lines for the same entries, at the same time.
    const lines: string[] = []
    const pinoLogger = createLogger('info', { write: (line: string) => void lines.push(line) })
    const realNow = Date.now
    Date.now = () => TIME
    try {
      for (const e of list) {
        if ('n' in e) pinoLogger.info({ n: e.n }, 'line')
        else pinoLogger.info({ ...Object.assign(createSummary(), e.summary), ms: Math.round(e.ms * 100) / 100 }, 'request')
      }
    } finally {
      Date.now = realNow
    }
    const out = Buffer.concat(chunks)
    const want = Buffer.from(lines.join(''))
    expect(out.length).toBeGreaterThan(4 * 65_536)
    expect(out.equals(want)).toBe(true)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
