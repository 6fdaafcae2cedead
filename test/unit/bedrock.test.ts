import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import { EventStreamCodec } from '@smithy/core/event-streams'
import { SignatureV4 } from '@smithy/signature-v4'
import { describe, expect, it } from 'vitest'
import { byteCounter, type ByteCounter } from '../support/counting.js'
import { ProxyError } from '../../src/errors.js'
import { createBedrockAdapter } from '../../src/providers/bedrock.js'
import type { ErrorInfo, RouteMatch, StreamParser, UpstreamCredential } from '../../src/providers/types.js'
import { PRIMING_TOKENS } from '../../src/tokens/bound.js'
import { Sha256 } from '../support/fake-bedrock.js'
import { countRequest } from '../support/count-request.js'

const KEY = `lp-${'A1b2C3'.repeat(7)}x`
const AWS_CRED: UpstreamCredential = { kind: 'aws', accessKeyId: 'AKIDUPSTREAM', secretAccessKey: 'upstream-secret', region: 'eu-west-1' }

const adapter = createBedrockAdapter({ baseUrl: 'https://bedrock.fake.test', apiKey: null, aws: null, region: 'us-east-1' })

// Parser tests see what each parser counts through a byte counter; the real counter is tested in tokens tests.
let counter: ByteCounter = byteCounter()
const newParser = (...args: [RouteMatch]): StreamParser => adapter.createStreamParser(args[0], (counter = byteCounter()))

