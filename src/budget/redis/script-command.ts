/**
 * Sending the budget Lua scripts: one EVALSHA command per call (EVAL on a connection's first use, again
 * after NOSCRIPT), its RESP written here into one Buffer from arguments of which the repeating runs (a key's keys
 * of one minute, constants) were encoded once.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Command } from 'ioredis'
import { StoreUnavailableError } from '../../errors.js'
import { Deadlines, type DeadlineCommand } from './command-deadlines.js'
import type { RedisClient } from './redis-client.js'

export interface Script {
  /** Its file's name, which names it in errors. */
  name: string
  lua: string
  sha: string
  /** Connections this script was sent on in full (EVAL); Redis keeps it cached there for EVALSHA. */
  sentOn: WeakSet<object>
  /** The RESP of the command name and the script (or its SHA1): what follows the argument count. */
  evalHead: Buffer
  evalshaHead: Buffer
}

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

/** One argument sent as an encoded start then `rest` (a key then made of a request id): no joined string is built. */
export interface JoinedArg {
  readonly start: EncodedStart
  readonly rest: string
}

/** One script argument, or a run of them encoded beforehand. */
export type ScriptArg = string | number | EncodedArgs | JoinedArg

/** Encodes `values` as consecutive RESP bulk strings, once, for every command that sends them in that order. */
export function encodeArgs(values: readonly (string | number)[]): EncodedArgs {
  return Object.freeze({ values: Object.freeze([...values]), resp: Buffer.from(values.map(bulk).join('')) })
}

/** Encodes `text` once, to start arguments joined to it. */
export function encodeStart(text: string): EncodedStart {
  return Object.freeze({ text, bytes: Buffer.from(text) })
}

/** The argument `start.text + rest`, written without joining them. */
export function joinArg(start: EncodedStart, rest: string): JoinedArg {
  return { start, rest }
}

const scriptCache = new Map<string, Script>()

/** Script `lua/<name>.lua` at the package root (the same relative path from src/ and dist/), read once. */
export function script(name: string): Script {
  let loaded = scriptCache.get(name)
  if (loaded === undefined) {
    const lua = readFileSync(new URL(`../../../lua/${name}.lua`, import.meta.url), 'utf8')
    const sha = createHash('sha1').update(lua).digest('hex')
    loaded = { name, lua, sha, sentOn: new WeakSet(), evalHead: Buffer.from(bulk('eval') + bulk(lua)), evalshaHead: Buffer.from(bulk('evalsha') + bulk(sha)) }
    scriptCache.set(name, loaded)
  }
  return loaded
}

/**
 * Runs `script` with its KEYS (the first `numberOfKeys` arguments) then its ARGV and resolves with what
 * `read(reply, context)` makes of its reply, read as it arrives (as ioredis parses it: Lua integers as numbers, Lua
 * strings as Buffers); as `.then(read)` would, without a second promise. A Redis that lost its script cache
 * (NOSCRIPT: restart, flush) gets it again. Any failure (Redis gone, timed out, an error reply) rejects with
 * StoreUnavailableError, so the store fails closed; so does what `read` throws (a StoreUnavailableError as it is).
 */
export function evalScript<T, C>(
  redis: RedisClient,
  script: Script,
  numberOfKeys: number,
  keysThenArgs: ScriptArg[],
  read: (reply: unknown, context: C) => T,
  context: C,
): Promise<T> {
  const command = new ScriptCommand(redis, script, numberOfKeys, keysThenArgs, true, read, context)
  redis.sendCommand(command)
  return command.promise as Promise<T>
}

/** Shared by every script command (ioredis's constructor makes an object per command when given none). */
const COMMAND_OPTIONS = {}

/**
 * EVALSHA of a script, sent as EVAL on a connection it was not sent on yet, as ioredis's defineCommand does
 * (so a call that times out on a frozen Redis still runs when it wakes). The RESP text is written from
 * `parts`; `args` (every argument, as ioredis reads them: a cluster's slot from the keys, an error reply,
 * tracing) is built from them when first read, so the command waits for its reply without a copy.
 * Its command timeout waits in a line of commands watched by one timer (command-deadlines.ts).
 */
class ScriptCommand<T, C> extends Command implements DeadlineCommand {
  deadlines: Deadlines | null = null
  deadline = 0
  nextInLine: DeadlineCommand | null = null
  done = false
  /** `args` once read (or as ioredis's constructor set it); null until then. */
  private flatArgs: (string | number)[] | null = null
  private readonly argCount: number
  /** Settle `promise`: set by ioredis's constructor (initPromise), before this class's fields exist. */
  declare private fulfil: (result: T) => void
  declare private fail: (err: Error) => void

