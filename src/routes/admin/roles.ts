import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../../errors.js'
import { requireAuthentication } from '../../plugins/auth.js'
import { RoleDefinitionSchema, RoleNameParamsSchema, RoleSchema, toRole } from '../../schemas/admin.js'
import { problemResponses } from '../../schemas/problem.js'
import { audit } from '../../services/audit.js'

const adminRoleRoutes: FastifyPluginAsyncTypebox = async (app) => {
  requireAuthentication(app)
  const role = Type.Ref(RoleSchema)

  app.get('/roles', {
    config: { scopes: ['users:read'] },
    schema: {
      tags: ['admin'],
      summary: 'Every role and the scopes it grants',
      operationId: 'adminListRoles',
      response: {
        200: Type.Array(role, {
          description: 'Roles by name',
          examples: [[{ name: 'admin', description: 'Administers users and roles', scopes: ['roles:write', 'users:read', 'users:write'], built_in: true }]]
        }),
        ...problemResponses(401, 403, 429, 500)
      }
    }
  }, async () => (await app.roles.list()).map(toRole))

  app.put('/roles/:name', {
    config: { scopes: ['roles:write'] },
    schema: {
      tags: ['admin'],
      summary: 'Create a role, or replace its description and scopes',
      description: 'Scopes taken from a role end the sessions of everyone who holds it (refused within a second on every ' +
        'instance); scopes added take effect at their next login or refresh. The admin role keeps the service\'s own scopes.',
      operationId: 'adminPutRole',
      params: RoleNameParamsSchema,
      body: RoleDefinitionSchema,
      response: {
        200: Type.Ref(RoleSchema, { description: 'Replaced' }),
        201: Type.Ref(RoleSchema, { description: 'Created' }),
        ...problemResponses(400, 401, 403, 409, 413, 415, 429, 500)
      }
    }
  }, async (request, reply) => {
    const { name } = request.params
    const outcome = await app.roles.put(name, request.body)
    if (!outcome.ok) throw Problems.adminScopes()
    if (outcome.lostScopes.length > 0) await app.sessions.end({ roleName: name }, 'role_changed')
    audit(request, 'admin_role_saved', { user_id: request.user.sub, role: name, changes: outcome.created ? ['created'] : ['description', 'scopes'] })
    return await reply.code(outcome.created ? 201 : 200).send(toRole(outcome.role))
  })

  app.delete('/roles/:name', {
    config: { scopes: ['roles:write'] },
    schema: {
      tags: ['admin'],
      summary: 'Delete a role: its holders lose it and their sessions end',
      operationId: 'adminDeleteRole',
      params: RoleNameParamsSchema,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const { name } = request.params
    // The holders' sessions end first: once the role is gone, nothing says who held it.
    const before = await app.roles.list()
    if (before.some(r => r.name === name && r.builtIn)) throw Problems.builtInRole()
    if (!before.some(r => r.name === name)) throw Problems.notFound('No role with that name')
    const ended = await app.sessions.end({ roleName: name }, 'role_deleted')
    const outcome = await app.roles.remove(name)
    if (!outcome.ok) throw outcome.reason === 'built_in' ? Problems.builtInRole() : Problems.notFound('No role with that name')
    audit(request, 'admin_role_deleted', { user_id: request.user.sub, role: name, sessions_ended: ended.length })
    return await reply.code(204).send(null)
  })
}

export default adminRoleRoutes
