import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { findDuplicateKey } from '../../src/http/json-keys.js'
import { createAnthropicAdapter } from '../../src/providers/anthropic.js'
import { createAzureAdapter } from '../../src/providers/azure.js'
import { createBedrockAdapter } from '../../src/providers/bedrock.js'
import { createGeminiAdapter } from '../../src/providers/gemini.js'
import { createMistralAdapter } from '../../src/providers/mistral.js'
import { createOpenAiAdapter } from '../../src/providers/openai.js'
import type { ProviderAdapter, ProviderId, RequestFacts } from '../../src/providers/types.js'
import { createTestKey, metered as meteredCalls } from '../support/e2e.js'
import { summaries } from '../support/fault-checks.js'
import { ALL_PROVIDERS, gatewayEnv, keyHeaders, rawRequest, startGateway, type Gateway } from '../support/security.js'
import { eventually, startProxy, type TestProxy } from '../support/proxy.js'
import { startRedis, type TestRedis } from '../support/redis.js'

// Issue 13, proof: whatever the client sends — fragments, repeated or encoded query parameters, repeated or
// escaped JSON keys, wrong types — the request the upstream receives reads, for a provider that keeps the
// first of two keys as much as for one that keeps the last, with the stream flag, model and caps the meter
// used; or the proxy refused it and the upstream saw nothing.

let redis: TestRedis
let gateway: Gateway
let proxy: TestProxy
let key: string
let hash: string

beforeAll(async () => {
  redis = await startRedis()
  gateway = await startGateway()
  proxy = await startProxy({ REDIS_URL: redis.url, ...gatewayEnv(gateway), LOG_LEVEL: 'info' })
  ;({ key, hash } = await createTestKey(proxy, 'property', ALL_PROVIDERS, { daily: 1_000_000_000 }))
})
afterAll(async () => {
  await proxy.close()
  await gateway.close()
  await redis.stop()
})

/** The adapters as the upstream would read a request (the same parsers, applied to what arrived). */
const adapters: Record<ProviderId, ProviderAdapter> = {
  openai: createOpenAiAdapter({ baseUrl: 'http://u', apiKey: null }),
  anthropic: createAnthropicAdapter({ baseUrl: 'http://u', apiKey: null }),
  gemini: createGeminiAdapter({ baseUrl: 'http://u', apiKey: null }),
  bedrock: createBedrockAdapter({ baseUrl: 'http://u', apiKey: null, aws: null, region: 'us-east-1' }),
  azure: createAzureAdapter({ endpoint: 'http://u', apiKey: null }),
  mistral: createMistralAdapter({ baseUrl: 'http://u', apiKey: null }),
}

/** One `"key":value` entry; keys may be written with a `\u` escape, as a provider's parser would still read them. */
const entry = (name: string, value: fc.Arbitrary<unknown>): fc.Arbitrary<string[]> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constant<string[]>([]) },
    { weight: 5, arbitrary: value.map((v) => [`${JSON.stringify(name)}:${JSON.stringify(v)}`]) },
    { weight: 1, arbitrary: value.map((v) => [`"\\u${name.charCodeAt(0).toString(16).padStart(4, '0')}${name.slice(1)}":${JSON.stringify(v)}`]) },
    { weight: 1, arbitrary: fc.tuple(value, value).map(([a, b]) => [`${JSON.stringify(name)}:${JSON.stringify(a)}`, `${JSON.stringify(name)}:${JSON.stringify(b)}`]) },
  )

const flag = fc.constantFrom<unknown>(true, false, true, false, null, 'true', 1)
const cap = fc.constantFrom<unknown>(1, 16, 64, 900, 16, 64, 0, -1, '16', null)
const objectOf = (parts: string[][]): string => `{${parts.flat().join(',')}}`

/** Query strings: nothing, alt in every spelling, repeats, credentials, a fragment. */
const query = fc.constantFrom('', '?alt=sse', '?alt=json', '?alt=sse&alt=json', '?alt=sse&alt=sse', '?%61lt=sse', '?$alt=sse', '?x=1#&alt=sse', '?alt=sse#x', '?x=1&x=2', '?fields=usageMetadata', '#frag')

interface Template {
  provider: ProviderId
  path: fc.Arbitrary<string>
  body: fc.Arbitrary<string>
  /** Requests a client would normally send (one spelling, valid values), mixed in so both sides of the property are reached. */
  plain: fc.Arbitrary<[string, string]>
}

