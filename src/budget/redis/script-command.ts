/**
 * Sending the budget Lua scripts: one EVALSHA command per call (EVAL on a connection's first use, again
 * after NOSCRIPT), its RESP written into one Buffer from arguments of which the repeating runs (a key's keys
 * of one minute, constants) were encoded once (script-args.ts).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Command } from 'ioredis'
import { StoreUnavailableError } from '../../errors.js'
import { keepCommand } from '../../proxy/keep-shapes.js'
import type { StoreCallObserver } from '../types.js'
import { Deadlines, type DeadlineCommand } from './command-deadlines.js'
import type { RedisClient } from './redis-client.js'
import { argList, countArgs, putArgValues, respOf, writeCommand, type ScriptArg } from './script-args.js'

interface Script {
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

const scriptCache = new Map<string, Script>()

/** Script `lua/<name>.lua` at the package root (the same relative path from src/ and dist/), read once. */
export function script(name: string): Script {
  let loaded = scriptCache.get(name)
  if (loaded === undefined) {
    const lua = readFileSync(new URL(`../../../lua/${name}.lua`, import.meta.url), 'utf8')
    const sha = createHash('sha1').update(lua).digest('hex')
    loaded = { name, lua, sha, sentOn: new WeakSet(), evalHead: respOf(['eval', lua]), evalshaHead: respOf(['evalsha', sha]) }
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
 * `observer` (with the call's start, performance.now()) hears of its end, success or failure, once, under the script's name
 * (unless `read` answers with a promise: a call sent again, which tells the observer itself);
 * so does `ended`, with `context`, before any reaction to the promise runs.
 */
export function evalScript<T, C>(
  redis: RedisClient,
  script: Script,
  numberOfKeys: number,
  keysThenArgs: ScriptArg[],
  read: (reply: unknown, context: C) => T,
  context: C,
  observer: StoreCallObserver | null = null,
  startedMs = 0,
  ended: ((context: C) => void) | null = null,
): Promise<T> {
  const command = new ScriptCommand(redis, script, numberOfKeys, keysThenArgs, true, read, context, observer, startedMs, ended)
  redis.sendCommand(command)
  return command.promise as Promise<T>
}

/** An observed call's op is its script's name (only reserve, extend and settle calls are given an observer). */
type ObservedOp = Parameters<StoreCallObserver>[0]

/** Shared by every script command (ioredis's constructor makes an object per command when given none). */
const COMMAND_OPTIONS = {}
/**
 * The arguments handed to ioredis's constructor, which sets `args` to their `flat()` (a runtime call and a new
 * array per command); a script command builds its own (`allArgs`), so it is given this list, whose flat() is itself.
 */
const NO_ARGS: (string | number)[] = Object.defineProperty([], 'flat', { value: () => NO_ARGS })

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
    /** Told of the call's end once, then dropped (a reply after a timeout is not a second end). */
    private observer: StoreCallObserver | null,
    private readonly startedMs: number,
    /** Told of the call's end once, with its context, then dropped. */
    private onEnd: ((context: C) => void) | null,
  ) {
    super('evalsha', NO_ARGS, COMMAND_OPTIONS)
    this.argCount = 2 + countArgs(parts)
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
            const value = this.read(this.transformReply(reply), this.context)
            this.fulfil(value)
            this.isResolved = true
            // A reply read as another call's promise (a reserve sent again, store.ts): that call tells the observer.
            if (value instanceof Promise) this.observer = null
            this.ended(false)
            keepCommand(this)
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
            // The call goes on as `again`, which tells the observer of its end.
            const again = new ScriptCommand(this.redis, this.script, this.numberOfKeys, this.parts, false, this.read, this.context, this.observer, this.startedMs, this.onEnd)
            this.redis.sendCommand(again)
            again.promise.then(this.fulfil, this.fail)
            return
          }
          if (err instanceof StoreUnavailableError) this.fail(err)
          else this.fail(new StoreUnavailableError(`budget store ${this.script.name} failed: ${err.message}`, { cause: err }))
          this.ended(true)
        },
      },
    })
  }

  /**
   * A command of the same hidden class that was never sent and holds none of this one's data (keys, arguments, reply
   * context, observer): what the idle release keeps (../../proxy/keep-shapes.ts). Its promise never settles.
   */
  blankCopy(): ScriptCommand<T, C> {
    return new ScriptCommand(this.redis, this.script, 0, argList(0), true, this.read, null as C, null, 0, null)
  }

  private ended(failed: boolean): void {
    const onEnd = this.onEnd
    if (onEnd !== null) {
      this.onEnd = null
      onEnd(this.context)
    }
    const observer = this.observer
    if (observer === null) return
    this.observer = null
    observer(this.script.name as ObservedOp, this.startedMs, failed)
  }

  private allArgs(): (string | number)[] {
    const args = new Array<string | number>(this.argCount)
    args[0] = this.name === 'eval' ? this.script.lua : this.script.sha
    args[1] = this.numberOfKeys
    putArgValues(this.parts, args, 2)
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
   * copy or scan (a string would be built from pieces, then flattened when written).
   */
  override toWritable(socket: object): Buffer {
    if (!this.script.sentOn.has(socket)) {
      this.script.sentOn.add(socket)
      this.name = 'eval'
      if (this.flatArgs !== null) this.flatArgs[0] = this.script.lua
    }
    const head = this.name === 'eval' ? this.script.evalHead : this.script.evalshaHead
    return writeCommand(this.argCount + 1, head, this.numberOfKeys, this.parts)
  }
}
