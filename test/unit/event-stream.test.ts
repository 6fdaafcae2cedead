import { readFileSync } from 'node:fs'
import { EventStreamCodec } from '@smithy/core/event-streams'
import { describe, expect, it } from 'vitest'
import {
  crc32,
  createEventStreamFramer,
  encodeEventStreamMessage,
  type EventStreamMessage,
} from '../../src/stream/event-stream.js'
import { fixtureFrames, type FixtureEvent } from '../support/fake-bedrock.js'

function fixture(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/bedrock/${name}`, import.meta.url))
}

/** Feeds `parts` to a fresh framer; returns the messages, the bytes it released, and its corruption count. */
function frame(parts: Buffer[]): { messages: EventStreamMessage[]; out: Buffer; corrupt: number } {
  const messages: EventStreamMessage[] = []
  const framer = createEventStreamFramer((m) => messages.push(m))
  const out: Buffer[] = []
  for (const part of parts) out.push(framer.push(part))
  out.push(framer.flush())
  return { messages, out: Buffer.concat(out), corrupt: framer.corruptBytes() }
}

/** A cheap comparable form of decoded messages (deep-comparing Buffers is slow at thousands of splits). */
function summary(messages: EventStreamMessage[]): string {
  return JSON.stringify(messages.map((m) => [m.headers, m.payload.toString('base64')]), (_key, value: unknown) =>
    typeof value === 'bigint' ? `${value}n` : value,
  )
}

const smithy = new EventStreamCodec(
  (bytes) => Buffer.from(bytes).toString('utf8'),
  (text) => new Uint8Array(Buffer.from(text, 'utf8')),
)

/** Splits `bytes` into messages by their length prefix and decodes each with the AWS SDK's own codec. */
function smithyDecode(bytes: Buffer): Array<{ headers: Record<string, unknown>; payload: string }> {
  const out: Array<{ headers: Record<string, unknown>; payload: string }> = []
  for (let at = 0; at < bytes.length; ) {
    const length = bytes.readUInt32BE(at)
    const message = smithy.decode(new Uint8Array(bytes.subarray(at, at + length)))
    const headers: Record<string, unknown> = {}
    for (const [name, header] of Object.entries(message.headers)) headers[name] = header.value
    out.push({ headers, payload: Buffer.from(message.body).toString('utf8') })
    at += length
  }
  return out
}

// The AWS event-stream test suite (aws-c-event-stream, also smithy-typescript's TestVectors.fixture.ts).
const FOO_BAR = Buffer.from("{'foo':'bar'}")

describe('AWS event-stream test vectors', () => {
  it.each([
    ['vector-empty-message.bin', {}, Buffer.alloc(0)],
    ['vector-payload-no-headers.bin', {}, FOO_BAR],
    ['vector-payload-one-str-header.bin', { 'content-type': 'application/json' }, FOO_BAR],
    ['vector-int32-header.bin', { 'event-type': 40972 }, FOO_BAR],
    [
      'vector-all-headers.bin',
      {
        'event-type': 40972,
        'content-type': 'application/json',
        'bool false': false,
        'bool true': true,
        byte: -49,
        'byte buf': Buffer.from("I'm a little teapot!"),
        timestamp: new Date(8675309),
        int16: 42,
        int64: 42424242n,
        uuid: '01020304-0506-0708-090a-0b0c0d0e0f10',
      },
      FOO_BAR,
    ],
  ])('decodes %s', (name, headers, payload) => {
    const bytes = fixture(name)
    const { messages, out, corrupt } = frame([bytes])
    expect(messages).toEqual([{ headers, payload }])
    expect(out.equals(bytes)).toBe(true)
    expect(corrupt).toBe(0)
  })

  it.each(['vector-empty-message.bin', 'vector-payload-no-headers.bin', 'vector-payload-one-str-header.bin'])(
    'the encoder reproduces %s byte for byte',
    (name) => {
      const bytes = fixture(name)
      const [message] = frame([bytes]).messages
      expect(encodeEventStreamMessage(message!.headers as Record<string, string>, message!.payload).equals(bytes)).toBe(true)
    },
  )

  it.each(['vector-corrupted-headers.bin', 'vector-corrupted-header-len.bin', 'vector-corrupted-length.bin', 'vector-corrupted-payload.bin'])(
    'rejects %s: no message, every byte passed through and counted as corrupt',
    (name) => {
      const bytes = fixture(name)
      expect(() => smithy.decode(new Uint8Array(bytes))).toThrow()
      const { messages, out, corrupt } = frame([bytes])
      expect(messages).toEqual([])
      expect(out.equals(bytes)).toBe(true)
      expect(corrupt).toBe(bytes.length)
    },
  )
})

describe('framing', () => {
  const STREAMS = ['invoke-anthropic-stream', 'invoke-llama-stream', 'converse-stream', 'converse-stream-exception']

  it.each(STREAMS)('%s.bin is the encoding of %s.json, and the AWS SDK codec reads it as we do', (name) => {
    const bytes = fixture(`${name}.bin`)
    const source = JSON.parse(fixture(`${name}.json`).toString('utf8')) as { events: FixtureEvent[] }
    expect(fixtureFrames(source.events).equals(bytes)).toBe(true)
    const ours = frame([bytes]).messages.map((m) => ({ headers: m.headers, payload: m.payload.toString('utf8') }))
    expect(ours).toHaveLength(source.events.length)
    expect(ours).toEqual(smithyDecode(bytes))
  })

  it.each([...STREAMS.map((n) => `${n}.bin`), 'captured-ai21-jamba-chunk.bin', 'vector-all-headers.bin'])(
    '%s split at every byte boundary gives the same messages and bytes',
    (name) => {
      const bytes = fixture(name)
      const whole = summary(frame([bytes]).messages)
      expect(whole.length).toBeGreaterThan(2)
      for (let cut = 0; cut <= bytes.length; cut++) {
        const split = frame([bytes.subarray(0, cut), bytes.subarray(cut)])
        expect(summary(split.messages)).toBe(whole)
        expect(split.out.equals(bytes)).toBe(true)
      }
      const bytewise = frame([...bytes].map((b) => Buffer.from([b])))
      expect(summary(bytewise.messages)).toBe(whole)
      expect(bytewise.out.equals(bytes)).toBe(true)
    },
  )

  it('releases only whole messages, so a cutoff frame can never land inside one', () => {
    const bytes = fixture('converse-stream.bin')
    const framer = createEventStreamFramer(() => undefined)
    const firstLength = bytes.readUInt32BE(0)
    expect(framer.push(bytes.subarray(0, firstLength - 1)).length).toBe(0)
    const released = framer.push(bytes.subarray(firstLength - 1, firstLength + 5))
    expect(released.equals(bytes.subarray(0, firstLength))).toBe(true)
    expect(framer.flush().equals(bytes.subarray(firstLength, firstLength + 5))).toBe(true)
  })

  it('a captured Bedrock frame (AI21 Jamba chat chunk, from AI21Labs/ai21-python tests) decodes with both checksums valid', () => {
    const bytes = fixture('captured-ai21-jamba-chunk.bin')
    const { messages, corrupt } = frame([bytes])
    expect(corrupt).toBe(0)
    expect(messages[0]?.headers).toEqual({ ':event-type': 'chunk', ':content-type': 'application/json', ':message-type': 'event' })
    const payload = JSON.parse(messages[0]!.payload.toString('utf8')) as { bytes: string; p: string }
    expect(payload.p).toBe('abcdefghijklmnopqrstuv')
    expect(JSON.parse(Buffer.from(payload.bytes, 'base64').toString('utf8'))).toMatchObject({ usage: { prompt_tokens: 44, completion_tokens: 0 } })
  })
})

describe('corruption', () => {
  const good = fixture('converse-stream.bin')
  const lengths: number[] = []
  for (let at = 0; at < good.length; at += good.readUInt32BE(at)) lengths.push(good.readUInt32BE(at))
  const secondStart = lengths[0]!
  const thirdStart = secondStart + lengths[1]!

  it('a wrong message checksum stops parsing at that frame; later bytes pass through and count as corrupt', () => {
    const bad = Buffer.from(good)
    bad.writeUInt32BE((bad.readUInt32BE(thirdStart - 4) ^ 0xff) >>> 0, thirdStart - 4)
    for (let cut = 0; cut <= bad.length; cut += 7) {
      const { messages, out, corrupt } = frame([bad.subarray(0, cut), bad.subarray(cut)])
      expect(messages).toHaveLength(1)
      expect(out.equals(bad)).toBe(true)
      expect(corrupt).toBe(bad.length - secondStart)
    }
  })

  it('a wrong prelude checksum is caught as soon as the 12-byte prelude arrives', () => {
    const bad = Buffer.from(good)
    bad.writeUInt32BE((bad.readUInt32BE(secondStart + 8) ^ 1) >>> 0, secondStart + 8)
    const messages: EventStreamMessage[] = []
    const framer = createEventStreamFramer((m) => messages.push(m))
    expect(framer.push(bad.subarray(0, secondStart + 11)).length).toBe(secondStart)
    expect(framer.corruptBytes()).toBe(0)
    const released = framer.push(bad.subarray(secondStart + 11, secondStart + 12))
    expect(released.equals(bad.subarray(secondStart, secondStart + 12))).toBe(true)
    expect(framer.corruptBytes()).toBe(12)
    expect(framer.push(bad.subarray(secondStart + 12)).equals(bad.subarray(secondStart + 12))).toBe(true)
    expect(messages).toHaveLength(1)
  })

  it('an impossible length (below the 16-byte minimum) is corruption, not a wait for more bytes', () => {
    const prelude = Buffer.alloc(12)
    prelude.writeUInt32BE(8, 0)
    prelude.writeUInt32BE(0, 4)
    prelude.writeUInt32BE(crc32(prelude.subarray(0, 8)), 8)
    const { messages, corrupt } = frame([prelude])
    expect(messages).toEqual([])
    expect(corrupt).toBe(12)
  })
})

describe('encoder and checksum', () => {
  it('an exception frame decodes with the AWS SDK codec', () => {
    const bytes = encodeEventStreamMessage(
      { ':message-type': 'exception', ':exception-type': 'throttlingException', ':content-type': 'application/json' },
      Buffer.from('{"message":"budget exceeded — 予算"}'),
    )
    expect(smithyDecode(bytes)).toEqual([
      {
        headers: { ':message-type': 'exception', ':exception-type': 'throttlingException', ':content-type': 'application/json' },
        payload: '{"message":"budget exceeded — 予算"}',
      },
    ])
  })

  it('the CRC-32 is the IEEE one on known values', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926)
    expect(crc32(Buffer.alloc(0))).toBe(0)
  })
})
