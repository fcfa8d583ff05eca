import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { errorRenderers, fieldErrors, fieldErrorsDetail, type AjvError, type ErrorRenderers, type FastifyLikeError, type ProblemError } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Whatever a request raised, as the problem (or, at the token endpoints, the OAuth error) it is answered with. */
    errorRenderers: ErrorRenderers
  }
}

export function sendProblem (reply: FastifyReply, problem: ProblemError): FastifyReply {
  return reply.code(problem.status).headers(problem.headers).type('application/problem+json').send(problem.toBody())
}

/**
 * How a failed request is logged: a 5xx as an error with what raised it, except a refusal while the database is out,
 * which is counted in /metrics instead (the outage itself is logged once, by the database plugin).
 */
export function logFailure (request: FastifyRequest, error: unknown, status: number, code: string): void {
  if (code === 'database_unavailable') {
    request.server.metrics.databaseUnavailable.inc()
    request.log.debug({ status, code }, 'request refused: database unavailable')
  } else if (status >= 500) {
    request.log.error({ err: error }, 'request failed')
  } else {
    // The code is enough to follow a 4xx; the message of a library error may quote the body.
    request.log.info({ status, code }, 'request refused')
  }
}

/** The `x-error-message` a field's schema carries (TypeBox options), found by the path ajv gives of the failed keyword. */
function schemaMessage (schemas: Record<string, unknown>, context: string): (error: AjvError) => string | undefined {
  return (error) => {
    let node = schemas[context === 'querystring' && schemas.querystring === undefined ? 'query' : context]
    const segments = (error.schemaPath ?? '').replace(/^#\/?/, '').split('/').slice(0, -1)
    for (const segment of segments) {
      if (node === null || typeof node !== 'object') return undefined
      node = (node as Record<string, unknown>)[segment.replaceAll('~1', '/').replaceAll('~0', '~')]
    }
    const message = (node as Record<string, unknown> | undefined)?.['x-error-message']
    return typeof message === 'string' ? message : undefined
  }
}

export default fp(async (app) => {
  const renderers = errorRenderers(app.config.BODY_LIMIT)
  app.decorate('errorRenderers', renderers)

  // Validation errors are put in plain words where the route's schema is at hand, so that a field can say its own rule.
  app.addHook('onRoute', (route) => {
    if (route.schema === undefined || route.schemaErrorFormatter !== undefined) return
    const schemas = route.schema as Record<string, unknown>
    route.schemaErrorFormatter = (errors, context) => {
      const plain = fieldErrors(errors as AjvError[], context, schemaMessage(schemas, context))
      return Object.assign(new Error(fieldErrorsDetail(plain)), { fieldErrors: plain })
    }
  })

  app.setErrorHandler((error, request, reply) => {
    const problem = renderers.toProblem(error as FastifyLikeError)
    logFailure(request, error, problem.status, problem.code)
    return sendProblem(reply, problem)
  })
}, { name: 'error-handler', dependencies: ['config'] })