/** `"key":value` always present, written once, with one of the valid values. */
const once = (name: string, value: fc.Arbitrary<unknown>): fc.Arbitrary<string[]> => value.map((v) => [`${JSON.stringify(name)}:${JSON.stringify(v)}`])
const validFlag = fc.constantFrom<unknown>(true, false)
const validCap = fc.constantFrom<unknown>(16, 64, 900)

const messages = `"messages":[{"role":"user","content":"hi"}]`
const templates: Template[] = [
  {
    provider: 'openai',
    path: fc.constantFrom('/openai/v1/chat/completions', '/openai/v1/responses'),
    body: fc
      .tuple(entry('model', fc.constantFrom('gpt-test', 'gpt-test-reasoning', 'gpt-unpriced')), entry('stream', flag), entry('max_tokens', cap), entry('max_completion_tokens', cap), entry('max_output_tokens', cap), entry('n', fc.constantFrom(1, 2, 3)))
      .map((parts) => objectOf([[messages, `"input":"hi"`], ...parts])),
    plain: fc.tuple(fc.constantFrom('/openai/v1/chat/completions', '/openai/v1/responses'), fc.tuple(once('model', fc.constant('gpt-test')), once('stream', validFlag)).map((parts) => objectOf([[messages, `"input":"hi"`], ...parts]))),
  },
  {
    provider: 'anthropic',
    path: fc.constant('/anthropic/v1/messages'),
    body: fc.tuple(entry('model', fc.constantFrom('claude-test', 'claude-test-thinking')), entry('stream', flag), entry('max_tokens', cap)).map((parts) => objectOf([[messages], ...parts])),
    plain: fc.tuple(fc.constant('/anthropic/v1/messages'), fc.tuple(once('model', fc.constant('claude-test')), once('stream', validFlag), once('max_tokens', validCap)).map((parts) => objectOf([[messages], ...parts]))),
  },
  {
    provider: 'gemini',
    path: fc.tuple(fc.constantFrom('generateContent', 'streamGenerateContent'), query).map(([verb, q]) => `/gemini/v1beta/models/gemini-test:${verb}${q}`),
    body: fc
      .tuple(entry('maxOutputTokens', cap), entry('candidateCount', fc.constantFrom(1, 2)), entry('max_output_tokens', cap))
      .map((parts) => objectOf([[`"contents":[{"parts":[{"text":"x"}]}]`], [`"generationConfig":${objectOf(parts)}`]])),
    plain: fc.tuple(
      fc.constantFrom('generateContent', 'streamGenerateContent?alt=sse').map((verb) => `/gemini/v1beta/models/gemini-test:${verb}`),
      once('maxOutputTokens', validCap).map((parts) => objectOf([[`"contents":[{"parts":[{"text":"x"}]}]`], [`"generationConfig":${objectOf([parts])}`]])),
    ),
  },
  {
    provider: 'bedrock',
    path: fc.tuple(fc.constantFrom('converse', 'converse-stream', 'invoke'), query).map(([op, q]) => `/bedrock/model/amazon.nova-test-v1%3A0/${op}${q}`),
    body: fc.tuple(entry('maxTokens', cap), entry('max_new_tokens', cap)).map((parts) => objectOf([[`"messages":[{"role":"user","content":[{"text":"x"}]}]`], [`"inferenceConfig":${objectOf(parts)}`]])),
    plain: fc.tuple(
      fc.constantFrom('converse', 'converse-stream').map((op) => `/bedrock/model/amazon.nova-test-v1%3A0/${op}`),
      once('maxTokens', validCap).map((parts) => objectOf([[`"messages":[{"role":"user","content":[{"text":"x"}]}]`], [`"inferenceConfig":${objectOf([parts])}`]])),
    ),
  },
  {
    provider: 'azure',
    path: fc.constantFrom('?api-version=2024-10-21', '?api-version=2024-02-01', '?api-version=2024-10-21&api-version=2024-02-01', '?api-version=2024-10-21#x').map((q) => `/azure/openai/deployments/my-gpt4o/chat/completions${q}`),
    body: fc.tuple(entry('stream', flag), entry('max_tokens', cap), entry('max_completion_tokens', cap), entry('n', fc.constantFrom(1, 2))).map((parts) => objectOf([[messages], ...parts])),
    plain: fc.tuple(fc.constant('/azure/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21'), fc.tuple(once('stream', validFlag), once('max_tokens', validCap)).map((parts) => objectOf([[messages], ...parts]))),
  },
  {
    provider: 'mistral',
    path: fc.tuple(fc.constantFrom('/mistral/v1/chat/completions', '/mistral/v1/fim/completions'), query).map(([p, q]) => `${p}${q}`),
    body: fc.tuple(entry('model', fc.constantFrom('mistral-test', 'mistral-large-latest')), entry('stream', flag), entry('max_tokens', cap)).map((parts) => objectOf([[messages, `"prompt":"def"`], ...parts])),
    plain: fc.tuple(fc.constant('/mistral/v1/chat/completions'), fc.tuple(once('model', fc.constant('mistral-test')), once('stream', validFlag), once('max_tokens', validCap)).map((parts) => objectOf([[messages, `"prompt":"def"`], ...parts]))),
  },
]

