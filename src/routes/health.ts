import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Problems } from '../errors.js'
import { problemResponses } from '../schemas/problem.js'

const StatusSchema = Type.Object({ status: Type.Literal('ok') }, { description: 'Up', examples: [{ status: 'ok' }] })

const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/live', {
    config: { rateLimit: false },
    schema: { tags: ['health'], summary: 'The process answers', operationId: 'getLiveness', security: [], response: { 200: StatusSchema } }
  }, async () => ({ status: 'ok' as const }))

  app.get('/ready', {
    config: { rateLimit: false },
    schema: {
      tags: ['health'],
      summary: 'The process and its database answer',
      operationId: 'getReadiness',
      security: [],
      response: { 200: StatusSchema, ...problemResponses(503) }
    }
  }, async (request) => {
    try {
      await app.database.ping()
    } catch (error) {
      request.log.warn({ err: error }, 'database ping failed')
      throw Problems.unavailable('Database is not reachable')
    }
    return { status: 'ok' as const }
  })
}

export default healthRoutes
