import { messagesShape } from '../loop/shapes/messages.js'
import { responsesShape } from '../loop/shapes/responses.js'
import { bearerToken, forwardableRequestHeaders } from '../http/headers.js'
import { upstreamUrl } from '../http/upstream-url.js'
import {
  boundCompatInput,
  compatCutoffFrame,
  compatErrorBody,
  compatRoute,
  compatUsageFromBody,
  exactCompatInput,
  createCompatStreamParser,
  describeCompat,
  prepareCompatBody,
  type CompatOperation,
} from './openai-compat.js'
import { compatReferencedInput } from './hosted-tools.js'
import type { ProviderAdapter, UpstreamCredential } from './types.js'
import { serverApiKey } from './types.js'

const OPERATIONS: Record<string, CompatOperation> = {
  '/v1/chat/completions': 'chat',
  '/v1/responses': 'responses',
  '/v1/embeddings': 'embeddings',
}

/** The only reads forwarded: the model list and one model (`GET /v1/models`, `/v1/models/{id}`). */
export const OPENAI_MODEL_READS = /^\/v1\/models(?:\/[^/]+)?$/

/** True for a GET or HEAD of a model list or one model under `reads`; every other read could expose another tenant's data. */
export function isModelRead(method: string, path: string, reads: RegExp): boolean {
  return (method === 'GET' || method === 'HEAD') && reads.test(path)
}

/** The OpenAI-format pieces every OpenAI-compatible adapter shares (Azure and Mistral reuse them). */
export const compatMembers = {
  describe: describeCompat,
  boundInputTokens: (route, body, raw, tokensPerMedia, scan) => boundCompatInput(route, body, raw, tokensPerMedia, scan?.mediaParts),
  referencedInput: (route, body) => compatReferencedInput(route, body),
  exactInput: exactCompatInput,
  prepareBody: prepareCompatBody,
  usageFromBody: compatUsageFromBody,
  usageMembers: ['usage'],
  createStreamParser: createCompatStreamParser,
  cutoffFrame: compatCutoffFrame,
  errorBody: compatErrorBody,
  loopShape: (route) => (route.operation === 'chat' ? messagesShape : route.operation === 'responses' ? responsesShape : null),
} satisfies Partial<ProviderAdapter>

/** OpenAI: Bearer auth, chat completions, responses and embeddings; model reads are free. */
export function createOpenAiAdapter(options: { baseUrl: string; apiKey: string | null }): ProviderAdapter {
  const serverCredential = serverApiKey(options.apiKey)
  return {
    id: 'openai',
    ...compatMembers,
    readKey: (headers) => bearerToken(headers),
    findRoute(method, path) {
      const operation = method === 'POST' ? OPERATIONS[path] : undefined
      return operation === undefined ? null : compatRoute(operation)
    },
    isFree: (method, path) => isModelRead(method, path, OPENAI_MODEL_READS),
    readClientCredential(headers): UpstreamCredential | null {
      const token = bearerToken(headers)
      return token === null ? null : { kind: 'apiKey', value: token }
    },
    defaultCredential: () => serverCredential,
    buildUpstream(ctx) {
      const headers = forwardableRequestHeaders(ctx.headers)
      if (ctx.credential?.kind === 'apiKey') headers.authorization = `Bearer ${ctx.credential.value}`
      return { url: upstreamUrl(options.baseUrl, ctx.path, ctx.query), headers, body: ctx.body }
    },
  }
}
