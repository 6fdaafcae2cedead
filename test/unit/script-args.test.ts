import { Command } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { argList, encodeArgs, encodeStart, joinArg, respOf, writeCommand, type ScriptArg } from '../../src/budget/redis/script-args.js'

/** What ioredis itself writes for the same command and arguments. */
function ioredisWrites(name: string, args: (string | number)[]): string {
  return String(new Command(name, args).toWritable({}))
}

describe('writeCommand', () => {
  it('leaves every command it returned as written while many more are written after it, past any slab (an EVAL larger than one too)', () => {
    const big = 'x'.repeat(100_000)
    const kept: Array<{ bytes: Buffer; expected: string }> = []
    for (let i = 0; i < 2_000; i++) {
      // Commands of varied sizes, some with multi-byte text, one far larger than a slab now and then.
      const text = i % 7 === 0 ? `request-é€😀-${i}` : `request-${i}`
      const parts: ScriptArg[] = [encodeArgs([`lp:{${i}}:key`, 86_400]), joinArg(encodeStart('lp:{ab}:r:'), text), i, 'y'.repeat(i % 300)]
      const name = i % 500 === 250 ? 'eval' : 'evalsha'
      const first = name === 'eval' ? big : 'sha'
      const bytes = writeCommand(8, respOf([name, first]), 2, parts)
      kept.push({ bytes, expected: ioredisWrites(name, [first, 2, `lp:{${i}}:key`, 86_400, `lp:{ab}:r:${text}`, i, 'y'.repeat(i % 300)]) })
    }
    for (const { bytes, expected } of kept) expect(bytes.toString()).toBe(expected)
  })
})

describe('argList', () => {
  it.each([0, 1, 10, 452, 512, 513, 2_000])('gives a new list of %i empty slots each call, whatever an earlier one was given', (length) => {
    const first = argList(length)
    expect(first).toHaveLength(length)
    first.fill('written')
    first.push('pushed')
    const second = argList(length)
    expect(second).not.toBe(first)
    expect(second).toHaveLength(length)
    for (let i = 0; i < length; i++) expect(second[i]).toBeUndefined()
    expect(argList(length + 1)[length]).toBeUndefined()
  })
})
