import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto'
import type http from 'node:http'
import { SignatureV4 } from '@smithy/signature-v4'
import { baseModelId } from '../../src/providers/bedrock-native.js'
import { encodeEventStreamMessage } from '../../src/stream/event-stream.js'
import {
  finish,
  json,
  openLedger,
  pace,
  parseBody,
  startFakeServer,
  write,
  type FakeUpstream,
  type LedgerEntry,
  type Received as BaseReceived,
} from './fake-server.js'
import { NON_STREAM_TEXT, billedFor, billedPrompt, familyOf, streamPlan, warmBilling } from './billing.js'

export type { LedgerEntry }

/** A request as the fake Bedrock received it, with how it authenticated. */
export interface Received extends BaseReceived {
  auth: { kind: 'sigv4'; accessKeyId: string; region: string; signedHeaders: string[] } | { kind: 'bearer'; token: string }
}

export interface FakeBedrockOptions {
  /** Input tokens the fake reports and counts (default: the prompt in the body billed as the model's family (billing.ts)). */
  promptTokens?: number
  /** Answer CountTokens with this error status instead of a count. */
  countFails?: number
  /** Never answer CountTokens (the caller's timeout decides). */
  countHangs?: boolean
  /** Text deltas per streamed answer (default 5) billed as the model's family (billing.ts). */
  chunks?: number
  /** Output tokens of a non-streamed answer (default: the billed count of its text). */
  completionTokens?: number
  /** Stream the realistic answer (1-4 tokens per delta, code and non-English text) instead of `word`. */
  answer?: boolean
  /** Text of every delta (default " tok", one token), billed as the family bills it. */
  word?: string
  chunkDelayMs?: number
  /** Answer every POST with this AWS error instead. */
  fail?: { status: number; type: string; message: string }
  /** Never answer POSTs. */
  hang?: boolean
  /** Hold every answer until this promise settles (for floods). */
  gate?: Promise<void>
  /** Destroy the socket after this many stream deltas. */
  resetAfterChunks?: number
  /** After this many stream deltas, send a frame whose message checksum is wrong. */
  corruptAfterChunks?: number
}

export interface FakeBedrock extends FakeUpstream<FakeBedrockOptions, Received> {
  /** Requests refused for authentication (bad or missing signature, unknown key). */
  rejected: Array<{ url: string; reason: string }>
}

/** Accepted upstream credentials: SigV4 access key id → secret (and session token), Bedrock API keys. */
export interface FakeBedrockAuth {
  aws: Record<string, { secret: string; sessionToken?: string }>
  apiKeys: string[]
}

/** Frame of one InvokeModelWithResponseStream chunk: `{"bytes": base64(chunk), "p": padding}`. */
export function invokeChunkFrame(chunk: unknown, padding = 'abcdefghijklmnopqrstuvwxyzABCDEFGH'): Buffer {
  const payload = { bytes: Buffer.from(JSON.stringify(chunk)).toString('base64'), p: padding }
  return encodeEventStreamMessage(
    { ':event-type': 'chunk', ':content-type': 'application/json', ':message-type': 'event' },
    Buffer.from(JSON.stringify(payload)),
  )
}

/** Frame of one ConverseStream event (`messageStart`, `contentBlockDelta`, `metadata`, …). */
export function converseEventFrame(eventType: string, payload: unknown): Buffer {
  return encodeEventStreamMessage(
    { ':event-type': eventType, ':content-type': 'application/json', ':message-type': 'event' },
    Buffer.from(JSON.stringify(payload)),
  )
}

/** Frame of a modeled stream exception (`throttlingException`, `modelStreamErrorException`, …). */
export function exceptionFrame(exceptionType: string, payload: unknown): Buffer {
  return encodeEventStreamMessage(
    { ':exception-type': exceptionType, ':content-type': 'application/json', ':message-type': 'exception' },
    Buffer.from(JSON.stringify(payload)),
  )
}

/** One event of a fixture's JSON source (`test/fixtures/bedrock/*.json`). */
export type FixtureEvent = { chunk: unknown; p?: string } | { event: string; payload: unknown } | { exception: string; payload: unknown }

/** The wire bytes of a fixture's events: how the `.bin` fixtures are made from their `.json` sources. */
export function fixtureFrames(events: FixtureEvent[]): Buffer {
  return Buffer.concat(
    events.map((e) =>
      'chunk' in e ? invokeChunkFrame(e.chunk, e.p) : 'event' in e ? converseEventFrame(e.event, e.payload) : exceptionFrame(e.exception, e.payload),
    ),
  )
}

