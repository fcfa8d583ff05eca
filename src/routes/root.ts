import type { FastifyPluginAsync } from 'fastify'

/**
 * GET / sends a browser to the API documentation. Hidden from the OpenAPI document, as /docs itself is: it is a
 * signpost for people, not part of the API.
 */
const rootRoutes: FastifyPluginAsync = async (app) => {
  app.get('/', { schema: { hide: true } }, async (_request, reply) => await reply.redirect('/docs', 302))
}

export default rootRoutes
