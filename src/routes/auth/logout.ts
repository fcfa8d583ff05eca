import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { problemResponses } from '../../schemas/problem.js'
import { requireAuthentication } from '../../plugins/auth.js'
import { audit } from '../../services/audit.js'

const logoutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  requireAuthentication(app)

  app.post('/logout', {
    schema: {
      tags: ['auth'],
      summary: 'End the caller\'s session: its refresh token and access tokens stop working',
      operationId: 'logout',
      response: { 204: Type.Null({ description: 'Logged out' }), ...problemResponses(400, 401, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    await app.sessions.end({ sessionId: request.user.sid }, 'logout')
    audit(request, 'logout', { user_id: request.user.sub, session_id: request.user.sid })
    return await reply.code(204).send(null)
  })
}

export default logoutRoutes