function fixture(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/bedrock/${name}`, import.meta.url))
}

function route(path: string): RouteMatch {
  const found = adapter.findRoute('POST', path)
  if (found === null) throw new Error(`no route for ${path}`)
  return found
}

describe('routes', () => {
  it.each([
    ['/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke', 'invoke', 'anthropic.claude-3-haiku-20240307-v1:0', false],
    ['/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke-with-response-stream', 'invoke-stream', 'us.anthropic.claude-3-5-haiku-20241022-v1:0', true],
    ['/model/amazon.nova-pro-v1:0/converse', 'converse', 'amazon.nova-pro-v1:0', false],
    [
      '/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/converse-stream',
      'converse-stream',
      'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0',
      true,
    ],
  ])('POST %s is %s of %s (stream %s)', (path, operation, model, stream) => {
    expect(adapter.findRoute('POST', path)).toEqual({ operation, pathModel: model, pathStream: stream })
  })

  it.each([
    ['POST', '/model/x/invoke-with-bidirectional-stream'],
    ['POST', '/model/x/count-tokens'],
    ['POST', '/async-invoke'],
    ['POST', '/guardrail/g1/version/1/apply'],
    ['POST', '/model/a/b/invoke'],
    ['POST', '/model/%2E%2E/invoke'],
    ['POST', '/model/x/constructor'],
    ['GET', '/model/x/invoke'],
  ])('%s %s is not metered', (method, path) => {
    expect(adapter.findRoute(method, path)).toBeNull()
  })

  it.each([
    // The runtime host has no model reads; its async-job reads list the whole account's jobs (issue 13).
    ['GET', '/async-invoke', false],
    ['GET', '/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aasync-invoke%2Fabc', false],
    ['POST', '/model/anthropic.claude-3-haiku-20240307-v1%3A0/count-tokens', true],
    ['POST', '/async-invoke', false],
    ['POST', '/model/x/invoke', false],
  ])('%s %s free: %s', (method, path, free) => {
    expect(adapter.isFree(method, path)).toBe(free)
  })

  it('a model id that is not valid percent-encoding is a 400, not a crash', () => {
    expect(() => adapter.findRoute('POST', '/model/%E0%A4%A/invoke')).toThrow(ProxyError)
  })
})

describe('the proxy key', () => {
  const sigv4 = (akid: string) => `AWS4-HMAC-SHA256 Credential=${akid}/20260314/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`
  it.each([
    ['a Bedrock API key (Bearer)', { authorization: `Bearer ${KEY}` }, KEY],
    ['the access key id of a SigV4 header', { authorization: sigv4(KEY) }, KEY],
    ['a real access key id (refused later as not a proxy key)', { authorization: sigv4('AKIDEXAMPLE') }, 'AKIDEXAMPLE'],
    ['no Authorization', { 'x-api-key': KEY }, null],
    ['a malformed SigV4 header', { authorization: 'AWS4-HMAC-SHA256 Signature=abc' }, null],
  ] as Array<[string, IncomingHttpHeaders, string | null]>)('%s', (_name, headers, key) => {
    expect(adapter.readKey(headers, new URLSearchParams())).toBe(key)
  })

  it('under path auth a Bedrock API key is the upstream credential; a SigV4 header carries none', () => {
    expect(adapter.readClientCredential({ authorization: 'Bearer ABSKreal' }, new URLSearchParams())).toEqual({ kind: 'apiKey', value: 'ABSKreal' })
    expect(adapter.readClientCredential({ authorization: sigv4('AKIAREAL') }, new URLSearchParams())).toBeNull()
  })

  it.each([
    ['a Bedrock API key first', { apiKey: 'ABSKserver', aws: { accessKeyId: 'AK', secretAccessKey: 'S', sessionToken: null } }, { kind: 'apiKey', value: 'ABSKserver' }],
    ['else the AWS_* credentials', { apiKey: null, aws: { accessKeyId: 'AK', secretAccessKey: 'S', sessionToken: 'T' } }, { kind: 'aws', accessKeyId: 'AK', secretAccessKey: 'S', sessionToken: 'T', region: 'ap-northeast-1' }],
    ['else none', { apiKey: null, aws: null }, null],
  ])('server-held credential: %s', (_name, held, expected) => {
    const a = createBedrockAdapter({ baseUrl: 'https://x.test', region: 'ap-northeast-1', ...held })
    expect(a.defaultCredential()).toEqual(expected)
  })
})

describe('request facts', () => {
  const invoke = (model: string) => route(`/model/${encodeURIComponent(model)}/invoke`)
  it.each([
    ['Anthropic messages', 'us.anthropic.claude-3-5-haiku-20241022-v1:0', { anthropic_version: 'bedrock-2023-05-31', max_tokens: 300, messages: [] }, 300, 1],
    ['Anthropic text completions', 'anthropic.claude-v2:1', { prompt: '\n\nHuman: hi\n\nAssistant:', max_tokens_to_sample: 200 }, 200, 1],
    ['Anthropic without a cap', 'anthropic.claude-3-haiku-20240307-v1:0', { messages: [] }, null, 1],
    ['Nova maxTokens', 'amazon.nova-lite-v1:0', { messages: [], inferenceConfig: { maxTokens: 512 } }, 512, 1],
    ['Nova max_new_tokens', 'amazon.nova-micro-v1:0', { messages: [], inferenceConfig: { max_new_tokens: 256 } }, 256, 1],
    ['Titan text', 'amazon.titan-text-express-v1', { inputText: 'hi', textGenerationConfig: { maxTokenCount: 128 } }, 128, 1],
    ['Titan embeddings', 'amazon.titan-embed-text-v2:0', { inputText: 'hello' }, 0, 1],
    ['Cohere embeddings', 'cohere.embed-english-v3', { texts: ['a'], input_type: 'search_document' }, 0, 1],
    ['Llama', 'meta.llama3-1-70b-instruct-v1:0', { prompt: 'hi', max_gen_len: 64 }, 64, 1],
    ['Mistral', 'mistral.mistral-large-2407-v1:0', { messages: [], max_tokens: 99 }, 99, 1],
    ['Cohere Command with generations', 'cohere.command-text-v14', { prompt: 'hi', max_tokens: 50, num_generations: 3 }, 150, 3],
    ['AI21 Jamba with n', 'ai21.jamba-1-5-mini-v1:0', { messages: [], max_tokens: 40, n: 2 }, 80, 2],
    ['AI21 Jurassic', 'ai21.j2-ultra-v1', { prompt: 'hi', maxTokens: 70 }, 70, 1],
    ['gpt-oss', 'openai.gpt-oss-120b-1:0', { messages: [], max_completion_tokens: 77 }, 77, 1],
    ['an ARN of a Llama profile', 'arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0', { prompt: 'x', max_gen_len: 12 }, 12, 1],
  ])('%s: invoke reads the cap', (_name, model, body, maxOutputTokens, choices) => {
    expect(adapter.describe(invoke(model), body)).toEqual({ model, stream: false, maxOutputTokens, choices })
  })

  it.each([
    [{ messages: [], inferenceConfig: { maxTokens: 1000 } }, 1000],
    [{ messages: [] }, null],
    [{ messages: [], additionalModelRequestFields: { top_k: 5 } }, null],
    // A native cap in additionalModelRequestFields may reach the model: the larger cap bounds the output.
    [{ messages: [], inferenceConfig: { maxTokens: 100 }, additionalModelRequestFields: { max_tokens: 5000 } }, 5000],
    [{ messages: [], inferenceConfig: { maxTokens: 100 }, additionalModelRequestFields: { max_tokens: 5 } }, 100],
  ])('converse reads inferenceConfig.maxTokens: %j', (body, maxOutputTokens) => {
    expect(adapter.describe(route('/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream'), body)).toEqual({
      model: 'anthropic.claude-3-haiku-20240307-v1:0',
      stream: true,
      maxOutputTokens,
      choices: 1,
    })
  })

  it.each([
    ['/model/amazon.nova-lite-v1%3A0/converse', { inferenceConfig: { maxTokens: '10' } }],
    ['/model/amazon.nova-lite-v1%3A0/converse', { inferenceConfig: { maxTokens: 0 } }],
    ['/model/anthropic.claude-v2/invoke', { max_tokens: 1.5 }],
    ['/model/meta.llama3-8b-instruct-v1%3A0/invoke', { max_gen_len: -1 }],
  ])('%s refuses %j as invalid_request', (path, body) => {
    expect(() => adapter.describe(route(path), body)).toThrow(expect.objectContaining({ code: 'invalid_request' }))
  })

  it('bounds input by body bytes and media parts, the tool-use overhead only with tools (none for embeddings)', async () => {
    const body = { messages: [{ role: 'user', content: [{ text: 'hi' }, { image: { format: 'png', source: { bytes: 'AAAA' } } }] }] }
    const raw = Buffer.from(JSON.stringify(body))
    expect(adapter.boundInputTokens(route('/model/amazon.nova-pro-v1%3A0/converse'), body, raw, 3000)).toBe(raw.length + 3000)
    const tools = { ...body, toolConfig: { tools: [{ toolSpec: { name: 'f', inputSchema: { json: {} } } }] } }
    const toolsRaw = Buffer.from(JSON.stringify(tools))
    expect(adapter.boundInputTokens(route('/model/amazon.nova-pro-v1%3A0/converse'), tools, toolsRaw, 3000)).toBe(toolsRaw.length + 3000 + PRIMING_TOKENS)
    const embed = { inputText: 'hello world' }
    const embedRaw = Buffer.from(JSON.stringify(embed))
    expect(adapter.boundInputTokens(route('/model/amazon.titan-embed-text-v2%3A0/invoke'), embed, embedRaw, 2000)).toBe(embedRaw.length)
    expect(adapter.exactInput(route('/model/amazon.titan-embed-text-v2%3A0/invoke'), '/model/amazon.titan-embed-text-v2%3A0/invoke', embed, 'amazon.titan-embed-text-v2:0')).toBeNull()
    const capped = { ...body, inferenceConfig: { maxTokens: 5 } }
    const how = adapter.exactInput(route('/model/amazon.nova-pro-v1%3A0/converse'), '/model/amazon.nova-pro-v1%3A0/converse', capped, 'amazon.nova-pro-v1:0')
    expect(how).toMatchObject({ kind: 'endpoint', path: '/model/amazon.nova-pro-v1%3A0/count-tokens' })
    if (how?.kind !== 'endpoint') throw new Error('endpoint expected')
    expect(await countRequest(how.body, capped)).toEqual({ input: { converse: { messages: body.messages } } })
    expect(how.read({ inputTokens: 17 })).toBe(17)
  })
})

describe('prepareBody lowers the output cap where the family reads it', () => {
  it.each([
    ['/model/amazon.nova-pro-v1%3A0/converse', { messages: [] }, 1, { messages: [], inferenceConfig: { maxTokens: 40 } }],
    ['/model/amazon.nova-pro-v1%3A0/converse-stream', { inferenceConfig: { maxTokens: 900, temperature: 0.2 } }, 1, { inferenceConfig: { maxTokens: 40, temperature: 0.2 } }],
    [
      '/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse',
      { inferenceConfig: { maxTokens: 900 }, additionalModelRequestFields: { max_tokens: 900, top_k: 3 } },
      1,
      { inferenceConfig: { maxTokens: 40 }, additionalModelRequestFields: { max_tokens: 40, top_k: 3 } },
    ],
    ['/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke', { max_tokens: 900 }, 1, { max_tokens: 40 }],
    ['/model/anthropic.claude-v2/invoke', { max_tokens_to_sample: 900 }, 1, { max_tokens_to_sample: 40 }],
    ['/model/amazon.nova-lite-v1%3A0/invoke', { inferenceConfig: { max_new_tokens: 900 } }, 1, { inferenceConfig: { max_new_tokens: 40 } }],
    ['/model/amazon.nova-lite-v1%3A0/invoke', {}, 1, { inferenceConfig: { maxTokens: 40 } }],
    ['/model/amazon.titan-text-express-v1/invoke', { inputText: 'x' }, 1, { inputText: 'x', textGenerationConfig: { maxTokenCount: 40 } }],
    ['/model/meta.llama3-8b-instruct-v1%3A0/invoke', { max_gen_len: 900 }, 1, { max_gen_len: 40 }],
    ['/model/cohere.command-text-v14/invoke', { max_tokens: 900, num_generations: 4 }, 4, { max_tokens: 10, num_generations: 4 }],
  ])('%s %j', (path, body, choices, expected) => {
    const r = route(path)
    const facts = { ...adapter.describe(r, body as Record<string, unknown>), choices }
    expect(adapter.prepareBody(r, body as Record<string, unknown>, facts, 40)).toBe(true)
    expect(body).toEqual(expected)
  })

  it('leaves the body alone without a lowered cap, and embeddings always', () => {
    const body = { max_tokens: 900 }
    const r = route('/model/mistral.mistral-large-2407-v1%3A0/invoke')
    expect(adapter.prepareBody(r, body, adapter.describe(r, body), null)).toBe(false)
    const embed = { inputText: 'x' }
    const e = route('/model/amazon.titan-embed-text-v2%3A0/invoke')
    expect(adapter.prepareBody(e, embed, adapter.describe(e, embed), 10)).toBe(false)
    expect(body).toEqual({ max_tokens: 900 })
    expect(embed).toEqual({ inputText: 'x' })
  })
})


describe('upstream request', () => {
  const path = '/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke'
  const clientHeaders: IncomingHttpHeaders = {
    ':method': 'POST',
    ':authority': 'localhost:8080',
    authorization: `AWS4-HMAC-SHA256 Credential=${KEY}/20260314/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=${'a'.repeat(64)}`,
    'x-amz-date': '20260314T000000Z',
    'x-amz-security-token': 'client-token',
    'x-amz-content-sha256': 'deadbeef',
    'x-amz-user-agent': 'aws-sdk-js/3',
    'amz-sdk-invocation-id': 'c9fba34a',
    'amz-sdk-request': 'attempt=1; max=3',
    'content-type': 'application/json',
    accept: 'application/json',
    'x-amzn-bedrock-trace': 'ENABLED',
    'x-loopers-aws-secret-key': 'upstream-secret',
    'user-agent': 'aws-sdk-js/3.1163.0',
    'content-length': '42',
  }
  const body = Buffer.from('{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"héllo"}]}')
  const build = (credential: UpstreamCredential | null, query = '', a = adapter, p = path) =>
    a.buildUpstream({ route: route(p), path: p, query, headers: clientHeaders, credential, body })

  it.each([
    ['a Bedrock API key', { kind: 'apiKey', value: 'ABSKupstream' } as UpstreamCredential, 'Bearer ABSKupstream'],
    ['no credential', null, undefined],
  ])('%s: forwards the path as encoded, with only that credential', (_name, credential, authorization) => {
    const upstream = build(credential)
    expect(upstream.url).toBe(`https://bedrock.fake.test${path}`)
    expect(upstream.headers.authorization).toBe(authorization)
    expect(Object.keys(upstream.headers).sort()).toEqual(
      ['accept', 'accept-encoding', 'content-type', 'user-agent', 'x-amzn-bedrock-trace', ...(authorization ? ['authorization'] : [])].sort(),
    )
    expect(JSON.stringify(upstream)).not.toContain(KEY)
    expect(upstream.body).toBe(body)
  })

  it('signs with SigV4 (service bedrock, region of the credential) in a way the AWS SDK signer reproduces', async () => {
    const upstream = build({ ...AWS_CRED, sessionToken: 'upstream-session' } as UpstreamCredential)
    const h = upstream.headers
    expect(h.host).toBe('bedrock.fake.test')
    expect(h['x-amz-security-token']).toBe('upstream-session')
    expect(h['x-amz-content-sha256']).toBe(createHash('sha256').update(body).digest('hex'))
    expect(h.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDUPSTREAM\/\d{8}\/eu-west-1\/bedrock\/aws4_request, SignedHeaders=accept;accept-encoding;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amzn-bedrock-trace, Signature=[0-9a-f]{64}$/)
    expect(Object.keys(h).filter((n) => n.startsWith('amz-sdk-') || n.startsWith('x-loopers-') || n === 'x-amz-user-agent')).toEqual([])
    expect(JSON.stringify(upstream)).not.toContain(KEY)

    const { authorization, ...unsigned } = h
    const signer = new SignatureV4({
      credentials: { accessKeyId: 'AKIDUPSTREAM', secretAccessKey: 'upstream-secret', sessionToken: 'upstream-session' },
      region: 'eu-west-1',
      service: 'bedrock',
      sha256: Sha256,
    })
    const date = h['x-amz-date']!.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z')
    const url = new URL(upstream.url)
    const theirs = await signer.sign(
      { method: 'POST', protocol: 'https:', hostname: url.hostname, path: url.pathname, query: {}, headers: unsigned, body },
      { signingDate: new Date(date) },
    )
    expect(authorization).toBe(theirs.headers.authorization)
  })

  it('drops presigned-URL parameters from the query and signs the query it keeps', () => {
    const upstream = build(AWS_CRED, `X-Amz-Credential=${KEY}%2F20260314&x-amz-signature=abc&trace=1`)
    expect(upstream.url).toBe(`https://bedrock.fake.test${path}?trace=1`)
    expect(upstream.url).not.toContain(KEY)
  })

  it('follows the credential region on the default regional AWS endpoint, and keeps a custom base URL', () => {
    const regional = createBedrockAdapter({ baseUrl: 'https://bedrock-runtime.us-east-1.amazonaws.com', apiKey: null, aws: null, region: 'us-east-1' })
    expect(build(AWS_CRED, '', regional).url).toBe(`https://bedrock-runtime.eu-west-1.amazonaws.com${path}`)
    expect(build({ kind: 'apiKey', value: 'k' }, '', regional).url).toBe(`https://bedrock-runtime.us-east-1.amazonaws.com${path}`)
    expect(build(AWS_CRED).url).toBe(`https://bedrock.fake.test${path}`)
  })

  it('signs CountTokens, the one free operation, as the POST it is', () => {
    const count = adapter.buildUpstream({ route: { operation: 'free', pathModel: null, pathStream: null }, path: '/model/x/count-tokens', query: 'a=1', headers: {}, credential: AWS_CRED, body: Buffer.from('{}') })
    expect(count.url).toBe('https://bedrock.fake.test/model/x/count-tokens?a=1')
    expect(String(count.headers.authorization)).toMatch(/^AWS4-HMAC-SHA256 Credential=/)
  })
})

