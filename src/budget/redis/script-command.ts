/**
 * Sending the budget Lua scripts: one EVALSHA command per call (EVAL on a connection's first use, again
 * after NOSCRIPT), its RESP text written here from arguments of which the repeating runs (a key's keys of
 * one minute, constants) were encoded once.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Command } from 'ioredis'
import { Deadlines, type DeadlineCommand } from './command-deadlines.js'
import type { RedisClient } from './redis-client.js'

export interface Script {
  lua: string
  sha: string
  /** Connections this script was sent on in full (EVAL); Redis keeps it cached there for EVALSHA. */
  sentOn: WeakSet<object>
  /** The RESP of the command name and the script (or its SHA1): what follows the argument count. */
  evalHead: string
  evalshaHead: string
}

/** Arguments encoded once as RESP bulk strings, to be sent by many commands; `values` are what they encode. */
export interface EncodedArgs {
  readonly values: readonly (string | number)[]
  readonly resp: string
}

/** One script argument, or a run of them encoded beforehand. */
export type ScriptArg = string | number | EncodedArgs

/** Encodes `values` as consecutive RESP bulk strings, once, for every command that sends them in that order. */
export function encodeArgs(values: readonly (string | number)[]): EncodedArgs {
  return Object.freeze({ values: Object.freeze([...values]), resp: values.map(bulk).join('') })
}

const scriptCache = new Map<string, Script>()

/** Script `lua/<name>.lua` at the package root (the same relative path from src/ and dist/), read once. */
export function script(name: string): Script {
  let loaded = scriptCache.get(name)
  if (loaded === undefined) {
    const lua = readFileSync(new URL(`../../../lua/${name}.lua`, import.meta.url), 'utf8')
    const sha = createHash('sha1').update(lua).digest('hex')
    loaded = { lua, sha, sentOn: new WeakSet(), evalHead: `${bulk('eval')}${bulk(lua)}`, evalshaHead: `${bulk('evalsha')}${bulk(sha)}` }
    scriptCache.set(name, loaded)
  }
  return loaded
}

/**
 * Runs `script` with its KEYS (the first `numberOfKeys` arguments) then its ARGV; a Redis that lost its script
 * cache (NOSCRIPT: restart, flush) gets it again.
 */
export async function evalScript(redis: RedisClient, script: Script, numberOfKeys: number, keysThenArgs: ScriptArg[]): Promise<unknown> {
  for (let attempt = 1; ; attempt++) {
    const command = new ScriptCommand(script, numberOfKeys, keysThenArgs)
    redis.sendCommand(command)
    try {
      return await command.promise
    } catch (err) {
      // Failed without a reply (error reply, Redis gone, timed out): it waits for no deadline.
      Deadlines.done(command)
      if (attempt > 1 || !(err instanceof Error && err.message.includes('NOSCRIPT'))) throw err
      script.sentOn = new WeakSet()
    }
  }
}

const REPLY_AS_TEXT = { replyEncoding: 'utf8' } as const

/**
 * EVALSHA of a script, sent as EVAL on a connection it was not sent on yet, as ioredis's defineCommand does
 * (so a call that times out on a frozen Redis still runs when it wakes). The RESP text is written from
 * `parts`; `args` (every argument, as ioredis reads them: a cluster's slot from the keys, an error reply,
 * tracing) is built from them when first read, so the command waits for its reply without a copy.
 * Its command timeout waits in a line of commands watched by one timer (command-deadlines.ts).
 */
class ScriptCommand extends Command implements DeadlineCommand {
  deadlines: Deadlines | null = null
  deadline = 0
  nextInLine: DeadlineCommand | null = null
  done = false
  /** `args` once read (or as ioredis's constructor set it); null until then. */
  private flatArgs: (string | number)[] | null = null
  private readonly argCount: number

  constructor(
    private readonly script: Script,
    private readonly numberOfKeys: number,
    private readonly parts: ScriptArg[],
  ) {
    super('evalsha', [], REPLY_AS_TEXT)
    let count = 2
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as ScriptArg
      count += typeof part === 'object' ? part.values.length : 1
    }
    this.argCount = count
  }

  static {
    // ioredis declares `args` as a field: an accessor can only be put on the prototype. Its constructor sets
    // and reads it before this class's fields exist (flatArgs is then reset to null).
    Object.defineProperty(ScriptCommand.prototype, 'args', {
      get(this: ScriptCommand): (string | number)[] {
        return (this.flatArgs ??= this.allArgs())
      },
      set(this: ScriptCommand, args: (string | number)[]) {
        this.flatArgs = args
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
      else for (let j = 0; j < part.values.length; j++) args[at++] = part.values[j] as string | number
    }
    return args
  }

  /** ioredis calls this with its commandTimeout as it sends the command (again on a resend: the first deadline holds). */
  override setTimeout(ms: number): void {
    Deadlines.watch(this, ms)
  }

  /** ioredis calls this with the reply, just before the command resolves. */
  override transformReply(result: Buffer | Buffer[]): string | string[] | Buffer | Buffer[] {
    Deadlines.done(this)
    return super.transformReply(result)
  }

  override toWritable(socket: object): string {
    if (!this.script.sentOn.has(socket)) {
      this.script.sentOn.add(socket)
      this.name = 'eval'
      if (this.flatArgs !== null) this.flatArgs[0] = this.script.lua
    }
    let resp = `*${this.argCount + 1}\r\n${this.name === 'eval' ? this.script.evalHead : this.script.evalshaHead}${keyCount(this.numberOfKeys)}`
    for (let i = 0; i < this.parts.length; i++) {
      const part = this.parts[i] as ScriptArg
      resp += typeof part === 'object' ? part.resp : bulk(part)
    }
    return resp
  }
}

/** The RESP of a script's key counts, built once each. */
const keyCounts: string[] = []

function keyCount(n: number): string {
  return (keyCounts[n] ??= bulk(n))
}

/** One RESP bulk string; its length counts UTF-8 bytes. */
function bulk(value: string | number): string {
  const text = typeof value === 'string' ? value : String(value)
  return `$${typeof value === 'string' ? Buffer.byteLength(text) : text.length}\r\n${text}\r\n`
}
