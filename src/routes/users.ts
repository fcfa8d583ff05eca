import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../errors.js'
import { problemResponses } from '../schemas/problem.js'
import { SessionIdParamsSchema, SessionListSchema, toSession } from '../schemas/session.js'
import { toUser, UserSchema } from '../schemas/user.js'
import { requireAuthentication } from '../plugins/auth.js'
import { audit } from '../services/audit.js'

const userRoutes: FastifyPluginAsyncTypebox = async (app) => {
  requireAuthentication(app)

  app.get('/me', {
    schema: {
      tags: ['users'],
      summary: 'The signed-in user',
      operationId: 'getCurrentUser',
      response: { 200: Type.Ref(UserSchema, { description: 'The signed-in user' }), ...problemResponses(401, 429, 500) }
    }
  }, async (request) => {
    const user = await app.users.findById(request.user.sub)
    // A valid token of a user who no longer exists proves nothing.
    if (user === undefined) throw Problems.invalidToken()
    return toUser(user)
  })

  app.get('/me/sessions', {
    schema: {
      tags: ['users'],
      summary: 'The signed-in user\'s active sessions',
      operationId: 'listSessions',
      response: { 200: SessionListSchema, ...problemResponses(401, 429, 500) }
    }
  }, async (request) => {
    const rows = await app.sessions.listActive(request.user.sub)
    return rows.map(row => toSession(row, request.user.sid))
  })

  app.delete('/me/sessions/:id', {
    schema: {
      tags: ['users'],
      summary: 'End one of the signed-in user\'s sessions',
      operationId: 'endSession',
      params: SessionIdParamsSchema,
      response: { 204: Type.Null({ description: 'Ended' }), ...problemResponses(400, 401, 404, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const ended = await app.sessions.end({ userId: request.user.sub, sessionId: request.params.id }, 'ended_by_user')
    // Someone else's session and an unknown one get the same answer.
    if (ended.length === 0) throw Problems.notFound('No active session with that id')
    audit(request, 'session_ended', { user_id: request.user.sub, session_id: request.params.id })
    return await reply.code(204).send(null)
  })

  app.delete('/me/sessions', {
    schema: {
      tags: ['users'],
      summary: 'End all of the signed-in user\'s sessions, this one included',
      operationId: 'endAllSessions',
      response: { 204: Type.Null({ description: 'Ended' }), ...problemResponses(400, 401, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const ended = await app.sessions.end({ userId: request.user.sub }, 'ended_all_by_user')
    audit(request, 'all_sessions_ended', { user_id: request.user.sub, sessions_ended: ended.length })
    return await reply.code(204).send(null)
  })
}

export default userRoutes
