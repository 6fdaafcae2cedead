import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { pickMembers } from '../../src/http/json-pick.js'
import type { ProviderId, RouteMatch } from '../../src/providers/types.js'
import { TEST_ADAPTERS } from '../support/adapters.js'

// A whole answer's usage is read from the members each adapter names (`usageMembers`), parsed alone: the usage
// must be what the adapter reads from the whole parsed answer, for every provider and answer format.

const ADAPTERS = TEST_ADAPTERS

const fixture = (file: string): Buffer => readFileSync(new URL(`../fixtures/${file}`, import.meta.url))
const TITAN_TEXT = Buffer.from('{"inputTextTokenCount":7,"results":[{"tokenCount":5,"outputText":"Hi","completionReason":"FINISH"},{"tokenCount":3}]}')

describe.each<[ProviderId, string, string | Buffer]>([
  ['openai', '/v1/chat/completions', 'azure/chat.json'],
  ['openai', '/v1/responses', 'azure/responses.json'],
  ['openai', '/v1/embeddings', 'azure/embeddings.json'],
  ['azure', '/openai/deployments/my-gpt4o/chat/completions', 'azure/chat.json'],
  ['azure', '/openai/responses', 'azure/responses.json'],
  ['azure', '/openai/deployments/my-embed/embeddings', 'azure/embeddings.json'],
  ['mistral', '/v1/chat/completions', 'mistral/chat.json'],
  ['mistral', '/v1/embeddings', 'mistral/embeddings.json'],
  ['anthropic', '/v1/messages', 'anthropic/message-cache.json'],
  ['anthropic', '/v1/messages', 'anthropic/message-tool-use.json'],
  ['anthropic', '/v1/messages', 'anthropic/error-overloaded.json'],
  ['gemini', '/v1beta/models/gemini-2.5-flash:generateContent', 'gemini/generate-content.json'],
  ['gemini', '/v1beta/models/gemini-2.5-flash:generateContent', 'gemini/generate-content-blocked.json'],
  ['gemini', '/v1beta/models/gemini-embedding-001:embedContent', 'gemini/embed-content.json'],
  ['bedrock', '/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke', 'bedrock/invoke-anthropic.json'],
  ['bedrock', '/model/amazon.nova-lite-v1%3A0/invoke', 'bedrock/invoke-nova.json'],
  ['bedrock', '/model/meta.llama3-8b-instruct-v1%3A0/invoke', 'bedrock/invoke-llama.json'],
  ['bedrock', '/model/amazon.titan-embed-text-v2%3A0/invoke', 'bedrock/invoke-titan-embed.json'],
  ['bedrock', '/model/amazon.titan-text-express-v1/invoke', TITAN_TEXT],
  ['bedrock', '/model/mistral.mistral-large-2407-v1%3A0/invoke', 'bedrock/invoke-mistral.json'],
  ['bedrock', '/model/amazon.nova-lite-v1%3A0/converse', 'bedrock/converse.json'],
])('%s %s: %s', (provider, path, file) => {
  const adapter = ADAPTERS[provider]
  const route = adapter.findRoute('POST', path) as RouteMatch
  const raw = Buffer.isBuffer(file) ? file : fixture(file)
  const whole = JSON.parse(raw.toString('utf8')) as Record<string, unknown>

  it('reads the same usage from the picked members as from the whole answer', () => {
    expect(route).not.toBeNull()
    expect(adapter.usageFromBody(route, pickMembers(raw, adapter.usageMembers))).toEqual(adapter.usageFromBody(route, whole))
  })

  it('reads no top-level member it does not name', () => {
    const read = new Set<string>()
    const watched = new Proxy(whole, {
      get(target, key, receiver) {
        if (typeof key === 'string') read.add(key)
        return Reflect.get(target, key, receiver) as unknown
      },
    })
    adapter.usageFromBody(route, watched)
    expect([...read].filter((key) => !adapter.usageMembers.includes(key))).toEqual([])
  })
})
