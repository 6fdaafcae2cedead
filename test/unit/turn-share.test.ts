import type { IncomingMessage } from 'node:http'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { joinInSlices } from '../../src/http/json-members.js'
import { BIG_BODY_BYTES, readRawBody, sha256InSlices } from '../../src/http/raw-body.js'
import { spend, take, TURN_SHARE_BYTES } from '../../src/http/turn-share.js'
import { countLoopTurns } from '../support/event-loop-turns.js'

const MIB = 1024 * 1024

/** A request body stream that sends `body` as fast as it is read, in 64 KiB chunks, with its length declared. */
function payload(body: Buffer): IncomingMessage {
  const stream = new PassThrough({ highWaterMark: 64 * 1024 })
  Object.assign(stream, { headers: { 'content-length': String(body.length) } })
  void (async () => {
    for (let from = 0; from < body.length; from += 65_536) {
      if (!stream.write(body.subarray(from, from + 65_536))) await new Promise((resolve) => stream.once('drain', resolve))
    }
    stream.end()
  })()
  return stream as unknown as IncomingMessage
}

/** Turns `countLoopTurns` sees at least for `bytes` of work at `perTurn` a turn (the work begins in the current turn, uncounted). */
const turnsAtLeast = (bytes: number, perTurn: number): number => Math.floor(bytes / perTurn) - 1

describe('the turn share of big-body work', () => {
  it('eight big joins at once do no more per turn than the share: the work spreads over as many turns as its bytes need', async () => {
    const big = Buffer.alloc(2 * MIB, 'abcdefgh')
    const turns = countLoopTurns()
    const joined = await Promise.all(Array.from({ length: 8 }, (_, i) => joinInSlices([`${i}`, big])))
    const counted = turns()
    for (const [i, out] of joined.entries()) expect(out.equals(Buffer.concat([Buffer.from(`${i}`), big]))).toBe(true)
    // 16 MiB of copying, at most one share per turn. Each join slicing alone (the old rule) took ~17 turns.
    expect(counted).toBeGreaterThanOrEqual(turnsAtLeast(8 * big.length, TURN_SHARE_BYTES))
  })

  it('reads eight big bodies at once within the share, every byte in place', async () => {
    const bodies = Array.from({ length: 8 }, (_, i) => Buffer.alloc(BIG_BODY_BYTES + 4321, `body ${i} `))
    const turns = countLoopTurns()
    const read = await Promise.all(bodies.map((b) => readRawBody(payload(b), 1 << 30)))
    const counted = turns()
    for (const [i, body] of read.entries()) expect(body.equals(bodies[i]!)).toBe(true)
    const total = bodies.reduce((n, b) => n + b.length, 0)
    // A read may overshoot the share by one chunk before it pauses: at most one 64 KiB chunk per body per turn.
    expect(counted).toBeGreaterThanOrEqual(turnsAtLeast(total, TURN_SHARE_BYTES + 8 * 65_536))
  })

  it('serves those who wait in order of asking, and hashes within the share', async () => {
    spend(TURN_SHARE_BYTES) // this turn's share is gone
    const order: number[] = []
    await Promise.all([1, 2, 3].map((n) => take().then(() => order.push(n))))
    expect(order).toEqual([1, 2, 3])
    const body = Buffer.alloc(3 * MIB, 'xyz')
    const turns = countLoopTurns()
    const [a, b] = await Promise.all([sha256InSlices(body), sha256InSlices(body)])
    expect(turns()).toBeGreaterThanOrEqual(turnsAtLeast(2 * body.length, TURN_SHARE_BYTES))
    expect(a).toBe(b)
    expect(a).toBe((await import('node:crypto')).createHash('sha256').update(body).digest('hex'))
  })
})
