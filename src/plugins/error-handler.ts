import fp from 'fastify-plugin'
import type { FastifyReply } from 'fastify'
import { errorRenderers, type ErrorRenderers, type FastifyLikeError, type ProblemError } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Whatever a request raised, as the problem (or, at the token endpoints, the OAuth error) it is answered with. */
    errorRenderers: ErrorRenderers
  }
}

export function sendProblem (reply: FastifyReply, problem: ProblemError): FastifyReply {
  return reply.code(problem.status).headers(problem.headers).type('application/problem+json').send(problem.toBody())
}

export default fp(async (app) => {
  const renderers = errorRenderers(app.config.BODY_LIMIT)
  app.decorate('errorRenderers', renderers)

  app.setErrorHandler((error, request, reply) => {
    const problem = renderers.toProblem(error as FastifyLikeError)
    if (problem.status >= 500) {
      request.log.error({ err: error }, 'request failed')
    } else {
      // The code is enough to follow a 4xx; the message of a library error may quote the body.
      request.log.info({ status: problem.status, code: problem.code }, 'request refused')
    }
    return sendProblem(reply, problem)
  })
}, { name: 'error-handler', dependencies: ['config'] })
