import { randomBytes } from 'node:crypto'
import Fastify, { LogController, type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import type { DatabaseHandle } from './db/client.js'
import { loggerOptions } from './logger.js'
import configPlugin from './plugins/config.js'
import errorHandler, { sendProblem } from './plugins/error-handler.js'
import { toProblem } from './errors.js'
import database from './plugins/database.js'
import swagger from './plugins/swagger.js'
import metrics from './plugins/metrics.js'
import rateLimit from './plugins/rate-limit.js'
import services from './plugins/services.js'
import sessions from './plugins/sessions.js'
import auth from './plugins/auth.js'
import healthRoutes from './routes/health.js'
import authRoutes from './routes/auth/index.js'
import userRoutes from './routes/users.js'
import wellKnownRoutes from './routes/well-known.js'

// What a request id from outside may look like: no spaces or control characters to forge log lines with.
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

export interface BuildOptions {
  /** Replaces the pino options derived from the config (tests capture logs through a stream). */
  logger?: FastifyServerOptions['logger']
  loggerInstance?: FastifyServerOptions['loggerInstance']
  /** Tests: an already opened database (an in-memory PGlite shared by a test file), not closed by the app. */
  database?: DatabaseHandle
  /** Registered after the service's own routes, with its decorators in reach (the benchmark's probe routes). */
  plugins?: FastifyPluginAsync[]
  /**
   * Only what the OpenAPI document is made of: configuration, the document, authentication and the routes, with no
   * database, rate limiter or session sync. `npm run openapi` uses it; such an app is never meant to serve requests.
   */
  documentOnly?: boolean
}

export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const requestIdPrefix = randomBytes(6).toString('hex')
  let requestCounter = 0
  const app = Fastify({
    ...(options.loggerInstance !== undefined ? { loggerInstance: options.loggerInstance } : { logger: options.logger ?? loggerOptions(config) }),
    bodyLimit: config.BODY_LIMIT,
    trustProxy: config.TRUST_PROXY,
    // Clients send JSON: a number where a string belongs is an error, not something to coerce.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: true } },
    // Correlation: a caller's X-Request-Id is kept when it is a sane token, else one is made (<12 hex>-<counter>); logs carry it as
    // request_id and every answer echoes it.
    requestIdHeader: false,
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    genReqId: (request) => {
      const incoming = request.headers['x-request-id']
      if (typeof incoming === 'string' && REQUEST_ID.test(incoming)) return incoming
      // Unique across instances (a random prefix per process) without a UUID's cost on every request.
      requestCounter = (requestCounter + 1) % Number.MAX_SAFE_INTEGER
      return `${requestIdPrefix}-${requestCounter.toString(36)}`
    },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Errors raised before routing (a malformed URL) get the same problem format as the rest.
    frameworkErrors: (error, _request, reply) => { sendProblem(reply, toProblem(error, config.BODY_LIMIT)) }
  }).withTypeProvider<TypeBoxTypeProvider>()

  // Fastify parses text/plain by default; this API takes JSON (and forms at the token endpoint) only.
  app.removeContentTypeParser('text/plain')

  app.addHook('onRequest', (request, reply, done) => { reply.header('x-request-id', request.id); done() })
  // Shutting down: keep-alive connections are closed as soon as their last answer has gone, so that close() does
  // not wait on clients that would keep them open (server.close() only closes the ones idle when it is called).
  let sweeper: NodeJS.Timeout | undefined
  app.addHook('preClose', (done) => {
    sweeper = setInterval(() => { app.server.closeIdleConnections() }, 25).unref()
    done()
  })
  app.addHook('onClose', (_instance, done) => { clearInterval(sweeper); done() })

  app.register(configPlugin, { config })
  app.register(errorHandler)
  app.register(swagger)
  const serving = options.documentOnly !== true
  if (serving) app.register(database, { database: options.database })
  app.register(metrics)
  if (serving) {
    app.register(rateLimit)
    app.register(services)
    app.register(sessions)
  }
  app.register(auth)

  app.register(healthRoutes, { prefix: '/health' })
  app.register(authRoutes, { prefix: '/auth' })
  app.register(userRoutes, { prefix: '/users' })
  app.register(wellKnownRoutes, { prefix: '/.well-known' })
  for (const plugin of options.plugins ?? []) app.register(plugin)

  try {
    await app.ready()
  } catch (error) {
    // A plugin that failed to load must not leave the ones before it (a database pool, a timer) open.
    await app.close().catch(() => {})
    throw error
  }

  return app
}
