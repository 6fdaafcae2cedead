import pino, { type Logger } from 'pino'
import type { Summary } from './proxy/summary.js'

const SERVICE = 'loopers'

/** Paths that could carry a credential if anything ever logged headers; redacted by configuration. */
const REDACT = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'req.headers["x-goog-api-key"]',
  'req.headers["x-loopers-provider-key"]',
  'req.headers["x-loopers-aws-secret-key"]',
  'req.headers["x-loopers-aws-session-token"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers["api-key"]',
  'headers["x-goog-api-key"]',
  'headers["x-loopers-provider-key"]',
]

// One write per log line costs the proxy about a quarter of its CPU per request: stdout is buffered
// and flushed at least every second (and at shutdown), so a quiet proxy's lines still appear promptly.
// 64 KiB (~200 summary lines) a write, not 4 KiB: each write wakes a thread of the pool on the proxy's core.
const STDOUT_BUFFER_BYTES = 65_536
const FLUSH_INTERVAL_MS = 1_000

// Fields of a log line can carry what a client sent (a model name of megabytes); each is cut to this length.
const MAX_FIELD_CHARS = 128

const truncate = (value: string): string => (value.length <= MAX_FIELD_CHARS ? value : `${value.slice(0, MAX_FIELD_CHARS)}…`)

/** The line's top-level string fields, each cut to MAX_FIELD_CHARS characters (marked with `…`). */
function truncateFields(object: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | null = null
  // for…in (own fields, as pino reads them), not Object.entries: no pair array per field on every line.
  for (const name in object) {
    const value = object[name]
    if (typeof value !== 'string' || value.length <= MAX_FIELD_CHARS || !Object.hasOwn(object, name)) continue
    out ??= { ...object }
    out[name] = truncate(value)
  }
  return out ?? object
}

// The destination of each logger createLogger made: where logRequest writes the lines it builds itself.
const destinations = new WeakMap<Logger, pino.DestinationStream>()

/** The process logger: JSON lines at `level`, to `destination` or buffered stdout; credentials redacted, fields truncated. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options = {
    level,
    base: { service: SERVICE },
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { log: truncateFields },
  }
  const stream = destination ?? createStdout()
  const logger = pino(options, stream)
  destinations.set(logger, stream)
  return logger
}

/**
 * Buffered stdout: each line kept as bytes (sonic-boom's buffer mode appends it to a list, joined once per write;
 * its text mode measures and copies everything buffered on each line), written STDOUT_BUFFER_BYTES at a time off the
 * event loop, at least every FLUSH_INTERVAL_MS, on `flush` and, synchronously, when the process exits.
 */
function createStdout(): pino.DestinationStream {
  const out = pino.destination({ dest: 1, contentMode: 'buffer', minLength: STDOUT_BUFFER_BYTES, maxWrite: 4 * STDOUT_BUFFER_BYTES, sync: false, periodicFlush: FLUSH_INTERVAL_MS })
  // The stream flushes itself (pino's logger.flush() would also fsync stdout every time, lines or not).
  const flush = (done?: (error?: Error) => unknown): void => out.flush(done)
  // sonic-boom's types name only strings; in buffer mode it takes bytes.
  return { write: (line: string) => out.write(Buffer.from(line) as unknown as string), flush } as pino.DestinationStream
}

// As pino quotes a string value, so both paths write the same bytes: JSON.stringify when it is long or holds a
// control character, else only `"` and `\` escaped.
const ESCAPED = /["\\\u0000-\u001f]/
const CONTROL = /[\u0000-\u001f]/
const QUOTE_OR_BACKSLASH = /["\\]/g
function quote(value: string): string {
  if (value.length > 100) return JSON.stringify(value)
  // The common case (an id, a model name): one scan, nothing to escape.
  if (!ESCAPED.test(value)) return `"${value}"`
  return CONTROL.test(value) ? JSON.stringify(value) : `"${value.replace(QUOTE_OR_BACKSLASH, '\\$&')}"`
}

// As pino writes a number: NaN and ±Infinity as null.
const number = (value: number): string => (Number.isFinite(value) ? String(value) : 'null')

// `,"name":` of each summary field, made once: appended as it is, not rebuilt on every line.
const prefixes = new Map<string, string>()
function prefix(name: string): string {
  let made = prefixes.get(name)
  if (made === undefined) prefixes.set(name, (made = `,"${name}":`))
  return made
}

/**
 * Writes a request's summary line at info, byte for byte what `logger.info({ ...summary, ms }, 'request')` writes
 * (`ms` rounded to 0.01), built for the summary's flat fields instead of by pino's generic path (no copy, no
 * formatter pass). A logger createLogger did not make, or a field that is not a string, number or boolean, goes through pino.
 */
export function logRequest(logger: Logger, summary: Summary, ms: number): void {
  if (!logger.isLevelEnabled('info')) return
  const rounded = Math.round(ms * 100) / 100
  const stream = destinations.get(logger)
  if (stream === undefined) return logger.info({ ...summary, ms: rounded }, 'request')
  let line = `{"level":${logger.levels.values.info},"time":${Date.now()},"service":"${SERVICE}"`
  // for…in: the summary's own fields in their order, as pino reads them. Every redacted path lies inside an object,
  // and an object goes through pino, redaction included.
  for (const name in summary) {
    const value = summary[name as keyof Summary]
    switch (typeof value) {
      case 'undefined':
        continue
      case 'string':
        line += prefix(name)
        line += quote(truncate(value))
        continue
      case 'number':
        line += prefix(name)
        line += number(value)
        continue
      case 'boolean':
        line += prefix(name)
        line += value ? 'true' : 'false'
        continue
      default:
        return logger.info({ ...summary, ms: rounded }, 'request')
    }
  }
  stream.write(`${line},"ms":${number(rounded)},"msg":"request"}\n`)
}
