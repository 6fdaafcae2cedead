import { describe, expect, it, vi } from 'vitest'
import { createAnthropicAdapter } from '../../src/providers/anthropic.js'
import { createBedrockAdapter } from '../../src/providers/bedrock.js'
import type { Json } from '../../src/providers/body.js'
import { createGeminiAdapter } from '../../src/providers/gemini.js'
import { anthropicReferencedInput, bedrockReferencedInput, compatReferencedInput, geminiReferencedInput } from '../../src/providers/hosted-tools.js'
import type { ProviderAdapter, RouteMatch } from '../../src/providers/types.js'
import { LAZY_MIN_BYTES, readLazyBody, readParsedBody } from '../../src/proxy/request-body.js'
import { mediaParts, NOTHING_SCANNED, REFERENCED_CONTEXT_TOKENS, scanBody } from '../../src/tokens/bound.js'

const responses = { operation: 'responses', pathModel: null, pathStream: null }
const chat = { operation: 'chat', pathModel: null, pathStream: null }

describe('content the provider fetches itself', () => {
  it.each([
    [{ input: [{ content: [{ type: 'input_file', file_id: 'file-1' }] }] }, true],
    [{ input: [{ content: [{ type: 'input_file', file_url: 'https://x/y.pdf' }] }] }, true],
    [{ input: [{ content: [{ type: 'input_file', file_data: 'data:application/pdf;base64,AAAA' }] }] }, false],
    [{ messages: [{ content: [{ type: 'file', file: { file_id: 'file-1' } }] }] }, true],
    [{ messages: [{ content: [{ type: 'document', source: { type: 'url', url: 'https://x' } }] }] }, true],
    [{ messages: [{ content: [{ type: 'document', source: { type: 'base64', data: 'AAAA' } }] }] }, false],
    [{ messages: [{ content: [{ type: 'image', source: { type: 'file', file_id: 'f' } }] }] }, true],
    [{ messages: [{ content: [{ type: 'container_upload', file_id: 'f' }] }] }, true],
    [{ messages: [{ content: [{ video: { format: 'mp4', source: { s3Location: { uri: 's3://b/v.mp4' } } } }] }] }, true],
    [{ messages: [{ content: [{ type: 'document_url', document_url: 'https://x' }] }] }, true],
    [{ messages: [{ role: 'user', content: 'file_id file_url s3Location' }] }, false],
  ])('%j → %s', async (body, expected) => {
    const scan = await scanBody(body)
    expect(scan.fetchesContent).toBe(expected)
    // The same walk counts media parts as mediaParts does.
    expect(scan.mediaParts).toBe(mediaParts(body))
  })

  it.each([
    [{ contents: [{ parts: [{ fileData: { fileUri: 'https://f/1' } }] }] }, true],
    [{ contents: [{ parts: [{ text: 'x' }, { file_data: { file_uri: 'https://f/1' } }] }] }, true],
    [{ contents: [{ parts: [{ inlineData: { mimeType: 'image/png', data: 'AA' } }] }] }, false],
    [{ contents: [{ parts: [{ text: 'fileData file_data', fileData: 'not an object' }] }] }, false],
  ])('Gemini uploaded files: %j → %s', async (body, expected) => {
    expect((await scanBody(body)).fileData).toBe(expected)
  })

  it('a body too large to walk is assumed to fetch content, and its media parts are unknown', async () => {
    expect(await scanBody({ a: [{}, {}, {}] }, 2)).toEqual({ mediaParts: null, fetchesContent: true, fileData: true })
  })

  it('counts a media part once however its search is sliced, and searches what lies inside and beside it', async () => {
    const nested = { type: 'image', source: { type: 'base64', data: 'AA' }, extra: [{ type: 'image_url', image_url: { url: 'u' } }] }
    const body = { messages: [{ content: [nested, { type: 'text', text: 'x' }, { type: 'input_audio', input_audio: { fileData: { fileUri: 'f' } } }] }, { content: [{ image_url: {} }] }] }
    for (const slice of [1, 2, 3, 4096]) {
      expect(await scanBody(body, undefined, slice)).toEqual({ mediaParts: 2, fetchesContent: false, fileData: true })
    }
    expect(mediaParts(body)).toBe(2)
  })

  it('answers a body walked within its first slice at once, and a longer one with a promise', () => {
    expect(scanBody({ messages: [{ role: 'user', content: 'hi' }] })).toEqual({ mediaParts: 0, fetchesContent: false, fileData: false })
    expect(scanBody({ a: [{}, {}, {}] }, undefined, 2)).toBeInstanceOf(Promise)
  })

  it('walks a long transcript in slices: other work runs while it does, and the answer is the same', async () => {
    const body = { messages: Array.from({ length: 200_000 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: [{ type: 'text', text: 'hi' }] })) }
    body.messages.push({ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA' } } as never, { type: 'input_file', file_id: 'f' } as never] })
    let ticks = 0
    const timer = setInterval(() => ticks++, 0)
    const started = performance.now()
    const scan = await scanBody(body)
    const elapsed = performance.now() - started
    clearInterval(timer)
    expect(scan).toEqual({ mediaParts: 2, fetchesContent: true, fileData: false })
    expect(scan.mediaParts).toBe(mediaParts(body))
    // 600,000 objects in slices of 4,096: the event loop ran between slices.
    expect(ticks, `${ticks} timer ticks in ${elapsed.toFixed(0)} ms`).toBeGreaterThanOrEqual(20)
  })
})

describe('hosted tools and tiers', () => {
  it('OpenAI: client tools add nothing; paid tools need max_tool_calls; unpriced tools and tiers are refused', () => {
    expect(compatReferencedInput(responses, { tools: [{ type: 'function', name: 'f' }] })).toEqual({ tokens: 0, toolCalls: {} })
    expect(compatReferencedInput(responses, { max_tool_calls: 4, tools: [{ type: 'web_search' }, { type: 'file_search' }] })).toEqual({
      tokens: REFERENCED_CONTEXT_TOKENS,
      toolCalls: { web_search: 4, file_search: 4 },
    })
    expect(compatReferencedInput(responses, { tools: [{ type: 'mcp', server_url: 'https://x' }] }).tokens).toBe(REFERENCED_CONTEXT_TOKENS)
    expect(compatReferencedInput(responses, { prompt: { id: 'pmpt_1' } }).tokens).toBe(REFERENCED_CONTEXT_TOKENS)
    expect(() => compatReferencedInput(responses, { tools: [{ type: 'web_search' }] })).toThrow(/max_tool_calls/)
    expect(() => compatReferencedInput(responses, { tools: [{ type: 'image_generation' }] })).toThrow(/per-call fee/)
    expect(() => compatReferencedInput(chat, { tools: [{ type: 'web_search' }], max_tool_calls: 2 })).toThrow(/per-call fee/)
    for (const tier of ['priority', 'flex', 'scale', 7]) expect(() => compatReferencedInput(chat, { service_tier: tier })).toThrow(/standard tier/)
    for (const tier of ['auto', 'default', null]) expect(compatReferencedInput(chat, { service_tier: tier }).tokens).toBe(0)
  })

  it('Anthropic: web search per use with max_uses, code execution refused, web fetch and MCP read content, 1M beta refused', () => {
    const search = (maxUses?: number) => ({ tools: [{ type: 'web_search_20250305', name: 'web_search', ...(maxUses === undefined ? {} : { max_uses: maxUses }) }] })
    expect(anthropicReferencedInput(search(3), {})).toEqual({ tokens: REFERENCED_CONTEXT_TOKENS, toolCalls: { web_search: 3 } })
    expect(() => anthropicReferencedInput(search(), {})).toThrow(/max_uses/)
    expect(() => anthropicReferencedInput(search(0), {})).toThrow(/max_uses/)
    expect(() => anthropicReferencedInput({ tools: [{ type: 'code_execution_20250825', name: 'c' }] }, {})).toThrow(/per-call fee/)
    expect(anthropicReferencedInput({ tools: [{ type: 'web_fetch_20250910', name: 'w' }] }, {}).tokens).toBe(REFERENCED_CONTEXT_TOKENS)
    expect(anthropicReferencedInput({ mcp_servers: [{ type: 'url', url: 'https://x' }] }, {}).tokens).toBe(REFERENCED_CONTEXT_TOKENS)
    expect(anthropicReferencedInput({ tools: [{ type: 'bash_20250124', name: 'bash' }, { name: 'mine', input_schema: {} }] }, {}).tokens).toBe(0)
    expect(() => anthropicReferencedInput({}, { 'anthropic-beta': 'context-1m-2025-08-07' })).toThrow(/standard tier/)
  })

  it('Gemini grounding and Bedrock tiers and system tools are refused', () => {
    expect(() => geminiReferencedInput({ tools: [{ google_search: {} }] })).toThrow(/per-call fee/)
    expect(geminiReferencedInput({ tools: [{ codeExecution: {} }, { functionDeclarations: [] }] })).toEqual({ tokens: 0, toolCalls: {} })
    expect(() => bedrockReferencedInput({ performanceConfig: { latency: 'optimized' } }, {})).toThrow(/standard tier/)
    expect(() => bedrockReferencedInput({}, { 'x-amzn-bedrock-service-tier': 'flex' })).toThrow(/standard tier/)
    expect(() => bedrockReferencedInput({ toolConfig: { tools: [{ systemTool: { name: 'nova_grounding' } }] } }, {})).toThrow(/per-call fee/)
    expect(bedrockReferencedInput({ performanceConfig: { latency: 'standard' }, serviceTier: { type: 'default' } }, {})).toEqual({ tokens: 0, toolCalls: {} })
  })
})

// Issue 12: of a lazily read body (LAZY_MIN_BYTES up to 1 MiB) each tool's few members are read from its bytes, the
// tools never parsed. The check is a security one: every verdict (refusal, tokens, paid calls) is the whole parse's.
describe('hosted tools of a lazily read body', () => {
  const DESCRIPTION = 'y'.repeat(300)
  const PAD = `"messages":[{"role":"user","content":"${'x'.repeat(LAZY_MIN_BYTES)}"}]`
  type Check = (body: Json) => unknown
  /** What else the adapter reads from the tools: the input bound, and whether it asks for an exact count. */
  const bound = (adapter: ProviderAdapter, path: string): Check => {
    const route = adapter.findRoute('POST', path, new URLSearchParams()) as RouteMatch
    return (body) => [adapter.boundInputTokens(route, body, Buffer.alloc(0), 1000, NOTHING_SCANNED), adapter.exactInput(route, path, body, 'm', undefined, NOTHING_SCANNED)?.kind ?? null]
  }
  const checks: Record<string, [Check, string, string]> = {
    // Each reader, where its tools lie, and a long client tool (so the tools are read lazily, not parsed at once).
    'openai responses': [(body) => compatReferencedInput(responses, body), 'tools', `{"type":"function","name":"f","description":"${DESCRIPTION}"}`],
    'openai chat': [(body) => compatReferencedInput(chat, body), 'tools', `{"type":"function","function":{"name":"f","description":"${DESCRIPTION}"}}`],
    anthropic: [(body) => anthropicReferencedInput(body, {}), 'tools', `{"name":"f","description":"${DESCRIPTION}","input_schema":{"type":"object"}}`],
    gemini: [(body) => geminiReferencedInput(body), 'tools', `{"functionDeclarations":[{"name":"f","description":"${DESCRIPTION}"}]}`],
    bedrock: [(body) => bedrockReferencedInput(body, {}), 'toolConfig', `{"toolSpec":{"name":"f","description":"${DESCRIPTION}","inputSchema":{"json":{}}}}`],
    'anthropic bound': [bound(createAnthropicAdapter({ baseUrl: 'http://u', apiKey: null }), '/v1/messages'), 'tools', `{"name":"f","description":"${DESCRIPTION}"}`],
    'gemini bound': [bound(createGeminiAdapter({ baseUrl: 'http://u', apiKey: null }), '/v1beta/models/m:generateContent'), 'tools', `{"functionDeclarations":[{"name":"f","description":"${DESCRIPTION}"}]}`],
    'bedrock bound': [bound(createBedrockAdapter({ baseUrl: 'http://u', apiKey: null, aws: null, region: 'us-east-1' }), '/model/m/converse'), 'toolConfig', `{"toolSpec":{"name":"f","description":"${DESCRIPTION}"}}`],
    'bedrock invoke bound': [bound(createBedrockAdapter({ baseUrl: 'http://u', apiKey: null, aws: null, region: 'us-east-1' }), '/model/m/invoke'), 'tools', `{"name":"f","description":"${DESCRIPTION}"}`],
  }
  const verdict = (check: Check, body: Json): unknown => {
    try {
      return check(body)
    } catch (error) {
      return String(error)
    }
  }
  // Tool lists as sent (JSON text: escapes and spacing as a client may write them), with what the whole parse answers.
  const TOOL_LISTS = [
    '{"type":"web_search"}',
    '{"t\\u0079pe":"web_search"}',
    '{"type":"web\\u005fsearch_preview"}',
    '{"type":"file_search"},{"type":"mcp","server_url":"https://x"}',
    '{"function":{"type":"web_search"},"type":"function"}',
    '{"function":{"type":"web_search"}}',
    '{"type":{"type":"web_search"}}',
    '{"type":1},{"type":null},"web_search",["web_search"],null,7',
    '{"__proto__":{"type":"web_search"}}',
    '{"__proto__":{"type":"web_search"},"type":"image_generation"}',
    '{"type":"code_execution_20250825","name":"c"}',
    '{"name":"s","type":"web_search_20250305","max_uses":3},{"type":"web_search_20250305","name":"t","max_\\u0075ses":2}',
    '{"type":"web_search_20250305","max_uses":"3"}',
    '{"type":"web_search_20250305","input_schema":{"max_uses":3}}',
    '{"type":"web_fetch_20250910"},{"type":"mcp_toolset"}',
    '{"googleSearch":{}}',
    '{"google_search":null,"codeExecution":{}}',
    '{"functionDeclarations":[{"googleSearch":{}}]}',
    '{"goo\\u0067leMaps":{"enableWidget":true}}',
    '{"enterpriseWebSearch":0,"googleSearchRetrieval":{}}',
    '{"systemTool":{"name":"nova_grounding"}}',
    '{"toolSpec":{"systemTool":{}}},{"systemTool":null}',
    '{"system\\u0054ool":{}}',
    '{"type":"bash_20250124","name":"bash"},{"type":"text_editor_20250728"},{"type":"custom","name":"c"},{"type":"computer_20250124"},{"type":"memory_20250818"}',
    '{"codeExecution":{}},{"urlContext":null},{"function_declarations":[]},{"functionDeclarations":null,"x":1}',
    '{"functionDeclarations":[{"name":"a"}],"__proto__":{}}',
  ]
  const cases = Object.keys(checks).flatMap((name) => TOOL_LISTS.flatMap((list) => [[name, `[${list}]`], [name, ` [ ${list.replaceAll(',', ' ,\n')} ] `]]))

  it.each(cases)('%s, tools %s: the verdict of the whole parse, the tools unparsed', async (name, list) => {
    const [check, key, long] = checks[name] as [Check, string, string]
    const members = (tools: string) => (key === 'tools' ? `"tools":${tools.replace(/\]\s*$/, `,${long}]`)}` : `"toolConfig":{"toolChoice":{"auto":{}},"tools":${tools.replace(/\]\s*$/, `,${long}]`)}}`)
    const raw = Buffer.from(`{"model":"m","max_tool_calls":3,${members(list)},${PAD}}`)
    const small = Buffer.from(`{"model":"m","max_tool_calls":3,${members(list)}}`)
    const lazy = readLazyBody(raw, null)
    if (lazy instanceof Promise) throw new Error('read in one slice')
    expect(Object.getOwnPropertyDescriptor(lazy.json, key)?.get).toBeTypeOf('function')
    const expected = verdict(check, JSON.parse(raw.toString('utf8')) as Json)
    const spy = vi.spyOn(JSON, 'parse')
    try {
      expect(verdict(check, lazy.json)).toEqual(expected)
      // The verdict came from the bytes: neither the tools nor the long one among them were parsed.
      expect(spy.mock.calls.filter(([text]) => String(text).includes(DESCRIPTION))).toEqual([])
    } finally {
      spy.mockRestore()
    }
    // A body under LAZY_MIN_BYTES is parsed whole, and answered from its value: the same verdict.
    expect(verdict(check, (await readParsedBody(small, null)).json)).toEqual(expected)
  })

  it('reads a tools key spelled with escapes as JSON.parse does', () => {
    const raw = Buffer.from(`{"model":"m","t\\u006fols":[{"type":"function","description":"${DESCRIPTION}"},{"type":"web_search"}],${PAD}}`)
    const read = readLazyBody(raw, null)
    if (read instanceof Promise) throw new Error('read in one slice')
    expect(Object.getOwnPropertyDescriptor(read.json, 'tools')?.get).toBeTypeOf('function')
    expect(() => compatReferencedInput(chat, JSON.parse(raw.toString('utf8')) as Json)).toThrow(/per-call fee/)
    expect(() => compatReferencedInput(chat, read.json)).toThrow(/per-call fee/)
  })

  it('answers from the tools as the adapter left them once read or written', () => {
    const raw = Buffer.from(`{"model":"m","tools":[{"type":"function","description":"${DESCRIPTION}"}],${PAD}}`)
    const read = readLazyBody(raw, null)
    if (read instanceof Promise) throw new Error('read in one slice')
    expect(compatReferencedInput(chat, read.json)).toEqual({ tokens: 0, toolCalls: {} })
    ;(read.json.tools as Json[]).push({ type: 'web_search' })
    expect(() => compatReferencedInput(chat, read.json)).toThrow(/per-call fee/)
    read.json.tools = [{ type: 'mcp' }]
    expect(compatReferencedInput(chat, read.json)).toEqual({ tokens: REFERENCED_CONTEXT_TOKENS, toolCalls: {} })
  })
})
