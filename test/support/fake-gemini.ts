import type http from 'node:http'
import { NON_STREAM_TEXT, billedFor, billedPrompt, capDeltas, familyOf, streamPlan, warmBilling } from './billing.js'
import { finish, json, pace, startRecordingServer, write, type FakeUpstream } from './fake-server.js'

export type { LedgerEntry, Received } from './fake-server.js'

export interface FakeGeminiOptions {
  /** promptTokenCount the fake reports and counts (default: the prompt in the body billed as Gemini (billing.ts)). */
  promptTokens?: number
  /** Answer `:countTokens` with this error status instead of a count. */
  countFails?: number
  /** Text chunks per streamed answer (default 5, stopping at maxOutputTokens) billed as Gemini (billing.ts). */
  chunks?: number
  /** Stream the realistic answer (1-4 tokens per delta, code and non-English text) instead of `word`. */
  answer?: boolean
  /** Text of every chunk (default " tok", one token), billed as Gemini bills it. */
  word?: string
  /** candidatesTokenCount each streamed chunk adds instead of its billed count. */
  tokensPerChunk?: number
  /** candidatesTokenCount of a non-streamed answer (default: the billed count of its text). */
  completionTokens?: number
  /** thoughtsTokenCount reported from the first chunk on, as thinking models do (default none). */
  thoughtsTokens?: number
  /** Milliseconds between stream chunks (default 0). */
  chunkDelayMs?: number
  /** Answer every metered POST with this status and body instead. */
  fail?: { status: number; body: unknown }
  /** Destroy the socket after this many stream chunks. */
  resetAfterChunks?: number
}

/**
 * A fake generativelanguage.googleapis.com speaking the real wire format: generateContent,
 * streamGenerateContent as SSE (`alt=sse`, CRLF-delimited events) or as a streamed JSON array
 * (pretty-printed elements joined by `\n,\r\n`), countTokens, embedContent, batchEmbedContents and
 * the model list. It records every request and keeps a ledger of what each stream served.
 */
export type FakeGemini = FakeUpstream<FakeGeminiOptions>

const ROUTE = /^\/v1(?:beta|alpha)?\/((?:models|tunedModels)\/[^/:]+):([A-Za-z]+)$/

export async function startFakeGemini(initial: FakeGeminiOptions = {}): Promise<FakeGemini> {
  warmBilling()
  const fake = await startRecordingServer(initial, answer)

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>): Promise<void> {
    const o = fake.options
    const url = new URL(req.url ?? '/', 'http://fake')
    if (req.method === 'GET' && /^\/v1(beta|alpha)?\/models$/.test(url.pathname)) {
      return reply(res, 200, { models: [{ name: 'models/gemini-test', displayName: 'Gemini Test', supportedGenerationMethods: ['generateContent'] }] })
    }
    const match = ROUTE.exec(url.pathname)
    if (req.method !== 'POST' || match === null) {
      return reply(res, 404, { error: { code: 404, message: `no route ${url.pathname}`, status: 'NOT_FOUND' } })
    }
    const model = (match[1] ?? '').replace(/^models\//, '')
    const verb = match[2]
    // countTokens counts the generation request it wraps (or its bare contents) as that generation bills it.
    const counted = verb === 'countTokens' && isRecord(body.generateContentRequest) ? body.generateContentRequest : body
    const promptTokens = o.promptTokens ?? billedPrompt(counted, familyOf(model), model, verb === 'embedContent' || verb === 'batchEmbedContents')
    if (verb === 'countTokens') return answerCountTokens(res, o.countFails, promptTokens)
    if (o.fail) return reply(res, o.fail.status, o.fail.body)
    fake.prompts.push(promptTokens)
    if (verb === 'embedContent') return reply(res, 200, { embedding: { values: [0.5, 0.25, 0.125] } })
    if (verb === 'batchEmbedContents') {
      const requests = Array.isArray(body.requests) ? body.requests : []
      return reply(res, 200, { embeddings: requests.map(() => ({ values: [0.5, 0.25, 0.125] })) })
    }
    if (verb === 'generateContent') {
      const completion = o.completionTokens ?? billedFor(model, NON_STREAM_TEXT)
      return reply(res, 200, response(model, NON_STREAM_TEXT, 'STOP', usage(promptTokens, completion, o.thoughtsTokens)))
    }
    if (verb === 'streamGenerateContent') return stream(req, res, body, model, promptTokens, url.searchParams.get('alt') === 'sse')
    return reply(res, 400, { error: { code: 400, message: `unsupported ${verb}`, status: 'INVALID_ARGUMENT' } })
  }

  async function stream(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, model: string, promptTokens: number, sse: boolean): Promise<void> {
    const o = fake.options
    const entry = fake.openLedger(req, res, promptTokens)
    res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json; charset=UTF-8' })
    const config = (body.generationConfig ?? body.generation_config) as Record<string, unknown> | undefined
    const cap = typeof config?.maxOutputTokens === 'number' ? config.maxOutputTokens : null
    const planned = streamPlan('gemini', o, model).deltas.map((d) => (o.tokensPerChunk === undefined ? d : { text: d.text, tokens: o.tokensPerChunk }))
    const deltas = capDeltas(planned, cap)
    const count = deltas.length
    let billed = 0
    for (const [i, delta] of deltas.entries()) {
      if (!(await pace(res, entry, i > 0 ? o.chunkDelayMs : 0, i === o.resetAfterChunks))) return
      billed += delta.tokens
      // Every chunk carries the running usage, its own tokens included.
      const done = i === count - 1 ? (count < planned.length ? 'MAX_TOKENS' : 'STOP') : undefined
      const chunk = response(model, delta.text, done, usage(promptTokens, billed, o.thoughtsTokens))
      // Gemini's SSE events end with CRLF CRLF; its JSON array is pretty-printed, elements joined by "\n,\r\n".
      const text = sse ? `data: ${JSON.stringify(chunk)}\r\n\r\n` : `${i === 0 ? '[' : '\n,\r\n'}${JSON.stringify(chunk, null, 2)}`
      if (!write(res, entry, text, delta.tokens)) return
    }
    if (!sse) res.write(count === 0 ? '[]' : '\n]')
    finish(res, entry)
  }

  return fake
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function usage(prompt: number, candidates: number, thoughts: number | undefined): Record<string, unknown> {
  return {
    promptTokenCount: prompt,
    candidatesTokenCount: candidates,
    totalTokenCount: prompt + candidates + (thoughts ?? 0),
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: prompt }],
    ...(thoughts === undefined ? {} : { thoughtsTokenCount: thoughts }),
  }
}

function response(model: string, text: string, finishReason: string | undefined, usageMetadata: Record<string, unknown>): Record<string, unknown> {
  return {
    candidates: [{ content: { parts: [{ text }], role: 'model' }, ...(finishReason ? { finishReason } : {}), index: 0 }],
    usageMetadata,
    modelVersion: model,
    responseId: 'fake-response-1',
  }
}

/** A JSON answer with the charset Google's front end names. */
/** `:countTokens`: the prompt tokens a generation with this body would bill, as the API counts them. */
function answerCountTokens(res: http.ServerResponse, fails: number | undefined, promptTokens: number): void {
  if (fails !== undefined) return reply(res, fails, { error: { code: fails, message: 'counting failed', status: 'INTERNAL' } })
  reply(res, 200, { totalTokens: promptTokens, promptTokensDetails: [{ modality: 'TEXT', tokenCount: promptTokens }] })
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  json(res, status, body, { 'content-type': 'application/json; charset=UTF-8' })
}
