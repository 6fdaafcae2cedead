import { describe, expect, it, vi } from 'vitest'
import { fingerprintRequest } from '../../src/loop/fingerprint.js'
import { geminiShape } from '../../src/loop/shapes/gemini.js'
import { messagesShape } from '../../src/loop/shapes/messages.js'
import { responsesShape } from '../../src/loop/shapes/responses.js'
import type { LoopFingerprint, LoopShape } from '../../src/loop/types.js'
import type { Json } from '../../src/providers/body.js'
import { createAzureAdapter } from '../../src/providers/azure.js'
import { createBedrockAdapter } from '../../src/providers/bedrock.js'
import { createGeminiAdapter } from '../../src/providers/gemini.js'
import { createMistralAdapter } from '../../src/providers/mistral.js'
import { createOpenAiAdapter } from '../../src/providers/openai.js'
import type { ProviderAdapter } from '../../src/providers/types.js'
import { LAZY_MIN_BYTES, readLazyBody, readParsedBody } from '../../src/proxy/request-body.js'
import { agentBody } from '../../bench/agent-body.mjs'

function fp(shape: LoopShape, body: Json): LoopFingerprint {
  const result = fingerprintRequest(shape, body)
  if (result === null) throw new Error('no fingerprint')
  return result
}

const SYSTEM = { role: 'system', content: 'You are a coding agent.' }
const USER = { role: 'user', content: 'Fix the build.' }
function toolExchange(id: string, args: string, result: string, text: string | null = null): Json[] {
  return [
    { role: 'assistant', content: text, tool_calls: [{ id, type: 'function', function: { name: 'bash', arguments: args } }] },
    { role: 'tool', tool_call_id: id, content: result },
  ]
}

