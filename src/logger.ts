import pino, { type Logger } from 'pino'

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
const STDOUT_BUFFER_BYTES = 4096
const FLUSH_INTERVAL_MS = 1_000

// Fields of a log line can carry what a client sent (a model name of megabytes); each is cut to this length.
const MAX_FIELD_CHARS = 128

/** The line's top-level string fields, each cut to MAX_FIELD_CHARS characters (marked with `…`). */
function truncateFields(object: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | null = null
  // for…in (own fields, as pino reads them), not Object.entries: no pair array per field on every line.
  for (const name in object) {
    const value = object[name]
    if (typeof value !== 'string' || value.length <= MAX_FIELD_CHARS || !Object.hasOwn(object, name)) continue
    out ??= { ...object }
    out[name] = `${value.slice(0, MAX_FIELD_CHARS)}…`
  }
  return out ?? object
}

/** The process logger: JSON lines at `level`, to `destination` or buffered stdout; credentials redacted, fields truncated. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'loopers' },
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { log: truncateFields },
  }
  if (destination !== undefined) return pino(options, destination)
  // The stream flushes itself (pino's logger.flush() would also fsync stdout every time, lines or not).
  return pino(options, pino.destination({ dest: 1, minLength: STDOUT_BUFFER_BYTES, sync: false, periodicFlush: FLUSH_INTERVAL_MS }))
}
