/**
 * The arguments of the budget scripts and their RESP: runs of arguments and starts of keys encoded once, and the
 * writer that puts a whole command into one Buffer without measuring any text before writing it.
 */

/** Arguments encoded once as RESP bulk strings, to be sent by many commands; `values` are what they encode. */
export interface EncodedArgs {
  readonly values: readonly (string | number)[]
  readonly resp: Buffer
}

/** The start of many arguments (a key's tag and kind), encoded once; `text` is what it encodes. */
export interface EncodedStart {
  readonly text: string
  readonly bytes: Buffer
}

/**
 * One argument sent as an encoded start then `rest` (a key then made of a request id): no joined string is built.
 * A class, not a literal: see argList.
 */
class JoinedArg {
  constructor(
    readonly start: EncodedStart,
    readonly rest: string,
  ) {}
}

/** One script argument, or a run of them encoded beforehand. */
export type ScriptArg = string | number | EncodedArgs | JoinedArg

/**
 * A new list of `length` empty slots for a command's arguments. Copied from a blank list, not `new Array(length)`:
 * V8 tenures an allocation site (a literal's, `new Array`'s) whose objects it saw survive, and then allocates every
 * list there in old space however short its life (bench/store-held.mjs); a copy has no site and starts young.
 */
export function argList(length: number): ScriptArg[] {
  return length <= BLANK_ARGS.length ? (BLANK_ARGS.slice(0, length) as unknown as ScriptArg[]) : new Array<ScriptArg>(length)
}

/** Never written: argList's source (long enough for a batch of 64 reserves each with a loop check). */
const BLANK_ARGS: readonly undefined[] = Array.from({ length: 512 }, () => undefined)

/** Encodes `values` as consecutive RESP bulk strings, once, for every command that sends them in that order. */
export function encodeArgs(values: readonly (string | number)[]): EncodedArgs {
  return Object.freeze({ values: Object.freeze([...values]), resp: respOf(values) })
}

/** `values` as consecutive RESP bulk strings. */
export function respOf(values: readonly (string | number)[]): Buffer {
  return Buffer.from(values.map(bulk).join(''))
}

/** How many arguments `parts` send. */
export function countArgs(parts: readonly ScriptArg[]): number {
  let count = 0
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as ScriptArg
    count += typeof part === 'object' && 'values' in part ? part.values.length : 1
  }
  return count
}

/** Puts every argument `parts` send into `args` from `at` on, as ioredis reads arguments. */
export function putArgValues(parts: readonly ScriptArg[], args: (string | number)[], at: number): void {
  let next = at
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as ScriptArg
    if (typeof part !== 'object') args[next++] = part
    else if ('rest' in part) args[next++] = part.start.text + part.rest
    else for (let j = 0; j < part.values.length; j++) args[next++] = part.values[j] as string | number
  }
}

/**
 * The RESP of a command of `argCount` arguments: `head` (its name and first argument, encoded), `numberOfKeys`, then
 * `parts`. Written where the current slab has room for the worst case, so no text is measured before it is written,
 * and returned as a view of the bytes written (never written again: the next command starts after them).
 */
export function writeCommand(argCount: number, head: Buffer, numberOfKeys: number, parts: readonly ScriptArg[]): Buffer {
  const count = argCountResp(argCount)
  const keys = keyCountResp(numberOfKeys)
  let room = count.length + head.length + keys.length
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as ScriptArg
    if (typeof part !== 'object') room += BULK_HEAD_ROOM + (typeof part === 'string' ? UTF8_PER_UNIT * part.length : NUMBER_ROOM)
    else if ('rest' in part) room += BULK_HEAD_ROOM + part.start.bytes.length + UTF8_PER_UNIT * part.rest.length
    else room += part.resp.length
  }
  if (slab.length - slabUsed < room) {
    slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, room))
    slabUsed = 0
  }
  const out = slab
  const start = slabUsed
  out.set(count, start)
  out.set(head, start + count.length)
  out.set(keys, start + count.length + head.length)
  let at = start + count.length + head.length + keys.length
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as ScriptArg
    if (typeof part === 'object') {
      if ('rest' in part) {
        at = writeBulkText(out, at, part.rest, part.start.bytes)
      } else {
        out.set(part.resp, at)
        at += part.resp.length
      }
    } else if (typeof part === 'string') {
      at = writeBulkText(out, at, part)
    } else {
      at = Number.isSafeInteger(part) && part >= 0 ? writeBulkInteger(out, at, part) : writeBulkText(out, at, String(part))
    }
  }
  // The next command starts on an 8-byte boundary.
  slabUsed = (at + 7) & ~7
  return out.subarray(start, at)
}

