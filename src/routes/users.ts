import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../errors.js'
import { problemResponses } from '../schemas/problem.js'
import { SessionIdParamsSchema, SessionListSchema, toSession } from '../schemas/session.js'
import { passwordField, toUser, UserSchema } from '../schemas/user.js'
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

  app.post('/me/password', {
    schema: {
      tags: ['users'],
      summary: 'Change the signed-in user\'s password',
      description: 'Every other session of the user ends (refused within a second on every instance); this one stays. ' +
        'Reset links sent before die. A wrong `current_password` is 400 naming that field, and counts as a failed login ' +
        'of the account: while its logins are throttled, this answers 429 `login_throttled` with Retry-After, without ' +
        'checking the password.',
      operationId: 'changePassword',
      body: Type.Object({
        current_password: Type.String({ minLength: 1, maxLength: 1024 }),
        new_password: passwordField()
      }, { title: 'ChangePasswordRequest' }),
      response: { 204: Type.Null({ description: 'Changed' }), ...problemResponses(400, 401, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const { current_password: current, new_password: next } = request.body
    const outcome = await app.accounts.changePassword(request.user.sub, request.user.sid, current, next, request.ip)
    if (!outcome.ok) {
      if ('reason' in outcome) {
        if (outcome.reason === 'not_found') throw Problems.invalidToken()
        audit(request, 'password_change_failed', { user_id: request.user.sub, reason: 'throttled' })
        throw Problems.loginThrottled(outcome.retryAfterSeconds)
      }
      if (outcome.field === 'current_password') audit(request, 'password_change_failed', { user_id: request.user.sub, reason: 'wrong_password' })
      throw Problems.validation([{ field: outcome.field, message: outcome.message }])
    }
    audit(request, 'password_changed', { user_id: request.user.sub, sessions_ended: outcome.ended })
    return await reply.code(204).send(null)
  })

  app.delete('/me', {
    schema: {
      tags: ['users'],
      summary: 'Delete the signed-in user\'s account',
      description: 'Needs the password. The user and their sessions are gone; their tokens are refused within a second on ' +
        'every instance. The last administrator cannot leave (409). A wrong password counts as a failed login of the ' +
        'account: while its logins are throttled, this answers 429 `login_throttled` without checking the password.',
      operationId: 'deleteCurrentUser',
      body: Type.Object({ password: Type.String({ minLength: 1, maxLength: 1024 }) }, { title: 'DeleteAccountRequest' }),
      response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(400, 401, 409, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const id = request.user.sub
    const found = await app.adminUsers.get(id)
    if (found === undefined) throw Problems.invalidToken()
    // As with a password change: a holder of a stolen access token guessing here counts against the account's logins.
    const checked = await app.loginThrottle.guard(found.row.username, request.ip,
      async () => ({ ok: await app.passwordHasher.verify(found.row.passwordHash, request.body.password) }))
    if (!checked.ok) {
      const throttled = 'retryAfterSeconds' in checked
      audit(request, 'account_deletion_failed', { user_id: id, reason: throttled ? 'throttled' : 'wrong_password' })
      throw throttled ? Problems.loginThrottled(checked.retryAfterSeconds) : Problems.validation([{ field: 'password', message: 'is not the current password' }])
    }
    const outcome = await app.adminUsers.remove(id)
    if (!outcome.ok) throw outcome.reason === 'last_admin' ? Problems.lastAdmin() : Problems.invalidToken()
    app.users.forget(id)
    await app.sessions.announce(outcome.ended)
    audit(request, 'account_deleted', { user_id: id, sessions_ended: outcome.ended.length })
    return await reply.code(204).send(null)
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
