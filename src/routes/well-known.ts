import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { problemResponses } from '../schemas/problem.js'

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
}

export default wellKnownRoutes
