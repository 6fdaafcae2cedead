import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerFactory } from 'fastify'
import type { Logger } from 'pino'
import { internalError, invalidRequest, notFound, payloadTooLarge, ProxyError } from './errors.js'
import { createPipeline, type PipelineDeps } from './proxy/pipeline.js'
import { sendError } from './proxy/respond.js'
import { parseTarget } from './proxy/target.js'

export interface AppOptions extends PipelineDeps {
  logger: Logger
  /** Serves HTTP/1.1 and h2c on one port when given (production); tests use plain HTTP/1.1. */
  serverFactory?: FastifyServerFactory
}

const PROXIED_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

/** Builds the proxy application without listening, so tests can drive it with `inject` or `listen`. */
export function buildApp(options: AppOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // The pipeline writes one summary line per request itself.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.config.maxBodyBytes,
    // Proxy paths carry provider syntax such as `models/gemini-pro:generateContent`.
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 1000 },
    ...(options.serverFactory ? { serverFactory: options.serverFactory } : {}),
  })

  // Bodies stay raw bytes: the proxy forwards them unchanged unless it must rewrite them.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))

  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    const adapter = adapterFor(options, request.url)
    if (error instanceof ProxyError) return sendError(reply, adapter, error)
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, adapter, payloadTooLarge(`request body above the ${options.config.maxBodyBytes}-byte limit`))
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return sendError(reply, adapter, invalidRequest(error.message))
    }
    request.log.error({ err: error }, 'unhandled error')
    return sendError(reply, adapter, internalError('internal error'))
  })
  app.setNotFoundHandler((request, reply) => {
    sendError(reply, adapterFor(options, request.url), notFound('unknown route: paths start with /{provider}/, e.g. /openai/v1/chat/completions'))
  })

  app.get('/health', async (_request, reply) => {
    try {
      await options.store.ping()
      return reply.send({ status: 'ok' })
    } catch {
      return reply.code(503).send({ status: 'unavailable', store: 'unreachable' })
    }
  })

  app.route({ method: [...PROXIED_METHODS], url: '/*', handler: createPipeline(options) })
  return app
}

function adapterFor(options: AppOptions, url: string) {
  const target = parseTarget(url)
  return target === null ? null : options.adapters[target.provider]
}