describe('usage', () => {
  const json = (name: string): unknown => JSON.parse(fixture(name).toString('utf8'))
  it.each([
    ['invoke-anthropic.json', '/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke', { inputTokens: 21, outputTokens: 11, cachedInputTokens: 0, cacheWriteTokens: 512 }],
    ['invoke-nova.json', '/model/amazon.nova-lite-v1%3A0/invoke', { inputTokens: 9, outputTokens: 8, cachedInputTokens: 0, cacheWriteTokens: 0 }],
    ['invoke-llama.json', '/model/meta.llama3-8b-instruct-v1%3A0/invoke', { inputTokens: 18, outputTokens: 8 }],
    ['invoke-titan-embed.json', '/model/amazon.titan-embed-text-v2%3A0/invoke', { inputTokens: 6, outputTokens: 0 }],
    ['invoke-mistral.json', '/model/mistral.mistral-large-2407-v1%3A0/invoke', null],
    ['converse.json', '/model/amazon.nova-lite-v1%3A0/converse', { inputTokens: 14, outputTokens: 9, cachedInputTokens: 256, cacheWriteTokens: 0 }],
  ])('%s body', (name, path, usage) => {
    expect(adapter.usageFromBody(route(path), json(name))).toEqual(usage)
  })

  it('InvokeModel headers give usage for every family (input excludes cache reads and writes)', () => {
    const r = route('/model/mistral.mistral-large-2407-v1%3A0/invoke')
    expect(
      adapter.usageFromHeaders?.(r, {
        'x-amzn-bedrock-input-token-count': '31',
        'x-amzn-bedrock-output-token-count': '17',
        'x-amzn-bedrock-cache-read-input-token-count': '1024',
        'x-amzn-bedrock-cache-write-input-token-count': '0',
      }),
    ).toEqual({ inputTokens: 31, outputTokens: 17, cachedInputTokens: 1024, cacheWriteTokens: 0 })
    expect(adapter.usageFromHeaders?.(r, { 'content-type': 'application/json' })).toBeNull()
    expect(adapter.usageFromHeaders?.(r, { 'x-amzn-bedrock-input-token-count': 'many' })).toBeNull()
  })
})

