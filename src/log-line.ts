import type { Summary } from './proxy/summary.js'

// A summary line written as bytes, straight into a Buffer: no string is concatenated, flattened and UTF-8 encoded,
// and a number's digits are written from its value, not through a string of its own.

const QUOTE = 0x22
const DOT = 0x2e
const MINUS = 0x2d
const ZERO = 0x30

// Room each field may take at most, checked before it is written: a typed array ignores a write past its end.
// A string field on this path is at most MAX_PLAIN_CHARS characters; a number at most 25 (String of a double).
const MAX_PLAIN_CHARS = 128
const FIELD_ROOM = 160
const TAIL_ROOM = 64

/** Bytes of `text` at `at` when every character is printable ASCII other than `"` and `\`; -1 (nothing usable) otherwise. */
function writePlain(bytes: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === QUOTE || c === 0x5c) return -1
    bytes[at + i] = c
  }
  return at + text.length
}

/** The decimal digits of a safe integer `n` ≥ 0 at `at`; returns where they end. */
function writeDigits(bytes: Buffer, at: number, n: number): number {
  // Digits of an int32 come by integer division; a larger number (a timestamp) is cut in two below 2^31, as `%` of
  // a double is a call to fmod.
  if (n < BILLION) return writeInt(bytes, at, n, digitCount(n))
  const high = Math.floor(n / BILLION)
  return writeInt(bytes, writeInt(bytes, at, high, digitCount(high)), n - high * BILLION, 9)
}

/** How many decimal digits an int32 `n` ≥ 0 has. */
function digitCount(n: number): number {
  let count = 1
  for (let rest = n | 0; rest >= 10; rest = (rest / 10) | 0) count++
  return count
}

/** The last `count` decimal digits of an int32 `n` ≥ 0 at `at` (leading zeros included); returns where they end. */
function writeInt(bytes: Buffer, at: number, n: number, count: number): number {
  // `| 0`: the compiler then knows an int32, and divides by 10 as integers, not as doubles.
  for (let i = at + count - 1, rest = n | 0; i >= at; i--) {
    const tenth = (rest / 10) | 0
    bytes[i] = ZERO + rest - tenth * 10
    rest = tenth
  }
  return at + count
}

const BILLION = 1e9

// A double below 1e9 that equals some integer count of millionths divided by 1e6 (a micro-USD amount, a duration
// rounded to 0.01 or 0.001 ms) is written from that count: String writes the shortest decimal that reads back as
// the same double, and below 1e9 doubles lie less than 1e-6 apart, so no decimal of at most 6 places but the
// count's own is that close (test/unit/log-line.test.ts checks this against String on many values and edges).
const MICROS = 1e6
const MICROS_BELOW = 1e9

/** `value` as JSON's number, exactly as `String(value)` writes it (`null` when not finite); returns where it ends. */
export function writeNumber(bytes: Buffer, at: number, value: number): number {
  if (!Number.isFinite(value)) return writeAscii(bytes, at, 'null')
  if (Number.isSafeInteger(value)) return value < 0 ? writeDigits(bytes, writeMinus(bytes, at), -value) : writeDigits(bytes, at, value)
  const micros = Math.round(value * MICROS)
  if (Math.abs(value) >= MICROS_BELOW || micros / MICROS !== value) return writeAscii(bytes, at, String(value))
  const abs = Math.abs(micros)
  const whole = Math.floor(abs / MICROS)
  const end = writeDigits(bytes, micros < 0 ? writeMinus(bytes, at) : at, whole)
  // Not an integer, so some of the six places are not zero: those up to the last that is not.
  let fraction = abs - whole * MICROS
  let places = 6
  for (; fraction % 10 === 0; fraction /= 10) places--
  bytes[end] = DOT
  return writeInt(bytes, end + 1, fraction, places)
}

function writeMinus(bytes: Buffer, at: number): number {
  bytes[at] = MINUS
  return at + 1
}

/** ASCII `text` (a constant or String of a number) at `at`. */
function writeAscii(bytes: Buffer, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i)
  return at + text.length
}

// `,"name":` of each field name met, as bytes: copied, not written a character at a time (null: not plain ASCII).
const names = new Map<string, Buffer | null>()

/** `,"name":` at `at`; -1 when the name is not plain ASCII. */
function writeName(bytes: Buffer, at: number, name: string): number {
  let encoded = names.get(name)
  if (encoded === undefined) {
    encoded = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/.test(name) ? Buffer.from(`,"${name}":`, 'latin1') : null
    names.set(name, encoded)
  }
  if (encoded === null) return -1
  bytes.set(encoded, at)
  return at + encoded.length
}

/** Writes a summary line into `bytes` from `at` (see createSummaryWriter); returns where it ends, or -1. */
type SummaryWriter = (bytes: Buffer, at: number, time: number, summary: Summary, ms: number) => number

const TAIL = Buffer.from(',"msg":"request"}\n')

/**
 * A writer of the summary line `{"level":<level>,"time":…,"service":<service>,<fields>,"ms":…,"msg":"request"}\n`, byte
 * for byte as pino writes it; it returns -1 when the line is not that simple: a field that is not a string, number
 * or boolean, a string that is long, not ASCII or needs escaping, or no room left. `service` must be plain ASCII.
 */
export function createSummaryWriter(level: number, service: string): SummaryWriter {
  // What comes before and after the time, made once.
  const head = Buffer.from(`{"level":${level},"time":`)
  const base = Buffer.from(`,"service":"${service}"`)
  return (bytes, at, time, summary, ms) => writeSummaryLine(bytes, at, head, time, base, summary, ms)
}

function writeSummaryLine(bytes: Buffer, at: number, head: Buffer, time: number, base: Buffer, summary: Summary, ms: number): number {
  const limit = bytes.length - TAIL_ROOM
  if (at + head.length + base.length + FIELD_ROOM > limit) return -1
  bytes.set(head, at)
  let end = writeNumber(bytes, at + head.length, time)
  bytes.set(base, end)
  end += base.length
  // for…in: the summary's own fields in their order, as pino reads them.
  for (const name in summary) {
    const value = summary[name as keyof Summary]
    if (value === undefined) continue
    if (end + FIELD_ROOM + name.length > limit) return -1
    end = writeName(bytes, end, name)
    if (end < 0) return -1
    switch (typeof value) {
      case 'string':
        if (value.length > MAX_PLAIN_CHARS) return -1
        bytes[end] = QUOTE
        end = writePlain(bytes, end + 1, value)
        if (end < 0) return -1
        bytes[end++] = QUOTE
        continue
      case 'number':
        end = writeNumber(bytes, end, value)
        continue
      case 'boolean':
        end = writeAscii(bytes, end, value ? 'true' : 'false')
        continue
      default:
        return -1
    }
  }
  end = writeNumber(bytes, writeName(bytes, end, 'ms'), ms)
  bytes.set(TAIL, end)
  return end + TAIL.length
}
