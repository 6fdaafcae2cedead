import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerFactory } from 'fastify'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import { internalError, invalidRequest, notFound, payloadTooLarge, ProxyError } from './errors.js'
import { readRawBody } from './http/raw-body.js'
import { createKeyGate, type KeyGate } from './proxy/key-gate.js'
import { recordEventLater } from './proxy/record-event.js'
import { createPipeline, type PipelineDeps } from './proxy/pipeline.js'
import { sendError } from './proxy/respond.js'
import { recordRequest } from './proxy/summary.js'
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
    // No Fastify logger: with one, Fastify builds and checks a request logger and watches every response's end.
    // The pipeline writes one summary line per request itself, and this file logs what fails around it.
    logger: false,
    bodyLimit: options.config.maxBodyBytes,
    // Proxy paths carry provider syntax such as `models/gemini-pro:generateContent`.
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 1000 },
    ...(options.serverFactory ? { serverFactory: options.serverFactory } : {}),
  })

  // Bodies stay raw bytes: the proxy forwards them unchanged unless it must rewrite them (big ones in shared memory).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request: FastifyRequest, payload: IncomingMessage) => readRawBody(payload, options.config.maxBodyBytes))

  // The key is checked before the body is read: an unknown client cannot make the proxy buffer anything.
  const gate = createKeyGate({ keys: options.keys, adapters: options.adapters })
  app.decorateRequest('loopersKey', null)
  // A callback hook, not an async one: the gate's promise is the hook's only one (no second promise, no extra turn).
  app.addHook('onRequest', (request, reply, done) => {
    const started = performance.now()
    gate.check(request.url, request.headers).then(
      (key) => {
        request.loopersKey = key
        done()
      },
      (error: Error) => {
        try {
          if (error instanceof ProxyError) noteRefusal(request, reply, error, started)
        } catch (fault) {
          return done(fault as Error)
        }
        done(error)
      },
    )
  })

  /** A request the gate refused: its connection, the key's cached state, its summary line, metrics and event. */
  function noteRefusal(request: FastifyRequest, reply: FastifyReply, error: ProxyError, started: number): void {
    // The unread body is not drained: HTTP/1.1 closes the connection after the answer.
    if (request.raw.httpVersionMajor === 1 && hasBody(request.headers)) reply.header('connection', 'close')
    const key = gate.keyOf(request.url, request.headers)
    if (key !== null && KEY_REFUSALS.has(error.code)) gate.forget(key.keyHash)
    const summary = { key: key?.keyHash.slice(0, 8), provider: adapterFor(options, request.url)?.id, outcome: 'refused', code: error.code, status: error.status }
    const ms = performance.now() - started
    options.logger.info({ ...summary, ms: Math.round(ms * 100) / 100 }, 'request')
    recordRequest(options.metrics, summary, ms)
    recordEventLater(options.keys, options.metrics, summary, Date.now())
  }

  app.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    const adapter = adapterFor(options, request.url)
    if (error instanceof ProxyError) return sendError(reply, adapter, error)
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, adapter, payloadTooLarge(`request body above the ${options.config.maxBodyBytes}-byte limit`))
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return sendError(reply, adapter, invalidRequest(error.message))
    }
    options.logger.error({ err: error }, 'unhandled error')
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

  const pipeline = createPipeline(options)
  app.route({
    method: [...PROXIED_METHODS],
    url: '/*',
    // The pipeline's own promise, chained: no async wrapper frame around every request.
    handler: (request, reply) =>
      pipeline(request, reply).then(
        () => forgetRefusedKey(gate, request, reply),
        (error: unknown) => {
          // Begun answers bypass the error handler: Fastify would log this failure itself, but it has no logger.
          if (reply.sent) options.logger.error({ err: error }, 'unhandled error')
          throw error
        },
      ),
  })
  return app
}

// The refusals that say the store's view of a key differs from the gate's.
const KEY_REFUSALS: ReadonlySet<unknown> = new Set(['invalid_key', 'key_revoked', 'provider_not_allowed'])

/** A key the store refused after the gate let it through is checked again before its next body is read. */
function forgetRefusedKey(gate: KeyGate, request: FastifyRequest, reply: FastifyReply): void {
  if (request.loopersKey !== null && KEY_REFUSALS.has(reply.getHeader('x-loopers-error-code'))) gate.forget(request.loopersKey.keyHash)
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0')
}

function adapterFor(options: AppOptions, url: string) {
  const target = parseTarget(url)
  return target === null ? null : options.adapters[target.provider]
}
