import { describe, expect, it } from 'vitest'
import { StringSlot, type ProbeCounter } from '../../src/stream/string-slot.js'

const shape = (content: string): string => `{"id":"c1","choices":[{"index":0,"delta":{"content":${content}},"finish_reason":null}]}`
const MARKER = '"content":"'

/** The string a probe puts in the slot of `text`: longer than `text`, so no other value of it can equal it. */
const probeOf = (text: string): string => 'x'.repeat(text.length + 1)

/** Reads a parsed chunk as a chat parser would: counts each choice's delta content; usage is reported. */
function readChat(parsed: unknown, counter: ProbeCounter): boolean {
  const chunk = parsed as { choices?: Array<{ index: number; delta: { content?: unknown } }>; usage?: unknown }
  for (const choice of chunk.choices ?? []) counter.add(choice.delta.content, choice.index)
  return chunk.usage === undefined
}

/** A slot that learned `shape`, its probe checked as a caller would: the probe's content is the probe value. */
function learned(): StringSlot {
  const slot = new StringSlot()
  const probe = slot.learn(shape('"Hello"'), MARKER)
  expect(probe).not.toBeNull()
  expect((JSON.parse(probe as string) as { choices: Array<{ delta: { content: string } }> }).choices[0]?.delta.content).toBe(probeOf(shape('"Hello"')))
  return slot
}

describe('string slot', () => {
  // Every token JSON.parse reads as a string gives the same string; anything else is left to JSON.parse.
  it.each([
    ['plain', '" tok"'],
    ['empty', '""'],
    ['multi-byte', '"👋 ça"'],
    ['escaped quote and backslash', '"say \\"hi\\" \\\\ bye"'],
    ['escaped line end and tab', '"a\\nb\\tc"'],
    ['unicode escapes, a surrogate pair', '"\\u00e9\\ud83d\\udc4b"'],
    ['an escaped slash', '"a\\/b"'],
    ['a backslash before the closing quote', '"a\\\\"'],
  ])('reads a %s string exactly as JSON.parse does', (_name, token) => {
    const expected = (JSON.parse(shape(token)) as { choices: Array<{ delta: { content: string } }> }).choices[0]?.delta.content
    expect(learned().read(shape(token))).toBe(expected)
  })

  it.each([
    ['another shape', '{"id":"c2","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}'],
    ['two tokens in the slot', shape('"a","b"')],
    ['a raw line end (JSON.parse refuses it)', shape('"a\nb"')],
    ['a raw control character', shape('"a\u0001"')],
    ['an unescaped quote', shape('"a"b"')],
    ['a bad escape', shape('"a\\qb"')],
    ['a number in the slot', shape('12')],
    ['null in the slot', shape('null')],
    ['a lone quote', shape('"')],
    ['an object in the slot', shape('{"a":"b"}')],
  ])('leaves %s to JSON.parse', (_name, text) => {
    expect(learned().read(text)).toBeUndefined()
  })

  it('reads nothing before it learned, or after it forgot', () => {
    const slot = new StringSlot()
    expect(slot.read(shape('"x"'))).toBeUndefined()
    const kept = learned()
    kept.forget()
    expect(kept.read(shape('"x"'))).toBeUndefined()
  })

  it('learns the token after the last marker, escapes inside it included', () => {
    const slot = new StringSlot()
    const text = '{"content":"first","delta":{"content":"a \\"quoted\\" \\\\"},"n":1}'
    const probe = slot.learn(text, MARKER) as string
    expect(JSON.parse(probe)).toEqual({ content: 'first', delta: { content: probeOf(text) }, n: 1 })
    expect(slot.read('{"content":"first","delta":{"content":"next"},"n":1}')).toBe('next')
  })

  it('learns nothing without the marker or with an unended token', () => {
    const slot = new StringSlot()
    expect(slot.learn('{"delta":{}}', MARKER)).toBeNull()
    expect(slot.learn('{"content":"abc', MARKER)).toBeNull()
  })

  it('learns nothing from an empty token (an opening chunk: the text after it comes in another shape)', () => {
    const slot = new StringSlot()
    expect(slot.learn(shape('""'), MARKER)).toBeNull()
    expect(slot.read(shape('"x"'))).toBeUndefined()
    expect(slot.learn(shape('"x"'), MARKER)).not.toBeNull()
  })

  it('stops learning after four shapes that never matched the next text', () => {
    const slot = new StringSlot()
    for (let i = 0; i < 4; i++) expect(slot.learn(shape(`"${i}"`), MARKER)).not.toBeNull()
    slot.forget()
    expect(slot.learn(shape('"x"'), MARKER)).toBeNull()
  })

  it('goes on learning while its shapes match', () => {
    const slot = new StringSlot()
    for (let i = 0; i < 10; i++) {
      expect(slot.learn(shape(`"${i}"`), MARKER)).not.toBeNull()
      expect(slot.read(shape('"y"'))).toBe('y')
    }
  })

  it('keeps a checked shape only when its full reading counts nothing but the slot, once, and reports nothing else', () => {
    const kept = new StringSlot()
    expect(kept.learnChecked('{"choices":[{"index":1,"delta":{"content":"a"}}]}', MARKER, readChat)).toBe(1)
    expect(kept.read('{"choices":[{"index":1,"delta":{"content":"b"}}]}')).toBe('b')
    const cases = [
      // The reading reports usage: this shape is always parsed.
      '{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"prompt_tokens":1}}',
      // The reading counts another string too (a second choice).
      '{"choices":[{"index":0,"delta":{"content":"z"}},{"index":1,"delta":{"content":"a"}}]}',
      // A duplicate key after the slot: the reading keeps the last `choices`, so the slot is not what it counts.
      '{"choices":[{"index":0,"delta":{"content":"a"}}],"choices":[]}',
    ]
    for (const text of cases) {
      const slot = new StringSlot()
      expect(slot.learnChecked(text, MARKER, readChat)).toBeNull()
      expect(slot.read(text)).toBeUndefined()
    }
    // A reading that throws keeps nothing either.
    const thrown = new StringSlot()
    const text = shape('"a"')
    expect(thrown.learnChecked(text, MARKER, () => { throw new TypeError('unexpected') })).toBeNull()
    expect(thrown.read(text)).toBeUndefined()
  })
})
