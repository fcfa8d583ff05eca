import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../../errors.js'
import { requireAuthentication } from '../../plugins/auth.js'
import {
  AdminCreateUserSchema, AdminUpdateUserSchema, AdminUserListQuerySchema, AdminUserPageSchema, AdminUserSchema,
  toAdminUser, UserIdParamsSchema
} from '../../schemas/admin.js'
import { problemResponses } from '../../schemas/problem.js'
import { querystringValidator } from '../../schemas/querystring.js'
import { SessionListSchema, toSession } from '../../schemas/session.js'
import { InvalidCursor } from '../../services/admin-users.js'
import { audit } from '../../services/audit.js'

const READ = { scopes: ['users:read'] }
const WRITE = { scopes: ['users:write'] }
const adminUser = Type.Ref(AdminUserSchema)

const adminUserRoutes: FastifyPluginAsyncTypebox = async (app) => {
  requireAuthentication(app)

  app.get('/users', {
    config: READ,
    validatorCompiler: querystringValidator,
    schema: {
      tags: ['admin'],
      summary: 'List users, by username, a page at a time',
      description: 'Keyset pagination: pass `next_cursor` back as `cursor` (with the same `q`). Users come in byte order of ' +
        'the lowercased username. `q` matches the start of the username or email without regard to case; a user found ' +
        'by email alone is placed by the email.',
      operationId: 'adminListUsers',
      querystring: AdminUserListQuerySchema,
      response: { 200: AdminUserPageSchema, ...problemResponses(400, 401, 403, 429, 500) }
    }
  }, async (request) => {
    try {
      const page = await app.adminUsers.list({ ...request.query, limit: request.query.limit ?? 20 })
      return { items: page.items.map(toAdminUser), next_cursor: page.nextCursor }
    } catch (error) {
      if (error instanceof InvalidCursor) throw Problems.validation([{ field: 'cursor', message: 'is not a cursor this service gave' }])
      throw error
    }
  })

  app.get('/users/:id', {
    config: READ,
    schema: {
      tags: ['admin'],
      summary: 'One user',
      operationId: 'adminGetUser',
      params: UserIdParamsSchema,
      response: { 200: adminUser, ...problemResponses(400, 401, 403, 404, 429, 500) }
    }
  }, async (request) => {
    const user = await app.adminUsers.get(request.params.id)
    if (user === undefined) throw Problems.notFound('No user with that id')
    return toAdminUser(user)
  })

  app.post('/users', {
    config: WRITE,
    schema: {
      tags: ['admin'],
      summary: 'Create a user, with roles',
      description: 'The password obeys the password policy, as at registration. Every user holds the `user` role. A link to ' +
        'verify the address is sent to it.',
      operationId: 'adminCreateUser',
      body: AdminCreateUserSchema,
      response: { 201: adminUser, ...problemResponses(400, 401, 403, 409, 413, 415, 429, 500, 503) }
    }
  }, async (request, reply) => {
    const { roles = [], ...input } = request.body
    const problem = await app.passwordPolicy.problem(input.password, input)
    if (problem !== undefined) throw Problems.validation([{ field: 'password', message: problem }])
    const unknown = await app.users.unknownRoles(roles)
    if (unknown.length > 0) throw Problems.validation([{ field: 'roles', message: `no role named ${unknown.join(', ')}` }])
    const created = await app.users.create(input, roles)
    if (created === undefined) throw Problems.userExists()
    const user = await app.adminUsers.get(created.id)
    if (user === undefined) throw Problems.notFound('No user with that id')
    audit(request, 'admin_user_created', { user_id: request.user.sub, target_user_id: created.id, changes: ['roles'] })
    app.inBackground('verification email', async () => await app.accounts.sendVerification(created))
    return await reply.code(201).send(toAdminUser(user))
  })

  app.patch('/users/:id', {
    config: WRITE,
    schema: {
      tags: ['admin'],
      summary: 'Change a user\'s email, roles or disabled state',
      description: 'Disabling the user or taking a role away ends their sessions: their access tokens are refused within a ' +
        'second on every instance. A role granted takes effect at their next login or refresh. The last administrator ' +
        'cannot be demoted or disabled (409).',
      operationId: 'adminUpdateUser',
      params: UserIdParamsSchema,
      body: AdminUpdateUserSchema,
      response: { 200: adminUser, ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 500) }
    }
  }, async (request) => {
    const outcome = await app.adminUsers.update(request.params.id, request.body)
    if (!outcome.ok) {
      switch (outcome.reason) {
        case 'not_found': throw Problems.notFound('No user with that id')
        case 'last_admin': throw Problems.lastAdmin()
        case 'email_taken': throw Problems.userExists()
        case 'unknown_roles': throw Problems.validation([{ field: 'roles', message: `no role named ${outcome.roles.join(', ')}` }])
      }
    }
    app.users.forget(request.params.id)
    if (outcome.endSessions) await app.sessions.end({ userId: request.params.id }, outcome.changed.includes('disabled') ? 'user_disabled' : 'roles_changed')
    if (outcome.changed.length > 0) audit(request, 'admin_user_updated', { user_id: request.user.sub, target_user_id: request.params.id, changes: outcome.changed })
    if (outcome.changed.includes('email')) app.inBackground('verification email', async () => await app.accounts.sendVerification(outcome.user.row))
    return toAdminUser(outcome.user)
  })

  app.delete('/users/:id', {
    config: WRITE,
    schema: {
      tags: ['admin'],
      summary: 'Delete a user and end their sessions',
      description: 'The last administrator cannot be deleted (409).',
      operationId: 'adminDeleteUser',
      params: UserIdParamsSchema,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const { id } = request.params
    const outcome = await app.adminUsers.remove(id)
    if (!outcome.ok) throw outcome.reason === 'last_admin' ? Problems.lastAdmin() : Problems.notFound('No user with that id')
    app.users.forget(id)
    await app.sessions.announce(outcome.ended)
    audit(request, 'admin_user_deleted', { user_id: request.user.sub, target_user_id: id, sessions_ended: outcome.ended.length })
    return await reply.code(204).send(null)
  })

  app.get('/users/:id/sessions', {
    config: READ,
    schema: {
      tags: ['admin'],
      summary: 'A user\'s active sessions',
      operationId: 'adminListUserSessions',
      params: UserIdParamsSchema,
      response: { 200: SessionListSchema, ...problemResponses(400, 401, 403, 404, 429, 500) }
    }
  }, async (request) => {
    if (await app.adminUsers.get(request.params.id) === undefined) throw Problems.notFound('No user with that id')
    const rows = await app.sessions.listActive(request.params.id)
    return rows.map(row => toSession(row, request.user.sid))
  })

  app.delete('/users/:id/sessions', {
    config: WRITE,
    schema: {
      tags: ['admin'],
      summary: 'End all of a user\'s sessions',
      operationId: 'adminEndUserSessions',
      params: UserIdParamsSchema,
      response: { 204: Type.Null({ description: 'Ended' }), ...problemResponses(400, 401, 403, 404, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    if (await app.adminUsers.get(request.params.id) === undefined) throw Problems.notFound('No user with that id')
    const ended = await app.sessions.end({ userId: request.params.id }, 'ended_by_admin')
    audit(request, 'admin_sessions_ended', { user_id: request.user.sub, target_user_id: request.params.id, sessions_ended: ended.length })
    return await reply.code(204).send(null)
  })
}

export default adminUserRoutes
