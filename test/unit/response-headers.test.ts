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