describe('fingerprintRequest', () => {
  it('is the same whatever was fingerprinted before it (one digest and one item list serve every request in turn)', () => {
    const small = { messages: [SYSTEM, USER] }
    // Long strings go to the native hash, and more than the newest items a step reads.
    const long = 'x'.repeat(300_000)
    const big = { messages: [SYSTEM, { role: 'user', content: long }, ...Array.from({ length: 60 }, (_, i) => toolExchange(`c${i}`, `{"i":${i}}`, long)).flat()] }
    const smallFirst = fp(messagesShape, small)
    const bigFirst = fp(messagesShape, big)
    expect(fp(messagesShape, small)).toEqual(smallFirst)
    expect(fp(messagesShape, big)).toEqual(bigFirst)
    expect(fp(messagesShape, small)).toEqual(smallFirst)
  })

  it('gives 16 hex chars for the conversation and the step', () => {
    const result = fp(messagesShape, { messages: [SYSTEM, USER] })
    expect(result.conversation).toMatch(/^[0-9a-f]{16}$/)
    expect(result.step).toMatch(/^[0-9a-f]{16}$/)
    expect(result.step).not.toBe(result.conversation)
  })

  it('ignores volatile request fields: stream, sampling, caps, seed, user, metadata, n', () => {
    const messages = [SYSTEM, USER, ...toolExchange('call_1', '{"cmd":"make"}', 'error 2')]
    const plain = fp(messagesShape, { model: 'gpt-4o', messages })
    const varied = fp(messagesShape, {
      model: 'gpt-4o', messages: structuredClone(messages), stream: true, stream_options: { include_usage: true }, temperature: 1.3,
      top_p: 0.5, seed: 99, user: 'u-1', max_tokens: 10, max_completion_tokens: 20, metadata: { run: '7' }, n: 4, presence_penalty: 1,
    })
    expect(varied).toEqual(plain)
  })

  it('ignores tool call ids and the text around a tool call, not its arguments or result', () => {
    const base = fp(messagesShape, { messages: [SYSTEM, USER, ...toolExchange('call_a', '{"cmd":"make"}', 'error 2', 'Building.')] })
    expect(fp(messagesShape, { messages: [SYSTEM, USER, ...toolExchange('call_b', '{"cmd":"make"}', 'error 2', 'Let me build again.')] })).toEqual(base)
    expect(fp(messagesShape, { messages: [SYSTEM, USER, ...toolExchange('call_a', '{"cmd":"make -j"}', 'error 2')] }).step).not.toBe(base.step)
    expect(fp(messagesShape, { messages: [SYSTEM, USER, ...toolExchange('call_a', '{"cmd":"make"}', 'error 3')] }).step).not.toBe(base.step)
  })

  it('counts a tool call\'s name: the same arguments to another tool is another step', () => {
    const chat = (name: string): Json => ({
      messages: [SYSTEM, USER, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name, arguments: '{"path":"a.ts"}' } }] }, { role: 'tool', tool_call_id: 'c1', content: 'ok' }],
    })
    expect(fp(messagesShape, chat('read')).step).not.toBe(fp(messagesShape, chat('delete')).step)
    const anthropic = (name: string): Json => ({
      messages: [
        { role: 'user', content: 'go' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name, input: { path: 'a.ts' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'ok' }] },
      ],
    })
    expect(fp(messagesShape, anthropic('Read')).step).not.toBe(fp(messagesShape, anthropic('Delete')).step)
  })

  it('counts the text of a model turn that calls no tool', () => {
    const say = (text: string) => fp(messagesShape, { messages: [USER, { role: 'assistant', content: text }, { role: 'user', content: 'continue' }] })
    expect(say('Chapter 1').step).not.toBe(say('Chapter 2').step)
  })

  it('scopes the conversation by its opening: it stays while the conversation grows, the step moves', () => {
    const opening = [SYSTEM, USER]
    const first = fp(messagesShape, { messages: opening })
    const grown = fp(messagesShape, { messages: [...opening, ...toolExchange('c1', '{}', 'ok')] })
    expect(grown.conversation).toBe(first.conversation)
    expect(grown.step).not.toBe(first.step)
    const otherSystem = fp(messagesShape, { messages: [{ role: 'system', content: 'You review code.' }, USER] })
    expect(otherSystem.conversation).not.toBe(first.conversation)
  })

  it('leaves the opening out of the step: a system prompt that changes every turn does not hide a repeat', () => {
    const tail = [USER, ...toolExchange('c1', '{"q":"status"}', 'pending'), ...toolExchange('c2', '{"q":"status"}', 'pending')]
    const a = fp(messagesShape, { messages: [{ role: 'system', content: 'Agent. Time: 12:00:01' }, ...tail] })
    const b = fp(messagesShape, { messages: [{ role: 'system', content: 'Agent. Time: 12:00:09' }, ...tail] })
    expect(a.step).toBe(b.step)
    expect(a.conversation).not.toBe(b.conversation)
  })

  it('reads tool arguments as objects whatever their key order (Anthropic, Gemini, Bedrock)', () => {
    const call = (input: Json) =>
      fp(messagesShape, {
        messages: [
          { role: 'user', content: 'go' },
          { role: 'assistant', content: [{ type: 'tool_use', id: `toolu_${JSON.stringify(input).length}`, name: 'Bash', input }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_x', content: 'done' }] },
        ],
      })
    expect(call({ command: 'ls', timeout: 5 })).toEqual(call({ timeout: 5, command: 'ls' }))
    expect(call({ command: 'ls', timeout: 5 }).step).not.toBe(call({ command: 'ls', timeout: 6 }).step)
  })

  it('ignores Anthropic thinking signatures, cache_control and tool_use ids; is_error counts', () => {
    const body = (signature: string, cached: boolean, isError: boolean): Json => ({
      system: [{ type: 'text', text: 'You are Claude Code.', ...(cached ? { cache_control: { type: 'ephemeral' } } : {}) }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Run the tests.' }] },
        { role: 'assistant', content: [{ type: 'thinking', thinking: `run them (${signature})`, signature }, { type: 'tool_use', id: `toolu_${signature}`, name: 'Bash', input: { command: 'npm test' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: `toolu_${signature}`, content: 'exit 1', ...(isError ? { is_error: true } : {}), ...(cached ? { cache_control: { type: 'ephemeral' } } : {}) }] },
      ],
    })
    expect(fp(messagesShape, body('sigA', false, true))).toEqual(fp(messagesShape, body('sigB', true, true)))
    expect(fp(messagesShape, body('sigA', false, true)).step).not.toBe(fp(messagesShape, body('sigA', false, false)).step)
  })

  it('reads Bedrock Converse toolUse/toolResult blocks without their ids, reasoning or cache points', () => {
    const body = (id: string, reasoning: string): Json => ({
      system: [{ text: 'You manage the CRM.' }, { cachePoint: { type: 'default' } }],
      messages: [
        { role: 'user', content: [{ text: 'Upgrade ana.' }] },
        { role: 'assistant', content: [{ reasoningContent: { reasoningText: { text: reasoning, signature: id } } }, { toolUse: { toolUseId: id, name: 'update', input: { tier: 'gold' } } }] },
        { role: 'user', content: [{ toolResult: { toolUseId: id, content: [{ json: { ok: false } }], status: 'error' } }] },
      ],
    })
    expect(fp(messagesShape, body('tooluse_1', 'try'))).toEqual(fp(messagesShape, body('tooluse_2', 'try again')))
  })

  it('reads Gemini function calls without thought signatures or thought parts', () => {
    const body = (signature: string, thought: string): Json => ({
      systemInstruction: { parts: [{ text: 'Answer from the docs.' }] },
      contents: [
        { role: 'user', parts: [{ text: 'quotas?' }] },
        { role: 'model', parts: [{ text: thought, thought: true }, { functionCall: { name: 'search', args: { q: 'quota' } }, thoughtSignature: signature }] },
        { role: 'user', parts: [{ functionResponse: { name: 'search', response: { results: [] } } }] },
      ],
    })
    expect(fp(geminiShape, body('CiQa', 'search it'))).toEqual(fp(geminiShape, body('CiQb', 'search once more')))
    const other = body('CiQa', 'x')
    ;((other.contents as Json[])[2] as Json).parts = [{ functionResponse: { name: 'search', response: { results: ['found'] } } }]
    expect(fp(geminiShape, other).step).not.toBe(fp(geminiShape, body('CiQa', 'x')).step)
  })

  it('reads Responses input the same whether text is a string, a message or an input_text part', () => {
    const forms = [
      { instructions: 'Be brief.', input: 'hi' },
      { instructions: 'Be brief.', input: [{ role: 'user', content: 'hi' }] },
      { instructions: 'Be brief.', input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] }] },
    ]
    const [first, ...rest] = forms.map((body) => fp(responsesShape, body))
    for (const result of rest) expect(result).toEqual(first)
    expect(fp(responsesShape, { instructions: 'Be long.', input: 'hi' }).conversation).not.toBe(first?.conversation)
  })

  it('ignores Responses reasoning items, item ids, statuses and call ids, including built-in tool calls', () => {
    const body = (n: number): Json => ({
      input: [
        { role: 'user', content: 'Find flights.' },
        { type: 'reasoning', id: `rs_${n}`, summary: [], encrypted_content: `gAAA${n}` },
        { type: 'web_search_call', id: `ws_${n}`, status: 'completed', action: { type: 'search', query: 'AMS LIS' } },
        { type: 'function_call', id: `fc_${n}`, call_id: `call_${n}`, name: 'book', arguments: '{"flight":"KL1"}', status: 'completed' },
        { type: 'function_call_output', call_id: `call_${n}`, output: 'sold out' },
      ],
    })
    expect(fp(responsesShape, body(1))).toEqual(fp(responsesShape, body(2)))
    const changed = body(1)
    ;((changed.input as Json[])[2] as Json).action = { type: 'search', query: 'AMS OPO' }
    expect(fp(responsesShape, changed).step).not.toBe(fp(responsesShape, body(1)).step)
  })

  it('opens a Responses thread with its stored conversation id', () => {
    const a = fp(responsesShape, { conversation: 'conv_1', input: 'next' })
    const b = fp(responsesShape, { conversation: { id: 'conv_2' }, input: 'next' })
    expect(a.conversation).not.toBe(b.conversation)
  })

  it('returns null for bodies that hold no conversation', () => {
    expect(fingerprintRequest(null, { input: 'embed me' })).toBeNull()
    expect(fingerprintRequest(messagesShape, { prompt: 'x' })).toBeNull()
    expect(fingerprintRequest(messagesShape, { messages: [] })).toBeNull()
    expect(fingerprintRequest(geminiShape, { requests: [] })).toBeNull()
    expect(fingerprintRequest(responsesShape, { input: 42 })).toBeNull()
  })

  it('reads a bounded number of items however long the conversation is', () => {
    let reads = 0
    const counting: LoopShape = {
      read(body) {
        const transcript = messagesShape.read(body)
        if (transcript === null) return null
        return { ...transcript, item: (items, index) => (reads++, transcript.item(items, index)) }
      },
    }
    // 200,000 user messages and no model turn: the opening and the newest items only.
    const messages = Array.from({ length: 200_000 }, (_, i) => ({ role: 'user', content: `line ${i}` }))
    fp(counting, { messages })
    expect(reads).toBeLessThanOrEqual(16 + 4 * 64)
  })

  it('hashes the plain text content of a lazily read message from its bytes, never parsing it', async () => {
    // Issue 12: a coding agent's tool results and messages, ASCII without escapes, are not parsed to be hashed.
    const content = (i: number) => `plain tool output number ${i} `.repeat(40)
    const messages = [SYSTEM, USER, ...toolExchange('c1', '{}', content(1), 'Reading it.'), ...toolExchange('c2', '{"a":1}', content(2))]
    const raw = Buffer.from(JSON.stringify({ model: 'm', pad: 'p'.repeat(LAZY_MIN_BYTES), messages }))
    const lazy = await readLazyBody(raw, messagesShape)
    const spy = vi.spyOn(JSON, 'parse')
    let fingerprint: LoopFingerprint | null
    try {
      fingerprint = lazy.fingerprint()
      expect(spy.mock.calls.filter(([text]) => /plain tool output|Reading it|coding agent|Fix the build/.test(String(text)))).toEqual([])
    } finally {
      spy.mockRestore()
    }
    expect(fingerprint).toEqual(fingerprintRequest(messagesShape, JSON.parse(raw.toString()) as Json))
  })

  it('keeps the fingerprints of bench agent requests, lazily read and parsed (fingerprints a previous release shares in the store)', async () => {
    // Issue 12: values of the build they were pinned on; a change here splits every conversation's loop count
    // between two releases sharing a store (src/loop/README.md).
    const fixed: Array<['chat' | 'anthropic', number, number, string, string]> = [
      ['chat', 32768, 0, '45bc9913c34cebe4', '3c147cb495d449e5'],
      ['chat', 32768, 5, '45bc9913c34cebe4', '9d79997b92dd5d52'],
      ['chat', 131072, 2, '45bc9913c34cebe4', '2631c855970b5e6e'],
      ['anthropic', 32768, 0, '8a351c7b2cf7b316', '500e91a29a05a5de'],
      ['anthropic', 32768, 5, '8a351c7b2cf7b316', '838207c292b96993'],
      ['anthropic', 131072, 2, '8a351c7b2cf7b316', '4753c93849f7fde7'],
    ]
    for (const [shape, bytes, step, conversation, stepHash] of fixed) {
      const raw = Buffer.from(agentBody({ bytes, step, shape }))
      const expected = { conversation, step: stepHash }
      expect((await readLazyBody(raw, messagesShape)).fingerprint(), `${shape} ${bytes} ${step} lazy`).toEqual(expected)
      expect((await readParsedBody(raw, messagesShape)).fingerprint(), `${shape} ${bytes} ${step} parsed`).toEqual(expected)
    }
  })

  it('tells long results apart by length and by their head, middle and tail', () => {
    const big = 'x'.repeat(5_000_000)
    const body = (result: string): Json => ({ messages: [USER, ...toolExchange('c', '{}', result)] })
    const base = fp(messagesShape, body(big)).step
    expect(fp(messagesShape, body(`${big}y`)).step).not.toBe(base)
    expect(fp(messagesShape, body(`y${big.slice(1)}`)).step).not.toBe(base)
    expect(fp(messagesShape, body(`${big.slice(0, -1)}y`)).step).not.toBe(base)
    expect(fp(messagesShape, body(`${big.slice(0, 2_500_000)}y${big.slice(2_500_001)}`)).step).not.toBe(base)
  })
})

