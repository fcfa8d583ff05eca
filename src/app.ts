import { randomBytes } from 'node:crypto'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { trustProxyOption, type Config } from './config.js'
import type { DatabaseHandle } from './db/client.js'
import type { FastifyLikeError } from './errors.js'
import { loggerOptions } from './logger.js'
import configPlugin from './plugins/config.js'
import http from './plugins/http.js'
import requestBodies from './plugins/request-bodies.js'
import cors from './plugins/cors.js'
import errorHandler, { sendProblem } from './plugins/error-handler.js'
import swagger from './plugins/swagger.js'
import documentOnly from './plugins/document-only.js'
import database from './plugins/database.js'
import metrics from './plugins/metrics.js'
import rateLimit from './plugins/rate-limit.js'
import notFound from './plugins/not-found.js'
import users from './plugins/users.js'
import loginThrottle from './plugins/login-throttle.js'
import adminBootstrap from './plugins/admin-bootstrap.js'
import sessions from './plugins/sessions.js'
import mail from './plugins/mail.js'
import accounts from './plugins/accounts.js'
import clients from './plugins/clients.js'
import auth from './plugins/auth.js'
import healthRoutes from './routes/health.js'
import authRoutes from './routes/auth/index.js'
import userRoutes from './routes/users.js'
import wellKnownRoutes from './routes/well-known.js'
import sessionsFeedRoutes from './routes/sessions-feed.js'
import adminRoutes from './routes/admin/index.js'
import rootRoutes from './routes/root.js'

export interface BuildOptions {
  /** Replaces the pino options derived from the config (tests capture logs through a stream). */
  logger?: FastifyServerOptions['logger']
  loggerInstance?: FastifyServerOptions['loggerInstance']
  /** Tests: an already opened database (an in-memory PGlite shared by a test file), not closed by the app. */
  database?: DatabaseHandle
  /**
   * Only what the OpenAPI document is made of: configuration, the document, authentication and the routes, with no
   * database, rate limiter or session sync. `npm run openapi` uses it; such an app is never meant to serve requests.
   */
  documentOnly?: boolean
}

/** The whole service, loaded and ready. */
export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = createApp(config, options)
  try {
    await app.ready()
  } catch (error) {
    // A plugin that failed to load must not leave the ones before it (a database pool, a timer) open.
    await app.close().catch(() => {})
    throw error
  }
  return app
}

/** The whole service, registered in load order but not yet loaded (the benchmark adds its probe routes to it). */
export function createApp (config: Config, options: BuildOptions = {}): FastifyInstance {
  const app = Fastify(serverOptions(config, options)).withTypeProvider<TypeBoxTypeProvider>()

  app.register(configPlugin, { config })
  app.register(http)
  app.register(requestBodies)
  app.register(cors)
  app.register(errorHandler)
  app.register(swagger)
  if (options.documentOnly === true) {
    app.register(documentOnly)
  } else {
    app.register(database, { database: options.database })
    app.register(metrics)
    app.register(rateLimit)
    app.register(notFound)
    app.register(users)
    app.register(loginThrottle)
    app.register(adminBootstrap)
    app.register(sessions)
    app.register(mail)
    app.register(accounts)
    app.register(clients)
  }
  app.register(auth)

  app.register(healthRoutes, { prefix: '/health' })
  app.register(authRoutes, { prefix: '/auth' })
  app.register(userRoutes, { prefix: '/users' })
  app.register(adminRoutes, { prefix: '/admin' })
  app.register(wellKnownRoutes, { prefix: '/.well-known' })
  app.register(sessionsFeedRoutes, { prefix: '/sessions' })
  app.register(rootRoutes)
  return app
}

// What a request id from outside may look like: no spaces or control characters to forge log lines with.
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

function serverOptions (config: Config, options: BuildOptions): FastifyServerOptions {
  const requestIdPrefix = randomBytes(6).toString('hex')
  let requestCounter = 0
  const proxy = trustProxyOption(config)
  return {
    ...(options.loggerInstance !== undefined ? { loggerInstance: options.loggerInstance } : { logger: options.logger ?? loggerOptions(config) }),
    bodyLimit: config.BODY_LIMIT,
    // A path parameter of any length reaches validation (a 400 naming it) instead of the router's undeclared 414:
    // Node's 16 KB header limit bounds the request line first.
    routerOptions: { maxParamLength: 16384 },
    // A hop count as the function Fastify makes of one (its types take no number): the nearest `proxy` hops are trusted.
    trustProxy: typeof proxy === 'number' ? (_address: string, hop: number) => hop < proxy : proxy,
    // Clients send JSON: a number where a string belongs is an error, not something to coerce.
    // allErrors: a client is told every invalid field at once. x-error-message: a field's rule in plain words, read by
    // the error handler (plugins/error-handler.ts); to ajv an annotation, to OpenAPI an extension.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: true, allErrors: true, keywords: ['x-error-message'] } },
    // Correlation: a caller's X-Request-Id is kept when it is a sane token, else one is made (<12 hex>-<counter>);
    // logs carry it as request_id and every answer echoes it (plugins/http.ts).
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
    frameworkErrors: (error, request, reply) => {
      sendProblem(reply, request.server.errorRenderers.toProblem(error as FastifyLikeError))
    }
  }
}
