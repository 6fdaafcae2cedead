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

/** The process logger: JSON lines on stdout at `level`; credentials redacted. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { service: 'loopers' }, redact: { paths: REDACT, censor: '[redacted]' } }, destination)
}
