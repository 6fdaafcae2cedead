import { describe, expect, it } from 'vitest'
import { spliceMembers, topLevelMembers, type MemberEdit } from '../../src/http/json-members.js'
import { countLoopTurns } from '../support/event-loop-turns.js'

// Big bodies are forwarded as the bytes the meter read, with only the edited top-level members replaced.

const text = (raw: Buffer, start: number, end: number) => raw.toString('utf8', start, end)

describe('top-level members', () => {
  it('finds each key and the exact bytes of its value, whatever the spacing, escapes and nesting', () => {
    const raw = Buffer.from(' { "model" : "gpt-4o",\n"m\\u0065ssages":[{"role":"user","content":"a}\\"]{"}] ,"n":2, "s":{"x":[1,{"y":"}"}]},"t":true,"z":null } ')
    const members = topLevelMembers(raw)
    expect(members.map((m) => m.key)).toEqual(['model', 'messages', 'n', 's', 't', 'z'])
    expect(members.map((m) => text(raw, m.valueStart, m.valueEnd))).toEqual(['"gpt-4o"', '[{"role":"user","content":"a}\\"]{"}]', '2', '{"x":[1,{"y":"}"}]}', 'true', 'null'])
    expect(members.map((m) => text(raw, m.keyStart, m.keyStart + 1))).toEqual(['"', '"', '"', '"', '"', '"'])
  })

  it('refuses what is not an object', () => {
    expect(() => topLevelMembers(Buffer.from('[1,2]'))).toThrow(SyntaxError)
    expect(topLevelMembers(Buffer.from('{}'))).toEqual([])
  })
})

describe('member splice', () => {
  const raw = Buffer.from('{"model":"m", "stream":true,\n "messages":[{"role":"user","content":"hi, \\"there\\""}],"max_tokens":900}')
  const members = topLevelMembers(raw)
  const splice = async (edits: MemberEdit[]) => (await spliceMembers(raw, members, edits)).toString('utf8')

  it.each([
    ['replace a value', [{ key: 'max_tokens', json: '16' }], { max_tokens: 16 }, []],
    ['add a member', [{ key: 'stream_options', json: '{"include_usage":true}' }], { stream_options: { include_usage: true } }, []],
    ['remove the first member', [{ key: 'model', json: null }], {}, ['model']],
    ['remove a middle member', [{ key: 'stream', json: null }], {}, ['stream']],
    ['remove the last member', [{ key: 'max_tokens', json: null }], {}, ['max_tokens']],
    ['remove the last two and add one', [{ key: 'messages', json: null }, { key: 'max_tokens', json: null }, { key: 'a', json: '1' }], { a: 1 }, ['messages', 'max_tokens']],
    ['remove all and add one', [...members.map((m): MemberEdit => ({ key: m.key, json: null })), { key: 'a', json: '[]' }], { a: [] }, ['model', 'stream', 'messages', 'max_tokens']],
  ])('%s: valid JSON with the edits applied and nothing else changed', async (_name, edits, set, removed) => {
    const out = await splice(edits)
    const expected: Record<string, unknown> = { ...(JSON.parse(raw.toString('utf8')) as Record<string, unknown>), ...set }
    for (const key of removed) delete expected[key]
    expect(JSON.parse(out)).toEqual(expected)
  })

  it('keeps every byte of the members it does not edit, the separators between them included', async () => {
    const out = await splice([{ key: 'max_tokens', json: '16' }, { key: 'stream_options', json: '{"include_usage":true}' }])
    expect(out).toBe('{"model":"m", "stream":true,\n "messages":[{"role":"user","content":"hi, \\"there\\""}],"max_tokens":16,"stream_options":{"include_usage":true}}')
    expect(await splice([])).toBe(raw.toString('utf8'))
  })

  it('copies a 10 MiB body in slices that leave the event loop free', async () => {
    const big = Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(10 * 1024 * 1024) }], max_tokens: 900 }))
    const stopCounting = countLoopTurns()
    const out = await spliceMembers(big, topLevelMembers(big), [{ key: 'max_tokens', json: '16' }])
    const ticks = stopCounting()
    expect(out.length).toBe(big.length - 1)
    expect(out.subarray(0, 100).equals(big.subarray(0, 100))).toBe(true)
    // At least one turn of the event loop per 128 KiB copied.
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(big.length / (1 << 17)) - 1)
  })
})
