import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { registerEventApi, registerHistoryApi, registerKeyApi, registerSessionApi } from './admin/api.js'
import { loadDashboardAssets } from './admin/dashboard-assets.js'
import { guardAdmin } from './admin/security.js'
import type { BudgetStore, KeyAdmin } from './budget/types.js'
import type { Metrics } from './metrics.js'
import { lazySchemaCompilers } from './schema-compilers.js'

interface AdminOptions {
  logger: Logger
  store: BudgetStore
  /** Read-only use: the dashboard's key list and windows. */
  keys: KeyAdmin
  metrics: Metrics
  /** LOOPERS_ADMIN_TOKEN: every route but /health and /ready needs it as a bearer token; null = no token. */
  token: string | null
  /** True once shutdown has begun: `/ready` turns 503 so load balancers stop sending traffic. */
  isStopping(): boolean
}

/**
 * The admin listener (loopback by default): `/metrics` in Prometheus format, `/health` (the budget
 * store answers), `/ready` (healthy and not shutting down), the spend dashboard `/` and its JSON `/api/…`.
 */
export function buildAdminApp(options: AdminOptions): FastifyInstance {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    schemaController: lazySchemaCompilers(),
  })
  const dashboard = loadDashboardAssets()
  guardAdmin(app, { token: options.token, sendLoginPage: dashboard.sendPage })
  dashboard.register(app)
  registerKeyApi(app, options.keys)
  registerHistoryApi(app, options.keys)
  registerEventApi(app, options.keys)
  registerSessionApi(app, options.keys)
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', options.metrics.registry.contentType)
    return options.metrics.registry.metrics()
  })
  const storeAnswers = async (): Promise<boolean> => {
    try {
      await options.store.ping()
      return true
    } catch {
      return false
    }
  }
  app.get('/health', async (_request, reply) => {
    const ok = await storeAnswers()
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', store: ok ? 'ok' : 'unreachable' })
  })
  app.get('/ready', async (_request, reply) => {
    const ok = !options.isStopping() && (await storeAnswers())
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not_ready', stopping: options.isStopping() })
  })
  return app
}