/** node:crypto behind the hash interface @smithy/signature-v4 expects (plain or keyed SHA-256). */
export class Sha256 {
  private hash: Hash | Hmac
  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = this.create()
  }
  private create(): Hash | Hmac {
    if (this.secret === undefined) return createHash('sha256')
    const key = typeof this.secret === 'string' ? this.secret : Buffer.from(ArrayBuffer.isView(this.secret) ? this.secret.buffer.slice(this.secret.byteOffset, this.secret.byteOffset + this.secret.byteLength) : this.secret)
    return createHmac('sha256', key)
  }
  update(data: string | Uint8Array): void {
    this.hash.update(data)
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest())
  }
  reset(): void {
    this.hash = this.create()
  }
}

const AUTH_PATTERN = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/

/**
 * Verifies a SigV4 request the way Bedrock does, with @smithy/signature-v4 (the AWS SDK's own signer)
 * recomputing the signature from what arrived: the path as received, the signed headers, the body bytes.
 */
async function verifySigV4(req: http.IncomingMessage, body: Buffer, auth: FakeBedrockAuth): Promise<Received['auth'] | string> {
  const match = AUTH_PATTERN.exec(String(req.headers.authorization))
  if (match === null) return 'malformed Authorization'
  const [, accessKeyId = '', , region = '', service, signedList = '', signature] = match
  const known = auth.aws[accessKeyId]
  if (known === undefined) return 'UnrecognizedClientException'
  if (service !== 'bedrock') return `service ${service}`
  const amzDate = String(req.headers['x-amz-date'] ?? '')
  const signingDate = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'))
  if (Number.isNaN(signingDate.getTime()) || Math.abs(Date.now() - signingDate.getTime()) > 15 * 60_000) return 'bad x-amz-date'
  const contentSha = req.headers['x-amz-content-sha256']
  if (contentSha !== undefined && contentSha !== createHash('sha256').update(body).digest('hex')) return 'x-amz-content-sha256 does not match the body'
  const signedHeaders = signedList.split(';')
  const headers: Record<string, string> = {}
  for (const name of signedHeaders) {
    const value = req.headers[name]
    if (value === undefined) return `signed header ${name} missing`
    headers[name] = Array.isArray(value) ? value.join(',') : value
  }
  const [path = '/', rawQuery = ''] = (req.url ?? '/').split('?')
  const query: Record<string, string> = {}
  for (const [name, value] of new URLSearchParams(rawQuery)) query[name] = value
  const signer = new SignatureV4({
    credentials: { accessKeyId, secretAccessKey: known.secret, ...(known.sessionToken ? { sessionToken: known.sessionToken } : {}) },
    region,
    service: 'bedrock',
    sha256: Sha256,
    applyChecksum: false,
  })
  const signed = await signer.sign(
    { method: req.method ?? 'POST', protocol: 'http:', hostname: String(req.headers.host), path, query, headers, body },
    { signingDate },
  )
  const expected = String(signed.headers.authorization ?? '')
  if (!expected.endsWith(`Signature=${signature}`)) return 'InvalidSignatureException'
  if (known.sessionToken !== undefined && req.headers['x-amz-security-token'] !== known.sessionToken) return 'bad security token'
  return { kind: 'sigv4', accessKeyId, region, signedHeaders }
}

/**
 * A fake bedrock-runtime speaking the real wire formats: Anthropic, Llama, Nova and Titan native bodies,
 * Converse, and both event streams. It authenticates every request (SigV4 recomputed from the received
 * bytes, or a Bedrock API key), records it, and keeps a ledger of what each stream served.
 */
