import fp from 'fastify-plugin'
import { Problems, toProblem, type ProblemError } from '../errors.js'
import type { FastifyReply } from 'fastify'

export function sendProblem (reply: FastifyReply, problem: ProblemError): FastifyReply {
  return reply.code(problem.status).headers(problem.headers).type('application/problem+json').send(problem.toBody())
}

export default fp(async (app) => {
  const bodyLimit = app.initialConfig.bodyLimit ?? 1048576

  app.setErrorHandler((error, request, reply) => {
    const problem = toProblem(error as Parameters<typeof toProblem>[0], bodyLimit)
    if (problem.status >= 500) {
      request.log.error({ err: error }, 'request failed')
    } else {
      // The code is enough to follow a 4xx; the message of a library error may quote the body.
      request.log.info({ status: problem.status, code: problem.code }, 'request refused')
    }
    return sendProblem(reply, problem)
  })

  app.setNotFoundHandler((request, reply) => {
    return sendProblem(reply, Problems.notFound(`No route for ${request.method} ${request.url.split('?')[0]}`))
  })
}, { name: 'error-handler' })
