import { describe, expect, it } from 'vitest'
import { parseTarget, readQuery } from '../../src/proxy/target.js'
import { isProviderId, PROVIDER_IDS, providerIdOf } from '../../src/providers/types.js'

// parseTarget reads segments in place; these pin what the split-based reading gave, edge cases included.
describe('parseTarget', () => {
  it.each([
    ['/openai/v1/chat/completions', { pathKey: null, pathSession: null, provider: 'openai', path: '/v1/chat/completions', query: '' }],
    ['/openai/v1/models?limit=2', { pathKey: null, pathSession: null, provider: 'openai', path: '/v1/models', query: 'limit=2' }],
    ['/openai', { pathKey: null, pathSession: null, provider: 'openai', path: '/', query: '' }],
    ['/openai/', { pathKey: null, pathSession: null, provider: 'openai', path: '/', query: '' }],
    ['/openai//v1', { pathKey: null, pathSession: null, provider: 'openai', path: '//v1', query: '' }],
    ['/lp-abc/gemini/v1beta/models/x:generateContent?alt=sse', { pathKey: 'lp-abc', pathSession: null, provider: 'gemini', path: '/v1beta/models/x:generateContent', query: 'alt=sse' }],
    ['/session/s1/anthropic/v1/messages', { pathKey: null, pathSession: { id: 's1', budget: null, maxSteps: null }, provider: 'anthropic', path: '/v1/messages', query: '' }],
    [
      '/lp-k/session/s1/budget/2.5/max-steps/9/mistral/v1/chat/completions',
      { pathKey: 'lp-k', pathSession: { id: 's1', budget: '2.5', maxSteps: '9' }, provider: 'mistral', path: '/v1/chat/completions', query: '' },
    ],
    ['/session//max-steps/3/openai/x', { pathKey: null, pathSession: { id: '', budget: null, maxSteps: '3' }, provider: 'openai', path: '/x', query: '' }],
    ['x/openai/v1', { pathKey: null, pathSession: null, provider: 'openai', path: '/v1', query: '' }],
  ])('%s', (url, expected) => {
    expect(parseTarget(url)).toEqual(expected)
  })

  it.each(['/', '', 'openai', '/nope/v1', '/session', '/session/s1', '/lp-k', '/lp-k/session/s1/budget', '/OpenAI/v1', '/openai?x=/'.replace('openai', 'lp-x')])(
    '%s names no provider',
    (url) => {
      expect(parseTarget(url)).toBeNull()
    },
  )
})

describe('providerIdOf', () => {
  it.each(PROVIDER_IDS.map((id) => [id]))('names %s from a segment cut out of a URL, and parseTarget reads it', (id) => {
    const segment = `/${id}/v1`.slice(1, 1 + id.length)
    expect(providerIdOf(segment)).toBe(id)
    expect(parseTarget(`/${id}/v1`)?.provider).toBe(id)
  })

  it.each(['', 'opena', 'openai2', 'OpenAI', 'azure ', 'session', 'lp-x'])('%j names no provider', (value) => {
    expect(providerIdOf(value)).toBeNull()
    expect(isProviderId(value)).toBe(false)
  })
})

describe('readQuery', () => {
  it('re-encodes a query and refuses one that reads two ways', () => {
    const target = parseTarget('/gemini/v1beta/models/m:streamGenerateContent?al%74=sse') as NonNullable<ReturnType<typeof parseTarget>>
    expect(readQuery('/gemini/v1beta/models/m:streamGenerateContent?al%74=sse', target).query).toBe('alt=sse')
    const twice = parseTarget('/gemini/x?alt=sse&alt=json') as NonNullable<ReturnType<typeof parseTarget>>
    expect(() => readQuery('/gemini/x?alt=sse&alt=json', twice)).toThrow(/more than once/)
  })

  it('gives an empty query and no parameters for a request without one', () => {
    const target = parseTarget('/openai/v1/chat/completions') as NonNullable<ReturnType<typeof parseTarget>>
    const { params, query } = readQuery('/openai/v1/chat/completions', target)
    expect(query).toBe('')
    expect([...params.keys()]).toEqual([])
  })
})