export async function startFakeBedrock(auth: FakeBedrockAuth, initial: FakeBedrockOptions = {}): Promise<FakeBedrock> {
  const received: Received[] = []
  const ledger: LedgerEntry[] = []
  const rejected: FakeBedrock['rejected'] = []
  warmBilling()
  // Authentication comes before recording, so this fake records for itself.
  const server = await startFakeServer((req, res, raw) => void handle(req, res, raw))
  const prompts: number[] = []
  const fake: FakeBedrock = { url: server.url, received, ledger, prompts, rejected, options: initial, close: server.close }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer): Promise<void> {
    const authorization = String(req.headers.authorization ?? '')
    let who: Received['auth'] | string
    if (authorization.startsWith('Bearer ')) {
      const token = authorization.slice(7)
      who = auth.apiKeys.includes(token) ? { kind: 'bearer', token } : 'UnrecognizedClientException'
    } else if (authorization.startsWith('AWS4-HMAC-SHA256 ')) {
      who = await verifySigV4(req, raw, auth)
    } else {
      who = 'MissingAuthenticationTokenException'
    }
    if (typeof who === 'string') {
      rejected.push({ url: req.url ?? '', reason: who })
      const type = who === 'UnrecognizedClientException' || who === 'MissingAuthenticationTokenException' ? who : 'InvalidSignatureException'
      return awsError(res, 403, type, `request refused: ${who}`)
    }
    const text = raw.toString('utf8')
    const body = parseBody(text)
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, raw: text, body, auth: who })
    await answer(req, res, body ?? {})
  }

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>): Promise<void> {
    const o = fake.options
    const path = (req.url ?? '').split('?')[0] ?? ''
    if (req.method === 'GET' && path === '/async-invoke') return awsJson(res, 200, { asyncInvokeSummaries: [] })
    const route = /^\/model\/([^/]+)\/([a-z-]+)$/.exec(path)
    if (route === null) return awsError(res, 404, 'UnknownOperationException', 'no such operation')
    const modelId = decodeURIComponent(route[1] ?? '')
    const operation = route[2] ?? ''
    if (operation === 'count-tokens' && o.countHangs) return
    if (operation === 'count-tokens') return answerCountTokens(res, o, o.promptTokens ?? promptOf(modelId, countedBody(body)))
    if (o.hang) return
    if (o.gate) await o.gate
    if (o.fail) return awsError(res, o.fail.status, o.fail.type, o.fail.message)
    const input = o.promptTokens ?? promptOf(modelId, body)
    prompts.push(input)
    const output = o.completionTokens ?? billedFor(modelId, NON_STREAM_TEXT)
    const family = baseModelId(modelId).split('.')[0]
    switch (operation) {
      case 'invoke':
        return invokeAnswer(res, modelId, family ?? '', input, output)
      case 'converse':
        return awsJson(res, 200, {
          output: { message: { role: 'assistant', content: [{ text: NON_STREAM_TEXT }] } },
          stopReason: 'end_turn',
          usage: { inputTokens: input, outputTokens: output, totalTokens: input + output, cacheReadInputTokens: 0, cacheWriteInputTokens: 0 },
          metrics: { latencyMs: 42 },
        })
      case 'invoke-with-response-stream':
        return stream(req, res, modelId, family === 'anthropic' ? anthropicEvents(input) : llamaEvents(input), input)
      case 'converse-stream':
        return stream(req, res, modelId, converseEvents(input), input)
      default:
        return awsError(res, 404, 'UnknownOperationException', `no operation ${operation}`)
    }
  }

  function invokeAnswer(res: http.ServerResponse, modelId: string, family: string, input: number, output: number): void {
    const counts = { 'x-amzn-bedrock-input-token-count': String(input), 'x-amzn-bedrock-output-token-count': String(output), 'x-amzn-bedrock-invocation-latency': '42' }
    if (/embed/.test(modelId)) {
      return awsJson(res, 200, { embedding: [0.5, 0.25, 0.125], inputTextTokenCount: input }, { ...counts, 'x-amzn-bedrock-output-token-count': '0' })
    }
    if (family === 'anthropic') {
      return awsJson(res, 200, {
        id: 'msg_bdrk_01',
        type: 'message',
        role: 'assistant',
        model: 'claude-test',
        content: [{ type: 'text', text: NON_STREAM_TEXT }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: input, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: output },
      }, counts)
    }
    if (family === 'meta') return awsJson(res, 200, { generation: NON_STREAM_TEXT, prompt_token_count: input, generation_token_count: output, stop_reason: 'stop' }, counts)
    // Mistral's body reports no usage: only the headers do.
    return awsJson(res, 200, { outputs: [{ text: NON_STREAM_TEXT, stop_reason: 'stop' }] }, counts)
  }

  /** One stream: frames before the deltas, a frame per delta (given the tokens billed so far), frames after (given the bill). */
  interface StreamPlan {
    before: Buffer[]
    delta(text: string, billed: number): Buffer
    after(billed: number): Buffer[]
  }

  function anthropicEvents(input: number): StreamPlan {
    return {
      before: [
        invokeChunkFrame({
          type: 'message_start',
          message: { id: 'msg_bdrk_02', type: 'message', role: 'assistant', model: 'claude-test', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: input, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1 } },
        }),
        invokeChunkFrame({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
      ],
      delta: (text) => invokeChunkFrame({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }),
      after: (count) => [
        invokeChunkFrame({ type: 'content_block_stop', index: 0 }),
        invokeChunkFrame({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: count } }),
        invokeChunkFrame({ type: 'message_stop', 'amazon-bedrock-invocationMetrics': { inputTokenCount: input, outputTokenCount: count, invocationLatency: 42, firstByteLatency: 7 } }),
      ],
    }
  }

  function llamaEvents(input: number): StreamPlan {
    let generated = 0
    return {
      before: [],
      delta: (text, billed) => invokeChunkFrame({ generation: text, prompt_token_count: generated++ === 0 ? input : null, generation_token_count: billed, stop_reason: null }),
      after: (count) => [
        invokeChunkFrame({
          generation: '',
          prompt_token_count: null,
          generation_token_count: count,
          stop_reason: 'stop',
          'amazon-bedrock-invocationMetrics': { inputTokenCount: input, outputTokenCount: count, invocationLatency: 42, firstByteLatency: 7 },
        }),
      ],
    }
  }

  function converseEvents(input: number): StreamPlan {
    return {
      before: [converseEventFrame('messageStart', { role: 'assistant', p: 'abcdef' })],
      delta: (text) => converseEventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text }, p: 'abcdefghij' }),
      after: (count) => [
        converseEventFrame('contentBlockStop', { contentBlockIndex: 0 }),
        converseEventFrame('messageStop', { stopReason: 'end_turn' }),
        converseEventFrame('metadata', { usage: { inputTokens: input, outputTokens: count, totalTokens: input + count }, metrics: { latencyMs: 42 } }),
      ],
    }
  }

  async function stream(req: http.IncomingMessage, res: http.ServerResponse, modelId: string, plan: StreamPlan, input: number): Promise<void> {
    const o = fake.options
    const entry = openLedger(ledger, req, res, input)
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'req-fake', 'x-amzn-bedrock-content-type': 'application/json' })
    for (const frame of plan.before) if (!write(res, entry, frame, 0)) return
    const { deltas } = streamPlan(familyOf(modelId), o, modelId)
    let billed = 0
    for (const [i, delta] of deltas.entries()) {
      if (!(await pace(res, entry, o.chunkDelayMs, i === o.resetAfterChunks))) return
      const frame = plan.delta(delta.text, billed + delta.tokens)
      if (o.corruptAfterChunks !== undefined && i === o.corruptAfterChunks) frame.writeUInt32BE((frame.readUInt32BE(frame.length - 4) ^ 1) >>> 0, frame.length - 4)
      if (!write(res, entry, frame, delta.tokens)) return
      billed += delta.tokens
    }
    for (const frame of plan.after(billed)) if (!write(res, entry, frame, 0)) return
    finish(res, entry)
  }

  return fake
}

