import { Command } from 'ioredis'
import { describe, expect, it } from 'vitest'
import type { RedisClient } from '../../src/budget/redis/redis-client.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { encodeArgs, encodeStart, joinArg, type ScriptArg } from '../../src/budget/redis/script-args.js'
import { evalScript, script } from '../../src/budget/redis/script-command.js'

/** A client that records what each command writes on the socket it is given, then answers 'ok'. */
function recordingClient(socket: object): { client: RedisClient; written: string[]; commands: Command[] } {
  const written: string[] = []
  const commands: Command[] = []
  const client = {
    sendCommand(command: Command) {
      commands.push(command)
      written.push(String(command.toWritable(socket)))
      command.resolve(Buffer.from('ok'))
    },
  } as unknown as RedisClient
  return { client, written, commands }
}

/** What ioredis itself writes for the same command and arguments. */
function ioredisWrites(name: string, args: (string | number)[]): string {
  return String(new Command(name, args).toWritable({}))
}

/** Reads a reply as it was parsed. */
const asParsed = (reply: unknown): unknown => reply

const flat = (parts: ScriptArg[]): (string | number)[] =>
  parts.flatMap((p) => (typeof p !== 'object' ? [p] : 'rest' in p ? [p.start.text + p.rest] : [...p.values]))

describe('script commands', () => {
  const settle = script('settle')
  const parts: ScriptArg[] = [
    encodeArgs(['lp:{ab}:key', 'lp:{ab}:w:minute:2026-12-04T15:00', 'lp:{ab}:w:hourly:2026-12-04T15']),
    'lp:{ab}:r:request-é€😀',
    // One argument from an encoded start and a text: more digits in its UTF-8 length (13) than in its length in characters (9).
    joinArg(encodeStart('lp:{'), 'ab}€€'),
    '',
    0,
    1_234_567_890_123,
    encodeArgs([86_400, '', 'naïve']),
    'openai',
    // More digits in its UTF-8 length (12) than in its length in characters (4); the first number past 32 bits.
    '€€€€',
    2 ** 31,
  ]

  it('are written byte for byte as ioredis writes them: EVAL on a connection first, EVALSHA after', async () => {
    const socket = {}
    const { client, written, commands } = recordingClient(socket)
    await evalScript(client, settle, 10, parts, asParsed, null)
    await evalScript(client, settle, 10, parts, asParsed, null)
    expect(written[0]).toBe(ioredisWrites('eval', [settle.lua, 10, ...flat(parts)]))
    expect(written[1]).toBe(ioredisWrites('evalsha', [settle.sha, 10, ...flat(parts)]))
    // ioredis reads the arguments (a cluster's slot from the keys) from args.
    expect(commands[1]?.args).toEqual([settle.sha, 10, ...flat(parts)])
    expect(commands[1]?.getKeys()).toEqual(flat(parts).slice(0, 10))
  })

  it('resolve with the reply as parsed, and reject through a reject wrapped after they were made (as a cluster does)', async () => {
    const { client } = recordingClient({})
    await expect(evalScript(client, settle, 10, parts, asParsed, null)).resolves.toEqual(Buffer.from('ok'))
    const wrapping = {
      sendCommand(command: Command) {
        const reject = command.reject
        command.reject = (err: Error) => reject.call(command, new Error(`wrapped: ${err.message}`))
        command.reject(new Error('boom'))
      },
    } as unknown as RedisClient
    await expect(evalScript(wrapping, settle, 10, parts, asParsed, null)).rejects.toThrow('wrapped: boom')
  })

  it('resolve with what their reader makes of the reply; what it throws rejects, a store fault as it is', async () => {
    const { client } = recordingClient({})
    await expect(evalScript(client, settle, 10, parts, (reply, mark: string) => `${String(reply)}${mark}`, '!')).resolves.toBe('ok!')
    const fault = new StoreUnavailableError('unexpected reply')
    const throwing = (): never => {
      throw fault
    }
    await expect(evalScript(client, settle, 10, parts, throwing, null)).rejects.toBe(fault)
    const broken = (): never => {
      throw new TypeError('bug')
    }
    await expect(evalScript(client, settle, 10, parts, broken, null)).rejects.toThrow(StoreUnavailableError)
  })

  it('are sent in full again on another connection', async () => {
    const { client, written } = recordingClient({})
    await evalScript(client, settle, 10, parts, asParsed, null)
    expect(written[0]).toBe(ioredisWrites('eval', [settle.lua, 10, ...flat(parts)]))
  })
})
