import type { Command } from 'ioredis'
import { describe, expect, it } from 'vitest'
import type { RedisClient } from '../../src/budget/redis/redis-client.js'
import { encodeArgs } from '../../src/budget/redis/script-args.js'
import { evalScript, script } from '../../src/budget/redis/script-command.js'

// A script command builds `args` only when ioredis reads them; what it reads must be what is sent.
describe('script command arguments as ioredis reads them', () => {
  const abandon = script('abandon')
  const run = encodeArgs(['lp:{ab}:r:request', 86_400])

  /** A client that writes each command and records its `args` after, also reading them before when asked (a cluster reads the slot first). */
  function client(readFirst: boolean, seen: unknown[][]): RedisClient {
    const socket = {}
    return {
      sendCommand(command: Command) {
        if (readFirst) expect(command.getKeys()).toEqual(['lp:{ab}:r:request'])
        command.toWritable(socket)
        seen.push([...command.args])
        command.resolve(Buffer.from('ok'))
      },
    } as unknown as RedisClient
  }

  it.each([true, false])('read before the write too: %s. The script itself on a connection first (EVAL), then its SHA1', async (readFirst) => {
    const seen: unknown[][] = []
    const redis = client(readFirst, seen)
    await evalScript(redis, abandon, 1, [run, 'x'], (reply) => reply, null)
    await evalScript(redis, abandon, 1, [run, 'x'], (reply) => reply, null)
    const rest = [1, 'lp:{ab}:r:request', 86_400, 'x']
    expect(seen[0]).toEqual([abandon.lua, ...rest])
    expect(seen[1]).toEqual([abandon.sha, ...rest])
  })
})
