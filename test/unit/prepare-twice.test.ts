import { describe, expect, it } from 'vitest'
import type { RouteMatch } from '../../src/providers/types.js'
import { TEST_ADAPTERS } from '../support/adapters.js'

// The pipeline prepares a body without a cap while its reserve is in flight (proxy/forward.ts, prebuildUpstream),
// and again with the cap a lowered grant pays for: the body sent must be the one a single preparation with that
// cap makes. Only bodies that a preparation without a cap changes are prepared twice.
describe('a body prepared without a cap, then with one', () => {
  const cases: Array<[string, 'openai' | 'azure', string, Record<string, unknown>]> = [
    ['openai stream', 'openai', '', { model: 'm', messages: [], stream: true, max_tokens: 500 }],
    ['openai stream, both caps', 'openai', '', { model: 'm', messages: [], stream: true, max_tokens: 50, max_completion_tokens: 500 }],
    ['azure legacy, both caps', 'azure', 'api-version=2024-02-01', { messages: [], max_tokens: 50, max_completion_tokens: 500 }],
    ['azure legacy, max_completion_tokens', 'azure', 'api-version=2024-02-01', { messages: [], max_completion_tokens: 500 }],
    ['azure legacy stream', 'azure', 'api-version=2024-02-01', { messages: [], stream: true, max_completion_tokens: 500 }],
    ['azure legacy, stream_options', 'azure', 'api-version=2024-02-01', { messages: [], stream_options: { include_usage: true }, max_tokens: 500 }],
    ['azure modern stream', 'azure', 'api-version=2024-10-21', { messages: [], stream: true, max_tokens: 500 }],
  ]
  const paths = { openai: '/v1/chat/completions', azure: '/openai/deployments/my-gpt4o/chat/completions' }

  it.each(cases)('%s', (_name, provider, query, sent) => {
    const adapter = TEST_ADAPTERS[provider]
    const route = adapter.findRoute('POST', paths[provider], new URLSearchParams(query)) as RouteMatch
    const facts = adapter.describe(route, structuredClone(sent))
    for (const cap of [20, 80, 300]) {
      const once = structuredClone(sent)
      adapter.prepareBody(route, once, facts, cap)
      const twice = structuredClone(sent)
      expect(adapter.prepareBody(route, twice, facts, null)).toBe(true)
      adapter.prepareBody(route, twice, facts, cap)
      expect(twice).toEqual(once)
    }
  })
})