/** Encodes `text` once, to start arguments joined to it. */
export function encodeStart(text: string): EncodedStart {
  return Object.freeze({ text, bytes: Buffer.from(text) })
}

/** The argument `start.text + rest`, written without joining them. */
export function joinArg(start: EncodedStart, rest: string): JoinedArg {
  return new JoinedArg(start, rest)
}

/**
 * Commands are written one after another into a slab and sent as views of it (not copied out of a scratch Buffer
 * into one of their own: a second region of memory and a copy per command); a slab full up to `slabUsed` is left to
 * the views still held (a socket's pending writes) and a new one taken, larger for an EVAL's script if need be.
 */
const SLAB_BYTES = 65_536
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
let slabUsed = 0
/** Room for `$<length>\r\n` and the closing `\r\n` of a bulk string (a length has at most 16 digits). */
const BULK_HEAD_ROOM = 21
/** UTF-8 bytes per UTF-16 code unit, at most. */
const UTF8_PER_UNIT = 3
/** Characters of a number's text, at most (`String(-Number.MAX_VALUE)`). */
const NUMBER_ROOM = 24

/** The RESP of argument counts (`*<n>`) and of a script's key counts, built once each. */
const argCounts: Buffer[] = []
const keyCounts: Buffer[] = []

function argCountResp(n: number): Buffer {
  return (argCounts[n] ??= Buffer.from(`*${n}\r\n`))
}

function keyCountResp(n: number): Buffer {
  return (keyCounts[n] ??= Buffer.from(bulk(n)))
}

const CR = 13
const LF = 10
const DOLLAR = 36
const ZERO = 48
const INT32_MAX = 2 ** 31 - 1

/** Digits of a non-negative safe integer. */
function decimalLength(n: number): number {
  let digits = 1
  let rest = n
  for (; rest > INT32_MAX; rest = Math.floor(rest / 10)) digits++
  // Within 32 bits the division is an integer one.
  for (let small = rest | 0; small >= 10; small = (small / 10) | 0) digits++
  return digits
}

/** Writes `$<length>\r\n` at `at`, `digits` being decimalLength(length); returns where it ends. */
function writeBulkHead(out: Buffer, at: number, length: number, digits: number): number {
  out[at] = DOLLAR
  writeDigits(out, at + 1, length, digits)
  out[at + digits + 1] = CR
  out[at + digits + 2] = LF
  return at + digits + 3
}

/** Writes the `digits` digits of the non-negative safe integer `n` at `at`. */
function writeDigits(out: Buffer, at: number, n: number, digits: number): void {
  let digit = at + digits - 1
  let rest = n
  for (; rest > INT32_MAX; digit--) {
    const tenth = Math.floor(rest / 10)
    out[digit] = ZERO + (rest - tenth * 10)
    rest = tenth
  }
  for (let small = rest | 0; digit >= at; small = (small / 10) | 0, digit--) out[digit] = ZERO + (small % 10)
}

/**
 * Writes `text`, after the bytes `before` when given, as one RESP bulk string into `out` at `at` (room made by the
 * caller); returns where it ends. The text's length is first taken as one byte per character (true of ASCII: keys,
 * ids); when UTF-8 takes more digits, the text moves over.
 */
function writeBulkText(out: Buffer, at: number, text: string, before?: Buffer): number {
  const beforeLength = before === undefined ? 0 : before.length
  const guessDigits = decimalLength(beforeLength + text.length)
  let start = at + guessDigits + 3
  if (before !== undefined) out.set(before, start)
  const length = beforeLength + (text.length === 0 ? 0 : out.write(text, start + beforeLength))
  const digits = length === beforeLength + text.length ? guessDigits : decimalLength(length)
  if (digits !== guessDigits) {
    out.copyWithin(start + digits - guessDigits, start, start + length)
    start += digits - guessDigits
  }
  writeBulkHead(out, at, length, digits)
  out[start + length] = CR
  out[start + length + 1] = LF
  return start + length + 2
}

/** Writes a non-negative safe integer as a RESP bulk string (its decimal text) at `at`; returns where it ends. */
function writeBulkInteger(out: Buffer, at: number, n: number): number {
  const digits = decimalLength(n)
  const start = writeBulkHead(out, at, digits, decimalLength(digits))
  writeDigits(out, start, n, digits)
  out[start + digits] = CR
  out[start + digits + 1] = LF
  return start + digits + 2
}

/** One RESP bulk string; its length counts UTF-8 bytes. */
function bulk(value: string | number): string {
  const text = typeof value === 'string' ? value : String(value)
  return `$${typeof value === 'string' ? Buffer.byteLength(text) : text.length}\r\n${text}\r\n`
}
