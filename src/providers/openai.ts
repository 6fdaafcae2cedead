import { messagesShape } from '../loop/shapes/messages.js'
import { responsesShape } from '../loop/shapes/responses.js'
import { bearerToken, forwardableRequestHeaders } from '../proxy/headers.js'
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
import type { ProviderAdapter, UpstreamCredential } from './types.js'

const OPERATIONS: Record<string, CompatOperation> = {
  '/v1/chat/completions': 'chat',
  '/v1/responses': 'responses',
  '/v1/embeddings': 'embeddings',
}

/** The OpenAI-format pieces every OpenAI-compatible adapter shares (Azure and Mistral reuse them). */
export const compatMembers = {
  describe: describeCompat,
  boundInputTokens: boundCompatInput,
  exactInput: exactCompatInput,
  prepareBody: prepareCompatBody,
  usageFromBody: compatUsageFromBody,
  createStreamParser: createCompatStreamParser,
  cutoffFrame: compatCutoffFrame,
  errorBody: compatErrorBody,
  loopShape: (route) => (route.operation === 'chat' ? messagesShape : route.operation === 'responses' ? responsesShape : null),
} satisfies Partial<ProviderAdapter>

/** OpenAI: Bearer auth, chat completions, responses and embeddings; every GET is a free read. */
export function createOpenAiAdapter(options: { baseUrl: string; apiKey: string | null }): ProviderAdapter {
  return {
    id: 'openai',
    ...compatMembers,
    readKey: (headers) => bearerToken(headers),
    findRoute(method, path) {
      const operation = method === 'POST' ? OPERATIONS[path] : undefined
      return operation === undefined ? null : compatRoute(operation)
    },
    isFree: (method) => method === 'GET' || method === 'HEAD',
    readClientCredential(headers): UpstreamCredential | null {
      const token = bearerToken(headers)
      return token === null ? null : { kind: 'apiKey', value: token }
    },
    defaultCredential: () => (options.apiKey === null ? null : { kind: 'apiKey', value: options.apiKey }),
    buildUpstream(ctx) {
      const headers = forwardableRequestHeaders(ctx.headers)
      if (ctx.credential?.kind === 'apiKey') headers.authorization = `Bearer ${ctx.credential.value}`
      const query = ctx.query.length > 0 ? `?${ctx.query}` : ''
      return { url: `${options.baseUrl}${ctx.path}${query}`, headers, body: ctx.body }
    },
  }
}
