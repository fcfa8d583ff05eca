import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../../errors.js'
import { requireAuthentication } from '../../plugins/auth.js'
import { ClientIdParamsSchema, ClientSecretSchema, CreateClientSchema, CreatedClientSchema, ServiceClientSchema, toServiceClient } from '../../schemas/client.js'
import { NO_STORE_HEADER } from '../../schemas/oauth.js'
import { problemResponses } from '../../schemas/problem.js'
import { audit } from '../../services/audit.js'

const READ = { scopes: ['clients:read'] }
const WRITE = { scopes: ['clients:write'] }
// A secret is in the answer: no cache keeps it.
const NO_STORE = { 'cache-control': 'no-store' }

const adminClientRoutes: FastifyPluginAsyncTypebox = async (app) => {
  requireAuthentication(app)

  app.get('/clients', {
    config: READ,
    schema: {
      tags: ['admin'],
      summary: 'Every service client (never their secrets)',
      operationId: 'adminListClients',
      response: {
        200: Type.Array(ServiceClientSchema, { description: 'Clients, oldest first', examples: [ServiceClientSchema.examples] }),
        ...problemResponses(401, 403, 429, 500)
      }
    }
  }, async () => (await app.clients.list()).map(toServiceClient))

  app.post('/clients', {
    config: WRITE,
    schema: {
      tags: ['admin'],
      summary: 'Register a service client: its id and secret (shown once)',
      description: 'The client gets tokens with `grant_type=client_credentials` at `POST /auth/token`, and may call ' +
        '`POST /auth/introspect`. Its scopes must be ones some role defines, or `sessions:ended` (the ended-session feed).',
      operationId: 'adminCreateClient',
      body: CreateClientSchema,
      response: {
        201: { description: 'Registered', headers: { 'Cache-Control': NO_STORE_HEADER }, content: { 'application/json': { schema: CreatedClientSchema } } },
        ...problemResponses(400, 401, 403, 413, 415, 429, 500)
      }
    }
  }, async (request, reply) => {
    const outcome = await app.clients.create(request.body.name, request.body.scopes)
    if (!outcome.ok) throw Problems.validation([{ field: 'scopes', message: `no role defines ${outcome.unknownScopes.join(', ')}` }])
    const { client, secret } = outcome
    audit(request, 'admin_client_created', { user_id: request.user.sub, client_id: client.id })
    return await reply.code(201).headers(NO_STORE).send({
      client_id: client.id, client_secret: secret, name: client.name, scopes: client.scopes, created_at: client.createdAt.toISOString()
    })
  })

  app.post('/clients/:client_id/secret', {
    config: WRITE,
    schema: {
      tags: ['admin'],
      summary: 'Rotate a client\'s secret: a new one (shown once); the old one is refused at once',
      description: 'Tokens the client already holds stay valid until they expire; deleting the client ends them.',
      operationId: 'adminRotateClientSecret',
      params: ClientIdParamsSchema,
      response: {
        200: { description: 'The new secret', headers: { 'Cache-Control': NO_STORE_HEADER }, content: { 'application/json': { schema: ClientSecretSchema } } },
        ...problemResponses(400, 401, 403, 404, 413, 415, 429, 500)
      }
    }
  }, async (request, reply) => {
    const rotated = await app.clients.rotateSecret(request.params.client_id)
    if (rotated === undefined) throw Problems.notFound('No client with that id')
    audit(request, 'admin_client_secret_rotated', { user_id: request.user.sub, client_id: rotated.client.id })
    return await reply.headers(NO_STORE).send({ client_id: rotated.client.id, client_secret: rotated.secret })
  })

  app.delete('/clients/:client_id', {
    config: WRITE,
    schema: {
      tags: ['admin'],
      summary: 'Delete a service client: its tokens are refused within a second, here and downstream',
      operationId: 'adminDeleteClient',
      params: ClientIdParamsSchema,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(400, 401, 403, 404, 413, 415, 429, 500) }
    }
  }, async (request, reply) => {
    const removed = await app.clients.remove(request.params.client_id)
    if (removed === undefined) throw Problems.notFound('No client with that id')
    // Its id is the sid of its tokens: announced like an ended session, to every instance and the ended-session feed.
    await app.sessions.announce([removed])
    audit(request, 'admin_client_deleted', { user_id: request.user.sub, client_id: removed.id })
    return await reply.code(204).send(null)
  })
}

export default adminClientRoutes
