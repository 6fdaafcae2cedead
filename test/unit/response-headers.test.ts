import { describe, expect, it } from 'vitest'
import { relayableResponseHeaders } from '../../src/http/response-headers.js'

const raw = (...lines: string[]): Buffer[] => lines.map((line) => Buffer.from(line, 'latin1'))

describe('relayable response headers from the raw header lines', () => {
  it('keeps what SDKs read under lower-case names, drops the rest', () => {
    const headers = relayableResponseHeaders(
      raw('Content-Type', 'application/json', 'X-Request-Id', 'req_1', 'OpenAI-Organization', 'org-1', 'Set-Cookie', 'a=1', 'x-ratelimit-remaining-requests', '9', 'Connection', 'keep-alive'),
    )
    expect(headers).toEqual({ 'content-type': 'application/json', 'x-request-id': 'req_1', 'x-ratelimit-remaining-requests': '9' })
  })

  it("gives a repeated header's values in an array, in order, whatever the case of each line", () => {
    const headers = relayableResponseHeaders(raw('Retry-After', '1', 'retry-after', '2', 'RETRY-AFTER', '3', 'x-amzn-RequestId', 'r'))
    expect(headers).toEqual({ 'retry-after': ['1', '2', '3'], 'x-amzn-requestid': 'r' })
  })

  it('reads names and values as latin1, as undici does', () => {
    const headers = relayableResponseHeaders([Buffer.from('x-request-id'), Buffer.from([0x61, 0xe9])])
    expect(headers).toEqual({ 'x-request-id': 'a\u00e9' })
  })
})

describe('header names judged before', () => {
  it('are recognised by their bytes: a later answer reusing the same memory for another name is judged afresh', () => {
    // undici's header buffers are views of a socket read that the next read may overwrite.
    // The second name has the first one's length and first, middle and last bytes: it is looked up where the first was kept.
    const memory = Buffer.from('openai-version', 'latin1')
    expect(relayableResponseHeaders([memory, Buffer.from('a')])).toEqual({ 'openai-version': 'a' })
    memory.write('org-id.version', 'latin1')
    expect(relayableResponseHeaders([memory, Buffer.from('b')])).toEqual({})
    expect(relayableResponseHeaders(raw('openai-version', 'c', 'org-id.version', 'd'))).toEqual({ 'openai-version': 'c' })
  })

  it('keep every verdict right past the number remembered, names of one length and ends included', () => {
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 3_000; i++) {
        const id = String(i).padStart(4, '0')
        const headers = relayableResponseHeaders(raw(`x-ratelimit-${id}`, 'kept', `x-ratelimip-${id}`, 'dropped', `X-RateLimit-${id}`, 'again'))
        expect(headers).toEqual({ [`x-ratelimit-${id}`]: ['kept', 'again'] })
      }
    }
  })
})
