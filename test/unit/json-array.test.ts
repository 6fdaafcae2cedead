import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { createJsonArrayFramer, type JsonArrayState } from '../../src/stream/json-array.js'

const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/gemini/${name}`, import.meta.url))

interface Run {
  out: Buffer
  frames: Buffer[]
  elements: string[]
  opaque: number
}

/** Feeds `pieces` in order, then flushes; records every non-empty returned frame batch. */
function run(pieces: Buffer[]): Run {
  const elements: string[] = []
  let opaque = 0
  const framer = createJsonArrayFramer(
    (text) => elements.push(text),
    (bytes) => (opaque += bytes.length),
  )
  const frames: Buffer[] = []
  for (const piece of pieces) {
    const ready = framer.push(piece)
    if (ready.length > 0) frames.push(ready)
  }
  const rest = framer.flush()
  if (rest.length > 0) frames.push(rest)
  return { out: Buffer.concat(frames), frames, elements, opaque }
}

const splitAt = (bytes: Buffer, at: number): Buffer[] => [bytes.subarray(0, at), bytes.subarray(at)]

describe('JSON array framer', () => {
  const stream = fixture('stream-array.json')
  const expected = (JSON.parse(stream.toString('utf8')) as unknown[]).map((e) => JSON.stringify(e))

  it('returns the bytes unchanged and every element, split at every byte boundary', () => {
    for (let at = 0; at <= stream.length; at++) {
      const result = run(splitAt(stream, at))
      expect(result.out.equals(stream), `split at ${at}`).toBe(true)
      expect(result.elements.map((e) => JSON.stringify(JSON.parse(e))), `split at ${at}`).toEqual(expected)
    }
  })

  it('ends every returned batch after a whole element or the closing bracket, even fed byte by byte', () => {
    const bytes = [...stream].map((b) => Buffer.from([b]))
    const result = run(bytes)
    expect(result.out.equals(stream)).toBe(true)
    expect(result.frames).toHaveLength(4)
    for (const frame of result.frames.slice(0, 3)) expect(frame.toString('utf8').trimEnd().endsWith('}')).toBe(true)
    expect(result.frames[3]?.toString('utf8')).toBe('\n]')
    // The separators travel with the element after them.
    expect(result.frames[1]?.subarray(0, 4).toString('utf8')).toBe('\n,\r\n')
  })

  it.each([
    ['scalars and nested values', '[1, "two", true ,null,{"a":[1,{"b":"]"}]},-2.5e3]', ['1', '"two"', 'true', 'null', '{"a":[1,{"b":"]"}]}', '-2.5e3']],
    ['escaped quotes and backslashes in strings', '["a]","b\\"]","c\\\\",{"d":"\\\\\\"}"}]', ['"a]"', '"b\\"]"', '"c\\\\"', '{"d":"\\\\\\"}"}']],
    ['an empty array with whitespace around it', ' \r\n[ \t]\n', []],
    ['a scalar the end of the body terminates', '[7, 12', ['7', '12']],
  ])('%s', (_name, text, elements) => {
    const bytes = Buffer.from(text)
    for (let at = 0; at <= bytes.length; at++) {
      const result = run(splitAt(bytes, at))
      expect(result.out.toString('utf8')).toBe(text)
      expect(result.elements).toEqual(elements)
    }
  })

  it('reports where a reader stands after each forwarded prefix', () => {
    const states: Array<[number, JsonArrayState]> = []
    const framer = createJsonArrayFramer(() => undefined)
    let forwarded = 0
    states.push([forwarded, framer.stateAt(forwarded)])
    for (const piece of ['  [', '{"a":1}', '\n,\r\n{"b"', ':2}', '\n]', '\n']) {
      forwarded += framer.push(Buffer.from(piece)).length
      states.push([forwarded, framer.stateAt(forwarded)])
    }
    expect(states.map(([, s]) => s)).toEqual(['before', 'before', 'element', 'element', 'element', 'closed', 'closed'])
    // A prefix that stops before the first element ends is still before it.
    expect(framer.stateAt(3)).toBe('open')
    expect(framer.stateAt(2)).toBe('before')
  })

  it('passes a body that is not an array through at once, as opaque bytes', () => {
    const body = Buffer.from('{"error": {"code": 500}}\n')
    const framer = createJsonArrayFramer(() => {
      throw new Error('no element expected')
    })
    let opaque = 0
    const opaqueFramer = createJsonArrayFramer(
      () => undefined,
      (bytes) => (opaque += bytes.length),
    )
    expect(framer.push(body.subarray(0, 5)).toString()).toBe('{"err')
    expect(framer.stateAt(5)).toBe('opaque')
    expect(opaqueFramer.push(body).equals(body)).toBe(true)
    expect(opaque).toBe(body.length)
  })
})
