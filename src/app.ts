import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerFactory, type HookHandlerDoneFunction } from 'fastify'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import { internalError, invalidRequest, notFound, payloadTooLarge, ProxyError } from './errors.js'
import { readRawBody, takeBufferedBody } from './http/raw-body.js'
import { logRequest } from './logger.js'
import { createKeyGate, isKeyRefusal, type GateEntry } from './proxy/key-gate.js'
import { recordEventLater } from './proxy/record-event.js'
import { createPipeline, type PipelineDeps } from './proxy/pipeline.js'
import { sendError } from './proxy/respond.js'
import { recordRequest } from './proxy/summary.js'
import { parseTarget } from './proxy/target.js'
import { lazySchemaCompilers } from './schema-compilers.js'

interface AppOptions extends PipelineDeps {
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
    schemaController: lazySchemaCompilers(),
    ...(options.serverFactory ? { serverFactory: options.serverFactory } : {}),
  })

  // Bodies stay raw bytes: the proxy forwards them unchanged unless it must rewrite them (big ones in shared memory).
  app.removeAllContentTypeParsers()
  // A callback parser: a body that came with its headers is handed on at once, with no promise.
  const rawBody = (_request: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: Buffer) => void): void => {
    const buffered = takeBufferedBody(payload, options.config.maxBodyBytes)
    if (buffered !== null) return done(null, buffered)
    readRawBody(payload, options.config.maxBodyBytes).then((body) => done(null, body), done)
  }
  app.addContentTypeParser('*', rawBody)
  // The same parser under JSON's own name: Fastify caches the parser it finds for a content type, but never the
  // catch-all, so with '*' alone it parsed every request's Content-Type anew (a ContentType and its Map each time).
  app.addContentTypeParser('application/json', rawBody)

  // The key is checked before the body is read: an unknown client cannot make the proxy buffer anything.
  const gate = createKeyGate({ keys: options.keys, adapters: options.adapters })
  app.decorateRequest('loopersKey', null)
  // A callback hook, not an async one: a key seen valid lately passes without a promise or a closure. It goes on
  // in a microtask, as it would after a promise: by then the HTTP parser has buffered a body that came with the headers.
  app.addHook('onRequest', (request, reply, done) => {
    const checked = gate.check(request.url, request.headers)
    if (checked instanceof Promise) return awaitGate(checked, request, reply, done)
    request.loopersKey = checked
    queueMicrotask(done)
  })

  /** The gate's answer for a key it had to look up (or refuses): the request goes on or is answered when it comes. */
  function awaitGate(checked: Promise<GateEntry | null>, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    // A refusal's duration: the gate's own turn (microseconds) is left out.
    const started = performance.now()
    checked.then(
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
  }

  /** A request the gate refused: its connection, the key's cached state, its summary line, metrics and event. */
  function noteRefusal(request: FastifyRequest, reply: FastifyReply, error: ProxyError, started: number): void {
    // The unread body is not drained: HTTP/1.1 closes the connection after the answer.
    if (request.raw.httpVersionMajor === 1 && hasBody(request.headers)) reply.header('connection', 'close')
    const key = gate.keyOf(request.url, request.headers)
    if (key !== null && isKeyRefusal(error.code)) gate.forget(key.keyHash)
    const summary = { key: key?.keyHash.slice(0, 8), provider: adapterFor(options, request.url)?.id, outcome: 'refused', code: error.code, status: error.status }
    const ms = performance.now() - started
    logRequest(options.logger, summary, ms)
    recordRequest(options.metrics, summary, ms)
    recordEventLater(options.keys, options.metrics, summary, Date.now)
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

  app.route({
    method: [...PROXIED_METHODS],
    url: '/*',
    // The pipeline answers every request itself (it returns no promise), forgets a key the store refused and logs its own late failures.
    handler: createPipeline(options, gate),
  })
  return app
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0')
}

function adapterFor(options: AppOptions, url: string) {
  const target = parseTarget(url)
  return target === null ? null : options.adapters[target.provider]
}