  constructor(
    private readonly redis: RedisClient,
    private readonly script: Script,
    private readonly numberOfKeys: number,
    private readonly parts: ScriptArg[],
    /** Whether a NOSCRIPT reply may send it again (the first attempt only). */
    private readonly resendOnNoScript: boolean,
    private readonly read: (reply: unknown, context: C) => T,
    private readonly context: C,
  ) {
    super('evalsha', [], COMMAND_OPTIONS)
    let count = 2
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as ScriptArg
      count += typeof part === 'object' && 'values' in part ? part.values.length : 1
    }
    this.argCount = count
  }

  static {
    Object.defineProperties(ScriptCommand.prototype, {
      // ioredis declares `args` as a field: an accessor can only be put on the prototype. Its constructor sets
      // and reads it before this class's fields exist (flatArgs is then reset to null).
      args: {
        get(this: ScriptCommand<unknown, unknown>): (string | number)[] {
          return (this.flatArgs ??= this.allArgs())
        },
        set(this: ScriptCommand<unknown, unknown>, args: (string | number)[]) {
          this.flatArgs = args
        },
      },
      // ioredis's initPromise (private to it, hence here) gives every command closures that live as long as it
      // waits: resolve and reject wrappers around the promise's own functions, and its executor's context. Here
      // resolve and reject are methods, and the command keeps only the promise's functions. Writable:
      // a cluster wraps a command's reject in its own.
      initPromise: {
        value(this: ScriptCommand<unknown, unknown>): void {
          this.promise = new Promise((resolve, reject) => {
            this.fulfil = resolve
            this.fail = reject
          })
        },
      },
      resolve: {
        writable: true,
        value(this: ScriptCommand<unknown, unknown>, reply: Buffer | Buffer[]): void {
          try {
            this.fulfil(this.read(this.transformReply(reply), this.context))
            this.isResolved = true
          } catch (err) {
            this.reject(err as Error)
          }
        },
      },
      // Every way a command fails ends here (a cluster's wrapper passes its final error on).
      reject: {
        writable: true,
        value(this: ScriptCommand<unknown, unknown>, err: Error): void {
          // Failed without a reply (error reply, Redis gone): it waits for no deadline. One that timed out is done already.
          if (!this.done) Deadlines.done(this)
          if (this.resendOnNoScript && err.message.includes('NOSCRIPT')) {
            this.script.sentOn = new WeakSet()
            const again = new ScriptCommand(this.redis, this.script, this.numberOfKeys, this.parts, false, this.read, this.context)
            this.redis.sendCommand(again)
            again.promise.then(this.fulfil, this.fail)
            return
          }
          this.fail(err instanceof StoreUnavailableError ? err : new StoreUnavailableError(`budget store ${this.script.name} failed: ${err.message}`, { cause: err }))
        },
      },
    })
  }

  private allArgs(): (string | number)[] {
    const args = new Array<string | number>(this.argCount)
    args[0] = this.name === 'eval' ? this.script.lua : this.script.sha
    args[1] = this.numberOfKeys
    let at = 2
    for (let i = 0; i < this.parts.length; i++) {
      const part = this.parts[i] as ScriptArg
      if (typeof part !== 'object') args[at++] = part
      else if ('rest' in part) args[at++] = part.start.text + part.rest
      else for (let j = 0; j < part.values.length; j++) args[at++] = part.values[j] as string | number
    }
    return args
  }

  /** ioredis calls this with its commandTimeout as it sends the command (again on a resend: the first deadline holds). */
  override setTimeout(ms: number): void {
    Deadlines.watch(this, ms)
  }

  /** ioredis calls this with the reply, just before the command resolves with it: kept as parsed, no text made. */
  override transformReply(result: Buffer | Buffer[]): Buffer | Buffer[] {
    Deadlines.done(this)
    return result
  }

  /**
   * The whole command in one Buffer: its bytes live outside the JavaScript heap, which a scavenge does not
   * copy or scan (a string would be built from pieces, then flattened when written). It is written into a
   * scratch Buffer with room for the worst case, so no text is measured before it is written, then copied out
   * at its exact size.
   */
  override toWritable(socket: object): Buffer {
    if (!this.script.sentOn.has(socket)) {
      this.script.sentOn.add(socket)
      this.name = 'eval'
      if (this.flatArgs !== null) this.flatArgs[0] = this.script.lua
    }
    const count = argCount(this.argCount + 1)
    const head = this.name === 'eval' ? this.script.evalHead : this.script.evalshaHead
    const keys = keyCount(this.numberOfKeys)
    let room = count.length + head.length + keys.length
    for (let i = 0; i < this.parts.length; i++) {
      const part = this.parts[i] as ScriptArg
      if (typeof part !== 'object') room += BULK_HEAD_ROOM + (typeof part === 'string' ? UTF8_PER_UNIT * part.length : NUMBER_ROOM)
      else if ('rest' in part) room += BULK_HEAD_ROOM + part.start.bytes.length + UTF8_PER_UNIT * part.rest.length
      else room += part.resp.length
    }
    if (scratch.length < room) scratch = Buffer.allocUnsafeSlow(room)
    const out = scratch
    out.set(count, 0)
    out.set(head, count.length)
    out.set(keys, count.length + head.length)
    let at = count.length + head.length + keys.length
    for (let i = 0; i < this.parts.length; i++) {
      const part = this.parts[i] as ScriptArg
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
    const command = Buffer.allocUnsafe(at)
    out.copy(command, 0, 0, at)
    return command
  }
}

/** Where each command is written first; grows to the largest one written (an EVAL's script). */
let scratch = Buffer.allocUnsafeSlow(4096)
/** Room for `$<length>\r\n` and the closing `\r\n` of a bulk string (a length has at most 16 digits). */
const BULK_HEAD_ROOM = 21
/** UTF-8 bytes per UTF-16 code unit, at most. */
const UTF8_PER_UNIT = 3
/** Characters of a number's text, at most (`String(-Number.MAX_VALUE)`). */
const NUMBER_ROOM = 24

/** The RESP of argument counts (`*<n>`) and of a script's key counts, built once each. */
const argCounts: Buffer[] = []
const keyCounts: Buffer[] = []

function argCount(n: number): Buffer {
  return (argCounts[n] ??= Buffer.from(`*${n}\r\n`))
}

function keyCount(n: number): Buffer {
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
