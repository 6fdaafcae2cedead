import { createParser } from 'eventsource-parser'
import { describe, expect, it } from 'vitest'
import { createSseFramer, parseSseEvents } from '../../src/stream/sse.js'

type Seen = Array<[string, string | undefined]>

function parse(text: string): Seen {
  const seen: Seen = []
  parseSseEvents(text, (data, type) => seen.push([data, type]))
  return seen
}

describe('SSE event parsing', () => {
  it.each<[string, string, Seen]>([
    ['one data line', 'data: {"a":1}\n\n', [['{"a":1}', undefined]]],
    ['no space after the colon', 'data:x\n\n', [['x', undefined]]],
    ['only one leading space is dropped', 'data:  x \n\n', [[' x ', undefined]]],
    ['data lines joined by LF', 'data: a\ndata: b\ndata\n\n', [['a\nb\n', undefined]]],
    ['an empty data field still dispatches', 'data:\n\n', [['', undefined]]],
    ['event type', 'event: message_start\ndata: {}\n\n', [['{}', 'message_start']]],
    ['an empty event type is none', 'event:\ndata: x\nevent\n\n', [['x', undefined]]],
    ['no data field: nothing dispatched', 'event: ping\nid: 7\nretry: 10\n\n', []],
    ['comments and unknown fields ignored', ': keep-alive\nfoo: bar\ndata: x\ndatum: y\nDATA: z\n\n', [['x', undefined]]],
    ['a colon inside the value', 'data: a: b\n\n', [['a: b', undefined]]],
    ['CRLF line ends', 'data: a\r\ndata: b\r\n\r\n', [['a\nb', undefined]]],
    ['CR line ends', 'event: e\rdata: a\r\r', [['a', 'e']]],
    ['mixed line ends and several events', 'data: a\r\n\ndata: b\r\rdata: c\n\r\n', [['a', undefined], ['b', undefined], ['c', undefined]]],
    ['a lone LF after an event is an empty line', '\ndata: a\n\n', [['a', undefined]]],
    ['each event starts afresh', 'event: e\ndata: a\n\ndata: b\n\n', [['a', 'e'], ['b', undefined]]],
    ['text after the last line end is not a line', 'data: a\n\ndata: b', [['a', undefined]]],
    ['multi-byte text kept whole', 'data: 👋 ça\n\n', [['👋 ça', undefined]]],
  ])('%s', (_name, text, expected) => {
    expect(parse(text)).toEqual(expected)
  })

  // The reference reader (eventsource-parser, the WHATWG rules) fed the same text: the same events come out.
  it('reads random streams as the reference reader does', () => {
    const pieces = ['data', 'data:', 'data: ', 'event', 'event:', 'event: ', 'id: 1', 'retry: 5', ':', ' ', 'x', 'é', '{"a":1}', '\n', '\r', '\r\n', '\n\n', 'foo:']
    let seed = 12
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    }
    for (let round = 0; round < 2000; round++) {
      let text = ''
      for (let i = random(30); i > 0; i--) text += pieces[random(pieces.length)]
      text += '\n\n'
      const expected: Seen = []
      const reference = createParser({ onEvent: (event) => expected.push([event.data, event.event]) })
      // The reference waits for the byte after a final CR (it may be half of a CRLF); an extra LF ends that line.
      reference.feed(`${text}\n`)
      expect(parse(`${text}\n`), JSON.stringify(text)).toEqual(expected)
    }
  })

  // A read that is exactly one event is decoded and parsed whole; every other read is scanned byte by byte.
  it.each<[string, string[]]>([
    ['one event a read', ['data: a\n\n', 'event: e\ndata: b\n\n', 'data: é\n\n']],
    ['several events in one read', ['data: a\n\ndata: b\n\n', 'data: c\n\n']],
    ['a read starting with a blank line', ['data: a\n\n', '\ndata: b\n\n']],
    ['CR line ends', ['data: a\r\n\r\n', 'data: b\r\r', '\ndata: c\n\n', 'data: d\n\r\n']],
    ['a byte order mark at the start only', ['\ufeffdata: a\n\n', '\ufeffdata: b\n\n']],
    ['an event across reads, then one a read', ['data: a', '\n\n', 'data: b\n', '\n', 'data: c\n\n']],
    ['a comment-only event', [': ping\n\n', 'data: a\n\n']],
  ])('%s: the same frames and events as reading byte by byte', (_name, reads) => {
    const run = (chunks: Buffer[]): { frames: string[]; seen: Seen } => {
      const seen: Seen = []
      const framer = createSseFramer((data, type) => seen.push([data, type]))
      const frames = chunks.flatMap((chunk) => [...framer.frames(chunk)].map(String))
      frames.push(framer.flush().toString())
      return { frames, seen }
    }
    const bytes = Buffer.from(reads.join(''))
    const whole = run(reads.map((read) => Buffer.from(read)))
    const byByte = run([...bytes].map((byte) => Buffer.from([byte])))
    expect(whole.seen).toEqual(byByte.seen)
    expect(whole.frames.join('')).toBe(bytes.toString())
    expect(byByte.frames.join('')).toBe(bytes.toString())
  })

  it('a read that is one whole event is its own frame, parsed as it is yielded', () => {
    const seen: Seen = []
    const framer = createSseFramer((data, type) => seen.push([data, type]))
    const read = Buffer.from('event: e\ndata: {"a":"é"}\n\n')
    const frames = framer.frames(read)
    const first = frames.next()
    expect(first.value).toBe(read)
    expect(seen).toEqual([['{"a":"é"}', 'e']])
    expect(frames.next().done).toBe(true)
  })

  it('a framer hands each whole event to the parser once, at every split of the stream', () => {
    const stream = Buffer.from('event: a\r\ndata: 1\r\n\r\n: ping\n\ndata: 2\rdata: 3\r\rdata: é\n\ndata: tail')
    for (let split = 0; split <= stream.length; split++) {
      const seen: Seen = []
      const framer = createSseFramer((data, type) => seen.push([data, type]))
      const out = [framer.push(stream.subarray(0, split)), framer.push(stream.subarray(split)), framer.flush()]
      expect(Buffer.concat(out)).toEqual(stream)
      expect(seen).toEqual([['1', 'a'], ['2\n3', undefined], ['é', undefined], ['tail', undefined]])
    }
  })
})