/** Feeds `parts` to a fresh parser; returns it with the bytes it released. */
function run(r: RouteMatch, parts: Buffer[]): { parser: StreamParser; out: Buffer } {
  const parser = newParser(r)
  const out = [...parts.map((p) => parser.push(p)), parser.flush()]
  return { parser, out: Buffer.concat(out) }
}

const INVOKE_STREAM = '/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke-with-response-stream'
const CONVERSE_STREAM = '/model/amazon.nova-pro-v1%3A0/converse-stream'

describe('stream parsers, fed fixtures split at every byte boundary', () => {
  it.each([
    [
      'invoke-anthropic-stream.bin',
      INVOKE_STREAM,
      { inputTokens: 412, outputTokens: 58, cachedInputTokens: 1536, cacheWriteTokens: 0 },
      'Je vais vérifier la météo à Zürich — 天気 ☀️get_weather{"city": "Zürich", "unit": "celsius"}',
    ],
    ['invoke-llama-stream.bin', '/model/meta.llama3-1-70b-instruct-v1%3A0/invoke-with-response-stream', { inputTokens: 27, outputTokens: 8, cachedInputTokens: 0, cacheWriteTokens: 0 }, 'The capital of France is Paris.'],
    [
      'converse-stream.bin',
      CONVERSE_STREAM,
      { inputTokens: 305, outputTokens: 31, cachedInputTokens: 128, cacheWriteTokens: 0 },
      'Let me look that up for you — ça marche.lookup_order{"order_id": "A-1042"}',
    ],
  ])('%s', (name, path, usage, text) => {
    const bytes = fixture(name)
    const r = route(path)
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { parser, out } = run(r, [bytes.subarray(0, cut), bytes.subarray(cut)])
      expect(out.equals(bytes)).toBe(true)
      expect(parser.reported()).toEqual(usage)
      expect(counter.text()).toBe(text)
      expect(counter.tokens()).toBe(Buffer.byteLength(text))
    }
    const bytewise = run(r, [...bytes].map((b) => Buffer.from([b])))
    expect(bytewise.parser.reported()).toEqual(usage)
    expect(counter.text()).toBe(text)
    expect(bytewise.parser.outputTokens()).toBe(usage.outputTokens)
    expect(bytewise.parser.outputBound()).toBe(usage.outputTokens)
  })

  it('reports input before the end but no output count until the final one (so the meter counts deltas)', () => {
    const bytes = fixture('invoke-anthropic-stream.bin')
    const parser = newParser(route(INVOKE_STREAM))
    // Everything up to the end of the third frame: message_start, content_block_start, one text delta.
    let end = 0
    for (let i = 0; i < 3; i++) end += bytes.readUInt32BE(end)
    parser.push(bytes.subarray(0, end))
    expect(parser.reported()).toEqual({ inputTokens: 412, cachedInputTokens: 1536, cacheWriteTokens: 0 })
    expect(counter.tokens()).toBe(Buffer.byteLength('Je vais vérifier'))
    // No final count yet: the meter's figure is the counter's.
    expect(parser.outputTokens()).toBe(counter.tokens())
    expect(parser.outputBound()).toBe(counter.bound())
  })

  it('a modeled exception inside a stream: the text before it counts', () => {
    run(route('/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream'), [fixture('converse-stream-exception.bin')])
    expect(counter.text()).toBe('Partial answer')
  })

  it('after a corrupted frame every byte from it on counts as output', () => {
    const bytes = Buffer.from(fixture('converse-stream.bin'))
    const first = bytes.readUInt32BE(0)
    const secondEnd = first + bytes.readUInt32BE(first)
    bytes[secondEnd - 10] = (bytes[secondEnd - 10] ?? 0) ^ 0x20
    const { parser, out } = run(route(CONVERSE_STREAM), [bytes])
    expect(out.equals(bytes)).toBe(true)
    expect(counter.text()).toBe('')
    expect(parser.reported()).toEqual({})
    expect(parser.outputTokens()).toBe(bytes.length - first)
    expect(parser.outputBound()).toBe(bytes.length - first)
  })

  it('the captured AI21 chunk reports its prompt tokens and no output yet', () => {
    const { parser } = run(route('/model/ai21.jamba-1-5-large-v1%3A0/invoke-with-response-stream'), [fixture('captured-ai21-jamba-chunk.bin')])
    expect(parser.reported()).toEqual({ inputTokens: 44 })
  })
})