describe('ProviderAdapter.loopShape', () => {
  const openai = createOpenAiAdapter({ baseUrl: 'https://openai.test', apiKey: null })
  const azure = createAzureAdapter({ endpoint: 'https://res.openai.azure.com', apiKey: null })
  const mistral = createMistralAdapter({ baseUrl: 'https://mistral.test', apiKey: null })
  const gemini = createGeminiAdapter({ baseUrl: 'https://gemini.test', apiKey: null })
  const bedrock = createBedrockAdapter({ baseUrl: 'https://bedrock.test', apiKey: null, aws: null, region: 'us-east-1' })
  const shapeOf = (adapter: ProviderAdapter, path: string) => {
    const route = adapter.findRoute('POST', path, new URLSearchParams())
    if (route === null) throw new Error(`no route ${path}`)
    return adapter.loopShape?.(route) ?? null
  }

  it.each([
    ['openai chat', openai, '/v1/chat/completions', messagesShape],
    ['openai responses', openai, '/v1/responses', responsesShape],
    ['openai embeddings', openai, '/v1/embeddings', null],
    ['azure chat', azure, '/openai/deployments/gpt4o/chat/completions', messagesShape],
    ['azure embeddings', azure, '/openai/deployments/emb/embeddings', null],
    ['mistral chat', mistral, '/v1/chat/completions', messagesShape],
    ['mistral fim', mistral, '/v1/fim/completions', null],
    ['gemini generate', gemini, '/v1beta/models/gemini-2.5-flash:generateContent', geminiShape],
    ['gemini embed', gemini, '/v1beta/models/text-embedding-004:embedContent', null],
    ['bedrock converse', bedrock, '/model/amazon.nova-pro-v1%3A0/converse-stream', messagesShape],
    ['bedrock titan embed', bedrock, '/model/amazon.titan-embed-text-v2%3A0/invoke', null],
  ] as const)('%s', (_name, adapter, path, expected) => {
    expect(shapeOf(adapter, path)).toBe(expected)
  })

  it('reads Bedrock InvokeModel bodies as messages, else as a bare prompt', () => {
    const invoke = shapeOf(bedrock, '/model/meta.llama3-70b-instruct-v1%3A0/invoke')
    expect(invoke).not.toBeNull()
    const claude = fingerprintRequest(invoke, { anthropic_version: 'bedrock-2023-05-31', messages: [{ role: 'user', content: 'hi' }] })
    expect(claude).toEqual(fingerprintRequest(messagesShape, { messages: [{ role: 'user', content: 'hi' }] }))
    const llama = (prompt: string, temperature: number) => fingerprintRequest(invoke, { prompt, temperature })
    expect(llama('<|begin_of_text|>hi', 0.1)).toEqual(llama('<|begin_of_text|>hi', 0.9))
    expect(llama('<|begin_of_text|>hi', 0.1)?.step).not.toBe(llama('<|begin_of_text|>ho', 0.1)?.step)
  })
})
