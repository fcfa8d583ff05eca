import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { publicUrl } from '../config.js'
import { problemResponses } from '../schemas/problem.js'
import { ADMIN_SCOPES, SERVICE_SCOPES } from '../services/scopes.js'

const JwkSchema = Type.Object({
  kty: Type.String({ examples: ['OKP'] }),
  kid: Type.String(),
  alg: Type.String({ examples: ['EdDSA'] }),
  use: Type.Literal('sig')
}, { additionalProperties: Type.String(), description: 'A public key (RFC 7517); key members such as crv, x, y, n, e follow its type' })

const JwksSchema = Type.Object({ keys: Type.Array(JwkSchema) }, {
  description: 'The JWK Set',
  title: 'JWKS',
  examples: [{ keys: [{ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k', alg: 'EdDSA', use: 'sig' }] }]
})

const url = Type.String({ format: 'uri' })
const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post']

const MetadataSchema = Type.Object({
  issuer: Type.String({ description: 'The `iss` of every token (JWT_ISSUER)' }),
  token_endpoint: url,
  revocation_endpoint: url,
  introspection_endpoint: url,
  jwks_uri: url,
  grant_types_supported: Type.Array(Type.String()),
  response_types_supported: Type.Array(Type.String(), { description: 'None: there is no authorization endpoint' }),
  scopes_supported: Type.Array(Type.String(), { description: 'The service\'s own scopes; roles may define more' }),
  token_endpoint_auth_methods_supported: Type.Array(Type.String()),
  introspection_endpoint_auth_methods_supported: Type.Array(Type.String()),
  revocation_endpoint_auth_methods_supported: Type.Array(Type.String()),
  ended_sessions_endpoint: Type.String({ format: 'uri', description: 'Not in RFC 8414: the catch-up list of ended sessions (scope `sessions:ended`)' }),
  ended_sessions_stream_endpoint: Type.String({ format: 'uri', description: 'Not in RFC 8414: ended sessions as Server-Sent Events (scope `sessions:ended`)' })
}, {
  title: 'AuthorizationServerMetadata',
  additionalProperties: false,
  description: 'RFC 8414 section 2; URLs are absolute, from PUBLIC_URL',
  examples: [{
    issuer: 'auth-service',
    token_endpoint: 'https://auth.example.com/auth/token',
    revocation_endpoint: 'https://auth.example.com/auth/revoke',
    introspection_endpoint: 'https://auth.example.com/auth/introspect',
    jwks_uri: 'https://auth.example.com/.well-known/jwks.json',
    grant_types_supported: ['password', 'refresh_token', 'client_credentials'],
    response_types_supported: [],
    scopes_supported: ['clients:read', 'clients:write', 'roles:write', 'sessions:ended', 'users:read', 'users:write'],
    token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    introspection_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    revocation_endpoint_auth_methods_supported: ['none'],
    ended_sessions_endpoint: 'https://auth.example.com/sessions/ended',
    ended_sessions_stream_endpoint: 'https://auth.example.com/sessions/ended/stream'
  }]
})

const wellKnownRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/jwks.json', {
    schema: {
      tags: ['auth'],
      summary: 'Public keys that verify access tokens (RFC 7517 JWK Set)',
      description: 'Every key that verifies, the signing key first; empty when tokens are signed with HS256 (JWT_SECRET).',
      operationId: 'getJwks',
      security: [],
      response: { 200: JwksSchema, ...problemResponses(429, 500) }
    }
  }, async (_request, reply) => {
    // Short enough that a rotation reaches verifiers well within an access token's lifetime.
    return await reply.header('cache-control', 'public, max-age=300').send(app.keyRing.jwks)
  })

  // Made once: everything in it is configuration.
  const base = publicUrl(app.config)
  const metadata = {
    issuer: app.config.JWT_ISSUER,
    token_endpoint: `${base}/auth/token`,
    revocation_endpoint: `${base}/auth/revoke`,
    introspection_endpoint: `${base}/auth/introspect`,
    jwks_uri: `${base}/.well-known/jwks.json`,
    grant_types_supported: ['password', 'refresh_token', 'client_credentials'],
    response_types_supported: [],
    scopes_supported: [...ADMIN_SCOPES, ...SERVICE_SCOPES].sort(),
    token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    introspection_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
    // Revocation takes a token alone (RFC 7009 lets a server accept that): whoever holds a token may end its session.
    revocation_endpoint_auth_methods_supported: ['none'],
    ended_sessions_endpoint: `${base}/sessions/ended`,
    ended_sessions_stream_endpoint: `${base}/sessions/ended/stream`
  }

  app.get('/oauth-authorization-server', {
    schema: {
      tags: ['auth'],
      summary: 'Authorization server metadata (RFC 8414): endpoints, grant types, scopes, client authentication',
      description: 'What a client or a downstream service needs to find the rest: the token, revocation and ' +
        'introspection endpoints, the JWKS, and the ended-session feed (an extension of this service).',
      operationId: 'getAuthorizationServerMetadata',
      security: [],
      response: { 200: MetadataSchema, ...problemResponses(429, 500) }
    }
  }, async (_request, reply) => {
    return await reply.header('cache-control', 'public, max-age=300').send(metadata)
  })
}

export default wellKnownRoutes
