import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IncomingHttpHeaders } from 'node:http'
import { request } from 'undici'
import { mayHaveControlHeaders } from '../../src/proxy/control-headers.js'
import { startProxy, type TestProxy } from '../support/proxy.js'

// Most requests carry no X-Loopers-* header: the pipeline reads the raw header names once instead of looking each
// control header up. A request that has one, in any case, must still have it read.

/** A request whose headers object is its raw request's, built from `raw` (name, value, …) as Node builds it. */
function requestWith(raw: string[]): { headers: IncomingHttpHeaders; raw: { headers: IncomingHttpHeaders; rawHeaders: string[] } } {
  const headers: IncomingHttpHeaders = {}
  for (let i = 0; i < raw.length; i += 2) headers[(raw[i] as string).toLowerCase()] = raw[i + 1]
  return { headers, raw: { headers, rawHeaders: raw } }
}

describe('mayHaveControlHeaders', () => {
  it.each([
    ['lowercase', ['host', 'x', 'x-loopers-session-id', 'run-1']],
    ['as documented', ['Host', 'x', 'X-Loopers-Session-ID', 'run-1']],
    ['uppercase', ['HOST', 'x', 'X-LOOPERS-PROVIDER-KEY', 'sk-1']],
    ['after many others', ['x-stainless-lang', 'js', 'x-stainless-os', 'Linux', 'accept', '*/*', 'x-LoOpErS-loop-limit', '2']],
  ])('sees a control header named %s', (_name, raw) => {
    expect(mayHaveControlHeaders(requestWith(raw))).toBe(true)
  })

  it.each([
    ['none at all', []],
    ['an SDK’s own x- headers', ['authorization', 'Bearer lp-x', 'x-stainless-lang', 'js', 'X-Stainless-Retry-Count', '0', 'x-api-key', 'k']],
    ['a name that is only the prefix', ['x-l', '1', 'X-L', '2']],
  ])('finds none in %s', (_name, raw) => {
    expect(mayHaveControlHeaders(requestWith(raw))).toBe(false)
  })

  it('may have one when the headers are not the raw request’s (a hook replaced them)', () => {
    const { raw } = requestWith(['accept', '*/*'])
    expect(mayHaveControlHeaders({ headers: { ...raw.headers, 'x-loopers-session-id': 'run-1' }, raw })).toBe(true)
  })

  it('may have one when the raw names are not there to read', () => {
    const headers = { 'x-loopers-session-id': 'run-1' }
    expect(mayHaveControlHeaders({ headers, raw: { headers } })).toBe(true)
  })
})

describe('control headers in any case, through the proxy', () => {
  let proxy: TestProxy
  let key: string
  beforeAll(async () => {
    // Nothing listens there: a request that passes its checks ends in 502, no call leaves the machine.
    proxy = await startProxy({ LOOPERS_OPENAI_BASE_URL: 'http://127.0.0.1:9', LOOPERS_OPENAI_API_KEY: 'sk-test-upstream' })
    key = (await proxy.admin.createKey('control-case', ['openai'], { unlimited: true })).key
  })
  afterAll(async () => {
    await proxy.close()
  })

  const send = async (extra: Record<string, string>) => {
    const response = await request(`${proxy.url}/openai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...extra },
      body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    })
    return { status: response.statusCode, body: (await response.body.json()) as { error?: { message?: string } } }
  }

  it('reads a session header sent in uppercase', async () => {
    const answer = await send({ 'X-LOOPERS-SESSION-BUDGET': '1' })
    expect(answer.status).toBe(400)
    expect(answer.body.error?.message).toMatch(/need X-Loopers-Session-ID/)
  })

  it('reads a credential header sent in mixed case', async () => {
    const answer = await send({ 'X-Loopers-Aws-ACCESS-Key': 'AKIDEXAMPLE' })
    expect(answer.status).toBe(400)
    expect(answer.body.error?.message).toMatch(/must be sent together/)
  })

  it('forwards a request with only an SDK’s own x- headers', async () => {
    const answer = await send({ 'X-Stainless-Lang': 'js', 'x-stainless-retry-count': '0' })
    expect(answer.status).toBe(502)
  })
})