/** The facts a reader of `path` (no prefix, no fragment) and `body` gets, or null when it cannot read them. */
function readFacts(provider: ProviderId, path: string, rawBody: string): { op: string; facts: RequestFacts } | null {
  const adapter = adapters[provider]
  const [pathname = '', search = ''] = path.split('#')[0]!.split('?')
  try {
    const route = adapter.findRoute('POST', pathname, new URLSearchParams(search))
    if (route === null) return null
    return { op: route.operation, facts: adapter.describe(route, JSON.parse(rawBody) as Record<string, unknown>) }
  } catch {
    return null
  }
}

const PREFIX: Record<ProviderId, string> = { openai: '/openai', anthropic: '/anthropic', gemini: '/gemini', bedrock: '/bedrock', azure: '/azure', mistral: '/mistral' }

describe('property: what the upstream receives is what the meter decided on, or nothing', () => {
  for (const template of templates) {
    it(`${template.provider}: every forwarded request reads one way, with the metered model, stream flag and cap`, async () => {
      let forwarded = 0
      let refused = 0
      await fc.assert(
        // Two in three requests are adversarial; one in three is plain, so the forwarded side is reached too.
        fc.asyncProperty(fc.oneof({ weight: 2, arbitrary: fc.tuple(template.path, template.body) }, { weight: 1, arbitrary: template.plain }), async ([path, body]) => {
          gateway.received.length = 0
          const before = summaries(proxy, hash).length
          const answer = await rawRequest(proxy.url, 'POST', path, { 'content-type': 'application/json', ...keyHeaders(template.provider, key) }, body)
          if (gateway.received.length === 0) {
            expect(answer.status).toBeGreaterThanOrEqual(400)
            refused++
            return
          }
          forwarded++
          // The meter's own record of the request (written once it has settled).
          await eventually(() => summaries(proxy, hash).length > before, 'summary line')
          const summary = summaries(proxy, hash)[before]!
          // One metered call (a stream that ended without usage may add a free count call after it).
          const calls = meteredCalls(gateway.received)
          expect(calls).toHaveLength(1)
          const sent = calls[0]!
          // Read one way: no fragment, no repeated parameter, no repeated key anywhere in the body.
          expect(sent.url).not.toContain('#')
          const names = [...new URLSearchParams(sent.url.split('?')[1] ?? '').keys()]
          expect(new Set(names).size).toBe(names.length)
          expect(await findDuplicateKey(Buffer.from(sent.raw))).toBeNull()
          // The upstream reads what the meter read.
          const upstreamPath = sent.url.slice(`/gw-${template.provider}`.length)
          const upstream = readFacts(template.provider, upstreamPath, sent.raw)
          const metered = readFacts(template.provider, path.slice(PREFIX[template.provider].length), body)
          expect(upstream).not.toBeNull()
          expect(metered).not.toBeNull()
          expect(upstream!.op).toBe(summary.op)
          expect(upstream!.facts.model).toBe(summary.model)
          expect(upstream!.facts.stream).toBe(summary.stream)
          expect(upstream!.facts.model).toBe(metered!.facts.model)
          expect(upstream!.facts.stream).toBe(metered!.facts.stream)
          expect(upstream!.facts.choices).toBe(metered!.facts.choices)
          // The upstream may generate no more than the meter reserved for (legacy Azure versions fold two caps into the lower).
          const meteredCap = metered!.facts.maxOutputTokens
          if (meteredCap !== null) {
            expect(upstream!.facts.maxOutputTokens).not.toBeNull()
            expect(upstream!.facts.maxOutputTokens!).toBeLessThanOrEqual(meteredCap)
          }
        }),
        { numRuns: 80 },
      )
      // Not vacuous: the generators reach both sides of the property.
      expect(forwarded).toBeGreaterThanOrEqual(5)
      expect(refused).toBeGreaterThanOrEqual(5)
    }, 120_000)
  }
})
