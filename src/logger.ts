import pino, { type Logger } from 'pino'
import { createSummaryWriter } from './log-line.js'
import type { Summary } from './proxy/summary.js'

const SERVICE = 'loopers'
// pino's value of the info level (createLogger's loggers keep pino's levels).
const INFO = pino.levels.values.info ?? 30
// logRequest's writer of summary lines as bytes.
const writeSummary = createSummaryWriter(INFO, SERVICE)

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
// and flushed within a second of a line (and at shutdown), so a quiet proxy's lines still appear promptly.
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

/** Where logRequest puts a logger's lines: as bytes from `start` of `bytes`, handed on by `take(end)`; or as text to `stream`. */
interface LineSink {
  stream: pino.DestinationStream
  bytes: Buffer
  start: number
  take(end: number): void
}

// The line sink of each logger createLogger made.
const sinks = new WeakMap<Logger, LineSink>()

/** The process logger: JSON lines at `level`, to `destination` or buffered stdout; credentials redacted, fields truncated. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options = {
    level,
    base: { service: SERVICE },
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { log: truncateFields },
  }
  const sink = destination === undefined ? createStdout() : createTextSink(destination)
  const logger = pino(options, sink.stream)
  sinks.set(logger, sink)
  return logger
}

// Bytes of one line at most, on logRequest's byte path, in the usual case (a longer line takes the text path).
const LINE_BYTES = 4_096

/** A destination that takes text: each line is built in one reused buffer, then read out as a (one-byte) string. */
function createTextSink(stream: pino.DestinationStream): LineSink {
  const bytes = Buffer.allocUnsafeSlow(2 * LINE_BYTES)
  // Lines on the byte path are ASCII, so latin1 reads them back exactly.
  return { stream, bytes, start: 0, take: (end) => void stream.write(bytes.toString('latin1', 0, end)) }
}

/**
 * Buffered stdout: each line kept as bytes (sonic-boom's buffer mode appends it to a list, joined once per write;
 * its text mode measures and copies everything buffered on each line), written STDOUT_BUFFER_BYTES at a time off the
 * event loop, within FLUSH_INTERVAL_MS of a line, on `flush` and, synchronously, when the process exits.
 */
function createStdout(): LineSink {
  const out = pino.destination({ dest: 1, contentMode: 'buffer', minLength: STDOUT_BUFFER_BYTES, maxWrite: 4 * STDOUT_BUFFER_BYTES, sync: false })
  // The stream flushes itself (pino's logger.flush() would also fsync stdout every time, lines or not).
  const flush = (done?: (error?: Error) => unknown): void => out.flush(done)
  // Bytes handed to the stream and not yet written. The flush timer runs only while there are some: sonic-boom's own
  // periodic flush writes every second, lines or not (an empty write on the pool: two thread wake-ups a second
  // at `warn`, where the proxy writes no line). A flush during a write leaves what came after it to the next tick.
  let unwritten = 0
  let timer: NodeJS.Timeout | null = null
  const tick = (): void => {
    timer = null
    if (unwritten === 0) return
    out.flush()
    timer = setTimeout(tick, FLUSH_INTERVAL_MS).unref()
  }
  out.on('write', (n: number) => (unwritten -= n))
  // sonic-boom's types name only strings; in buffer mode it takes bytes.
  const write = (line: string | Buffer): void => {
    const bytes = typeof line === 'string' ? Buffer.from(line) : line
    unwritten += bytes.length
    timer ??= setTimeout(tick, FLUSH_INTERVAL_MS).unref()
    void out.write(bytes as unknown as string)
  }
  const stream = { write, flush } as pino.DestinationStream
  // logRequest writes its lines into a chunk of STDOUT_BUFFER_BYTES and hands each to the stream as a view of it (no
  // copy); a new chunk is taken when the room left may not hold a line (the old one lives until it is written).
  const sink: LineSink = {
    stream,
    bytes: Buffer.allocUnsafeSlow(STDOUT_BUFFER_BYTES),
    start: 0,
    take(end) {
      write(sink.bytes.subarray(sink.start, end))
      sink.start = end
      if (sink.bytes.length - end < LINE_BYTES) {
        sink.bytes = Buffer.allocUnsafeSlow(STDOUT_BUFFER_BYTES)
        sink.start = 0
      }
    },
  }
  return sink
}

/**
 * Writes a request's summary line at info, byte for byte what `logger.info({ ...summary, ms }, 'request')` writes
 * (`ms` rounded to 0.01), as bytes built for the summary's flat fields (no copy, no formatter pass, no string) when
 * the line is plain (see createSummaryWriter: the usual case); any other line, and a logger createLogger did not
 * make, goes through pino itself (truncation and redaction included).
 */
export function logRequest(logger: Logger, summary: Summary, ms: number): void {
  if (!logger.isLevelEnabled('info')) return
  const rounded = Math.round(ms * 100) / 100
  const sink = sinks.get(logger)
  if (sink === undefined) return logger.info({ ...summary, ms: rounded }, 'request')
  const end = writeSummary(sink.bytes, sink.start, Date.now(), summary, rounded)
  if (end >= 0) return sink.take(end)
  logger.info({ ...summary, ms: rounded }, 'request')
}
