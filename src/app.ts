import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import type { DatabaseHandle } from './db/client.js'
import { loggerOptions } from './logger.js'
import configPlugin from './plugins/config.js'
import errorHandler, { sendProblem } from './plugins/error-handler.js'
import { toProblem } from './errors.js'
import database from './plugins/database.js'
import swagger from './plugins/swagger.js'
import rateLimit from './plugins/rate-limit.js'
import services from './plugins/services.js'
import sessions from './plugins/sessions.js'
import auth from './plugins/auth.js'
import healthRoutes from './routes/health.js'
import authRoutes from './routes/auth/index.js'
import userRoutes from './routes/users.js'
import wellKnownRoutes from './routes/well-known.js'

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
  const app = Fastify({
    ...(options.loggerInstance !== undefined ? { loggerInstance: options.loggerInstance } : { logger: options.logger ?? loggerOptions(config) }),
    bodyLimit: config.BODY_LIMIT,
    trustProxy: config.TRUST_PROXY,
    // Clients send JSON: a number where a string belongs is an error, not something to coerce.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: true } },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Errors raised before routing (a malformed URL) get the same problem format as the rest.
    frameworkErrors: (error, _request, reply) => { sendProblem(reply, toProblem(error, config.BODY_LIMIT)) }
  }).withTypeProvider<TypeBoxTypeProvider>()

  // Fastify parses text/plain by default; this API takes JSON (and forms at the token endpoint) only.
  app.removeContentTypeParser('text/plain')

  app.register(configPlugin, { config })
  app.register(errorHandler)
  app.register(swagger)
  if (options.documentOnly !== true) {
    app.register(database, { database: options.database })
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