/** A JSON answer carrying the request id every AWS answer has. */
/** CountTokens (`POST /model/{id}/count-tokens`): the input tokens the request would bill, as the API counts them. */
function answerCountTokens(res: http.ServerResponse, o: FakeBedrockOptions, input: number): void {
  if (o.countFails !== undefined) return awsError(res, o.countFails, 'ValidationException', 'The provided model does not support counting tokens.')
  awsJson(res, 200, { inputTokens: input })
}

/** The prompt tokens a request to `modelId` with this body bills, as its family bills them. */
function promptOf(modelId: string, body: Record<string, unknown>): number {
  return billedPrompt(body, familyOf(modelId), modelId, /embed/.test(modelId))
}

/** The request a CountTokens body counts: `input.converse` as it is, or the base64 body of `input.invokeModel`. */
function countedBody(body: Record<string, unknown>): Record<string, unknown> {
  const input = (body.input ?? {}) as { converse?: Record<string, unknown>; invokeModel?: { body?: string } }
  if (input.converse !== undefined) return input.converse
  return parseBody(Buffer.from(input.invokeModel?.body ?? '', 'base64').toString('utf8')) ?? {}
}

function awsJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  json(res, status, body, { 'x-amzn-requestid': 'req-fake', ...headers })
}

/** An AWS restJson1 error: `x-amzn-errortype` names the exception, the body carries `message`. */
function awsError(res: http.ServerResponse, status: number, type: string, message: string): void {
  awsJson(res, status, { message }, { 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/` })
}
