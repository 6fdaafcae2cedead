import type http from 'node:http'
import { embeddingList, responseObject } from './fake-openai.js'
import { NON_STREAM_TEXT, billedFor, billedPrompt, capDeltas, capOf, streamPlan, warmBilling } from './billing.js'
import { finish, json, pace, startRecordingServer, write, type FakeUpstream } from './fake-server.js'

export type { LedgerEntry, Received } from './fake-server.js'

export interface FakeAzureOptions {
  /** Prompt tokens the fake reports (default: tiktoken's count of the prompt in the body, as Azure OpenAI bills it). */
  promptTokens?: number
  /** Report the request body's byte length as its prompt tokens, so a request costs exactly its input bound. */
  promptTokensFromBody?: boolean
  /** Content deltas per streamed answer (default 5): billed by tiktoken. */
  chunks?: number
  /** Completion tokens of a non-streamed answer (default: tiktoken's count of its text). */
  completionTokens?: number
  /** Stream the realistic answer (1-4 tokens per delta, code and non-English text) instead of `word`. */
  answer?: boolean
  /** Text of every delta (default " tok", one token), billed by tiktoken in context. */
  word?: string
  /** Destroy the socket after this many stream chunks. */
  resetAfterChunks?: number
  /** Milliseconds between stream chunks (default 0). */
  chunkDelayMs?: number
  /** Answer every POST with this status and body instead. */
  fail?: { status: number; body: unknown }
}

/**
 * A fake Azure OpenAI resource speaking its wire format: deployment and v1 routes, `api-key` auth,
 * `api-version` required on deployment routes, old api-versions refusing `stream_options` and
 * `max_completion_tokens`, prompt and content filter annotations in streams, usage only when asked.
 * It records every request and keeps a ledger of what each stream served.
 */
export type FakeAzure = FakeUpstream<FakeAzureOptions>

const SAFE = { filtered: false, severity: 'safe' }
const FILTER_RESULTS = { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE }
const PROMPT_FILTER = [{ prompt_index: 0, content_filter_results: FILTER_RESULTS }]
const DEPLOYMENT_ROUTE = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings|responses)$/

