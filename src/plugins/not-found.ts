import fp from 'fastify-plugin'
import { Problems } from '../errors.js'
import { sendProblem } from './error-handler.js'

/** Unknown routes answer 404 problems, counted by the global rate limit like any other request. */
export default fp(async (app) => {
  const limited = app.config.RATE_LIMIT_ENABLED ? { preHandler: app.rateLimit() } : {}
  app.setNotFoundHandler(limited, (request, reply) => {
    return sendProblem(reply, Problems.notFound(`No route for ${request.method} ${request.url.split('?')[0]}`))
  })
}, { name: 'not-found', dependencies: ['config', 'error-handler', 'rate-limit'] })
