import { describe, expect, it } from 'vitest'
import { fingerprintRequest } from '../../src/loop/fingerprint.js'
import type { Json } from '../../src/providers/body.js'
import type { ProviderId, RouteMatch } from '../../src/providers/types.js'
import { TEST_ADAPTERS } from '../support/adapters.js'
import { loadLoopFixtures } from '../support/loop-fixtures.js'

// A store may compute a request's loop fingerprint after the adapter prepared the body to send: a batched reserve is
// flushed after the upstream request was prebuilt (src/proxy/pipeline.ts), and the body prepared again with a lowered
// cap. Preparing a body, with or without a cap, must never change the fingerprint of what the agent sent.

/** Each fixture shape's routes, every provider that serves it (Azure and Mistral speak OpenAI chat). */
const ROUTES: Record<string, Array<[ProviderId, string, string]>> = {
  'openai-chat': [
    ['openai', '/v1/chat/completions', ''],
    ['azure', '/openai/deployments/my-gpt4o/chat/completions', 'api-version=2024-02-01'],
    ['azure', '/openai/deployments/my-gpt4o/chat/completions', 'api-version=2024-10-21'],
    ['mistral', '/v1/chat/completions', ''],
  ],
  responses: [['openai', '/v1/responses', '']],
  anthropic: [['anthropic', '/v1/messages', '']],
  gemini: [['gemini', '/v1beta/models/gemini-2.5-flash:generateContent', '']],
  'bedrock-converse': [['bedrock', '/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse', '']],
}

/** The fixture bodies with caps and stream options a preparation edits, as agents send them. */
function variants(body: Json): Record<string, unknown>[] {
  const base = body as Record<string, unknown>
  return [
    structuredClone(base),
    { ...structuredClone(base), stream: true, max_tokens: 900, max_completion_tokens: 900, max_output_tokens: 900 },
    { ...structuredClone(base), stream: true, stream_options: { include_usage: false } },
  ]
}

describe.each(loadLoopFixtures())('$name: a prepared body keeps its loop fingerprint', (fixture) => {
  const routes = ROUTES[fixture.shapeName]
  it('has routes for its shape', () => {
    expect(routes?.length).toBeGreaterThan(0)
  })
  it.each(routes ?? [])('%s %s %s', (provider, path, query) => {
    const adapter = TEST_ADAPTERS[provider]
    const route = adapter.findRoute('POST', path, new URLSearchParams(query)) as RouteMatch
    expect(route).not.toBeNull()
    const shape = adapter.loopShape?.(route) ?? null
    expect(shape).not.toBeNull()
    let fingerprints = 0
    for (const request of fixture.requests) {
      for (const sent of variants(request.body)) {
        const before = fingerprintRequest(shape, sent as Json)
        const facts = adapter.describe(route, structuredClone(sent))
        for (const cap of [null, 1, 37]) {
          const prepared = structuredClone(sent)
          adapter.prepareBody(route, prepared, facts, cap)
          expect(fingerprintRequest(shape, prepared as Json)).toEqual(before)
          // Prepared without a cap, then with one (prebuilt while the reserve is in flight, then lowered).
          if (cap !== null) {
            const twice = structuredClone(sent)
            adapter.prepareBody(route, twice, facts, null)
            adapter.prepareBody(route, twice, facts, cap)
            expect(fingerprintRequest(shape, twice as Json)).toEqual(before)
          }
        }
        if (before !== null) fingerprints++
      }
    }
    // The fixtures hold conversations: the comparison is of fingerprints, not of nulls.
    expect(fingerprints).toBeGreaterThan(0)
  })
})