describe('errors in the AWS shape', () => {
  const info = (status: number, code: string, details?: Record<string, unknown>): ErrorInfo => ({ status, code, message: `refused: ${code}`, ...(details ? { details } : {}) })
  const budget = { window: 'daily', limit_usd: 1, spent_usd: 1, resets_at: '2026-03-15T00:00:00.000Z' }

  it.each([
    [info(400, 'model_not_priced'), 'ValidationException'],
    [info(401, 'invalid_key'), 'UnrecognizedClientException'],
    [info(403, 'provider_not_allowed'), 'AccessDeniedException'],
    [info(404, 'not_found'), 'ResourceNotFoundException'],
    [info(413, 'payload_too_large'), 'ValidationException'],
    [info(429, 'budget_exceeded', budget), 'ThrottlingException'],
    [info(502, 'upstream_unreachable'), 'InternalServerException'],
    [info(503, 'budget_unavailable'), 'ServiceUnavailableException'],
    [info(504, 'upstream_timeout'), 'ModelTimeoutException'],
  ])('%j → x-amzn-errortype %s, body {message, code, details}', (error, type) => {
    expect(adapter.errorHeaders?.(error)).toEqual({ 'x-amzn-errortype': type })
    expect(adapter.errorBody(error)).toEqual({ message: error.message, code: error.code, ...error.details })
  })

  const codec = new EventStreamCodec(
    (b) => Buffer.from(b).toString('utf8'),
    (t) => new Uint8Array(Buffer.from(t, 'utf8')),
  )
  it.each([
    [INVOKE_STREAM, info(429, 'budget_exceeded', budget), 'throttlingException'],
    [CONVERSE_STREAM, info(429, 'session_budget_exceeded'), 'throttlingException'],
    [CONVERSE_STREAM, info(503, 'budget_unavailable'), 'serviceUnavailableException'],
    [INVOKE_STREAM, info(502, 'upstream_unreachable'), 'internalServerException'],
  ])('the cutoff frame of %s for %j is a well-formed %s exception event', (path, error, exceptionType) => {
    const frame = adapter.cutoffFrame(route(path), error)
    const message = codec.decode(new Uint8Array(frame))
    expect(message.headers[':message-type']?.value).toBe('exception')
    expect(message.headers[':exception-type']?.value).toBe(exceptionType)
    expect(message.headers[':content-type']?.value).toBe('application/json')
    expect(JSON.parse(Buffer.from(message.body).toString('utf8'))).toEqual({ message: `${error.code}: ${error.message}`, code: error.code, ...error.details })
  })
})