export async function startFakeAzure(initial: FakeAzureOptions = {}): Promise<FakeAzure> {
  warmBilling()
  const fake = await startRecordingServer(initial, (req, res, body, raw) => answer(req, res, body, Buffer.byteLength(raw)))

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, bodyBytes: number): Promise<void> {
    const o = fake.options
    const url = new URL(req.url ?? '/', 'http://fake')
    const path = url.pathname
    const apiVersion = url.searchParams.get('api-version')
    if (req.headers['api-key'] === undefined && req.headers.authorization === undefined) {
      return json(res, 401, { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint.' } })
    }
    if (req.method === 'GET' && (path === '/openai/models' || path === '/openai/v1/models')) {
      return json(res, 200, { object: 'list', data: [{ id: 'gpt-4o-2024-11-20', object: 'model', created_at: 0, status: 'succeeded' }] })
    }
    const deployment = DEPLOYMENT_ROUTE.exec(path)
    const operation = deployment?.[2] ?? bodyModelOperation(path)
    if (operation === null || (deployment !== null && apiVersion === null)) {
      return json(res, 404, { error: { code: '404', message: 'Resource not found' } })
    }
    if (o.fail) return json(res, o.fail.status, o.fail.body)
    if (apiVersion !== null && /^\d{4}-\d{2}-\d{2}/.test(apiVersion) && apiVersion < '2024-09-01') {
      for (const field of ['stream_options', 'max_completion_tokens']) {
        if (body[field] !== undefined) {
          return json(res, 400, { error: { message: `Unrecognized request argument supplied: ${field}`, type: 'invalid_request_error', param: null, code: null } })
        }
      }
    }
    const model = operation === 'embeddings' ? 'text-embedding-3-small' : 'gpt-4o-2024-11-20'
    const promptTokens = o.promptTokensFromBody ? bodyBytes : (o.promptTokens ?? billedPrompt(body, 'openai', model, operation === 'embeddings'))
    fake.prompts.push(promptTokens)
    if (operation === 'embeddings') {
      return json(res, 200, embeddingList(body, model, promptTokens))
    }
    if (operation === 'responses') {
      const completion = o.completionTokens ?? billedFor(model, NON_STREAM_TEXT)
      return json(res, 200, responseObject(model, 'completed', NON_STREAM_TEXT, promptTokens, completion))
    }
    if (body.stream === true) return streamChat(req, res, body, model, promptTokens)
    const completion = o.completionTokens ?? billedFor(model, NON_STREAM_TEXT)
    return json(res, 200, {
      choices: [
        {
          content_filter_results: FILTER_RESULTS,
          finish_reason: 'stop',
          index: 0,
          logprobs: null,
          message: { annotations: [], content: NON_STREAM_TEXT, refusal: null, role: 'assistant' },
        },
      ],
      created: 1,
      id: 'chatcmpl-az1',
      model,
      object: 'chat.completion',
      prompt_filter_results: PROMPT_FILTER,
      system_fingerprint: 'fp_ee1d74bde0',
      usage: { completion_tokens: completion, prompt_tokens: promptTokens, prompt_tokens_details: { cached_tokens: 0 }, total_tokens: promptTokens + completion },
    })
  }

  async function streamChat(req: http.IncomingMessage, res: http.ServerResponse, body: Record<string, unknown>, model: string, promptTokens: number) {
    const o = fake.options
    const entry = fake.openLedger(req, res, promptTokens)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'apim-request-id': 'apim-1' })
    const base = { created: 1, id: 'chatcmpl-az2', model, object: 'chat.completion.chunk', system_fingerprint: 'fp_ee1d74bde0' }
    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true
    const deltas = capDeltas(streamPlan('openai', o, model).deltas, capOf(body, 'max_completion_tokens', 'max_tokens'))
    let billed = 0
    const choice = (delta: Record<string, unknown>, finishReason: string | null, filter: unknown = FILTER_RESULTS) => ({
      choices: [{ content_filter_results: filter, delta, finish_reason: finishReason, index: 0, logprobs: null }],
      ...base,
    })
    // Azure opens with the prompt's filter results and no choices.
    const opening = { choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: PROMPT_FILTER }
    if (!write(res, entry, `data: ${JSON.stringify(opening)}\n\n`, 0)) return
    if (!write(res, entry, `data: ${JSON.stringify(choice({ content: '', refusal: null, role: 'assistant' }, null, {}))}\n\n`, 0)) return
    for (const [i, delta] of deltas.entries()) {
      if (!(await pace(res, entry, o.chunkDelayMs, i === o.resetAfterChunks))) return
      if (!write(res, entry, `data: ${JSON.stringify(choice({ content: delta.text }, null))}\n\n`, delta.tokens)) return
      billed += delta.tokens
      if (i === 1) {
        // An asynchronous-filter annotation: offsets, no delta.
        const annotation = { id: '', object: '', created: 0, model: '', choices: [{ index: 0, finish_reason: null, content_filter_results: FILTER_RESULTS, content_filter_offsets: { check_offset: 0, start_offset: 0, end_offset: 8 } }], usage: null }
        if (!write(res, entry, `data: ${JSON.stringify(annotation)}\n\n`, 0)) return
      }
    }
    write(res, entry, `data: ${JSON.stringify(choice({}, 'stop', {}))}\n\n`, 0)
    if (includeUsage) {
      const usage = { completion_tokens: billed, prompt_tokens: promptTokens, prompt_tokens_details: { cached_tokens: 0 }, total_tokens: promptTokens + billed }
      write(res, entry, `data: ${JSON.stringify({ choices: [], ...base, usage })}\n\n`, 0)
    }
    write(res, entry, 'data: [DONE]\n\n', 0)
    finish(res, entry)
  }

  return fake
}

function bodyModelOperation(path: string): string | null {
  switch (path) {
    case '/openai/v1/chat/completions':
      return 'chat/completions'
    case '/openai/v1/embeddings':
      return 'embeddings'
    case '/openai/v1/responses':
    case '/openai/responses':
      return 'responses'
    default:
      return null
  }
}
