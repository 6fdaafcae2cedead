import type { Command } from 'ioredis'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import type { RedisClient } from '../../src/budget/redis/redis-client.js'
import { evalScript, script } from '../../src/budget/redis/script-command.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

// A script command waits in a line watched by one timer until its deadline (src/budget/redis/command-deadlines.ts);
// one that is done must leave it then, not at its deadline: each waiting command holds ~1 KB.
describe('the line of command deadlines', () => {
  const abandon = script('abandon')

  /** A client that arms each command's timeout as ioredis does, then answers it or fails it at once (as ioredis does while Redis is gone). */
  function client(outcome: 'answered' | 'failed', sent: WeakRef<Command>[]): RedisClient {
    return {
      sendCommand(command: Command) {
        sent.push(new WeakRef(command))
        command.setTimeout(60_000)
        if (outcome === 'answered') command.resolve(Buffer.from('ok'))
        else command.reject(new Error("Stream isn't writeable and enableOfflineQueue options is false"))
      },
    } as unknown as RedisClient
  }

  it.each(['answered', 'failed'] as const)('a command %s is not kept until its deadline', async (outcome) => {
    const sent: WeakRef<Command>[] = []
    const redis = client(outcome, sent)
    for (let i = 0; i < 3; i++) await evalScript(redis, abandon, 1, ['lp:{ab}:r:request', 86_400], (reply) => reply, null).catch(() => undefined)
    await new Promise((r) => setTimeout(r, 0))
    gc()
    expect(sent).toHaveLength(3)
    expect(sent.filter((ref) => ref.deref() !== undefined)).toHaveLength(0)
  })
})
