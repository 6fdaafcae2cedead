import { describe, expect, it } from 'vitest'
import { unsafePathReason, upstreamUrl } from '../../src/http/upstream-url.js'

// The last plain path (and its URL) is found again by comparing text: a path that differs from it anywhere, in
// case or by a dot segment of the same length, is checked as if it were new; a query never joins the path.

const BASE = 'https://gw.example/openai'
const PLAIN = '/v1/chat/completions'
// The same length as PLAIN, one character apart, or a dot segment where PLAIN has letters.
const NEAR = ['/v1/chat/completionS', '/v1/chat/../pletions', '/v1/chat/%2e%2e/tion', '/v1/chat\\completions']

describe('the last plain path', () => {
  it.each(NEAR)('a path next read after a plain one of its length is checked anew: %s', (near) => {
    expect(near.length).toBe(PLAIN.length)
    expect(unsafePathReason(PLAIN)).toBeNull()
    expect(unsafePathReason(near)).toBe(unsafePathReason(near, {}))
    if (near === '/v1/chat/completionS') expect(unsafePathReason(near)).toBeNull()
    else expect(unsafePathReason(near)).not.toBeNull()
  })

  it.each(NEAR.slice(1))('its URL is not given to a path of its length that leaves the base: %s', (near) => {
    expect(upstreamUrl(BASE, PLAIN, '')).toBe(`${BASE}${PLAIN}`)
    expect(() => upstreamUrl(BASE, near, '')).toThrow()
  })

  it('gives each path its own URL, with the query after it', () => {
    expect(upstreamUrl(BASE, PLAIN, '')).toBe(`${BASE}${PLAIN}`)
    expect(upstreamUrl(BASE, '/v1/chat/completionS', '')).toBe(`${BASE}/v1/chat/completionS`)
    expect(upstreamUrl(BASE, '/v1/chat/completionS', 'api-version=1')).toBe(`${BASE}/v1/chat/completionS?api-version=1`)
    expect(upstreamUrl(BASE, PLAIN, 'api-version=2')).toBe(`${BASE}${PLAIN}?api-version=2`)
    expect(upstreamUrl(BASE, PLAIN, '')).toBe(`${BASE}${PLAIN}`)
  })

  it('keeps one last path per base', () => {
    expect(upstreamUrl(BASE, PLAIN, '')).toBe(`${BASE}${PLAIN}`)
    expect(upstreamUrl('https://other.example', PLAIN, '')).toBe(`https://other.example${PLAIN}`)
    expect(upstreamUrl(BASE, PLAIN, '')).toBe(`${BASE}${PLAIN}`)
  })

  it('is not found for an empty path', () => {
    expect(unsafePathReason('')).not.toBeNull()
    expect(() => upstreamUrl(BASE, '', '')).toThrow()
  })
})
