import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { OAuthErrors, toOAuthError } from '../../errors.js'
import { oauthErrorResponses, TokenRequestSchema, TokenResponseSchema } from '../../schemas/oauth.js'

const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' }

const tokenRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // Form bodies are accepted here only: the rest of the API speaks JSON.
  await app.register(formbody)
  const bodyLimit = app.initialConfig.bodyLimit ?? 1048576

  // RFC 6749 section 5.2: every failure here is {error, error_description}, never a problem document.
  app.setErrorHandler((error, request, reply) => {
    const oauthError = toOAuthError(error as Parameters<typeof toOAuthError>[0], bodyLimit)
    if (oauthError.status >= 500) request.log.error({ err: error }, 'token request failed')
    return reply.code(oauthError.status).headers({ ...NO_STORE, ...oauthError.headers }).send(oauthError.toBody())
  })

  app.post('/token', {
    config: { rateLimit: { max: app.config.RATE_LIMIT_TOKEN_MAX, timeWindow: app.config.RATE_LIMIT_WINDOW_SECONDS * 1000 } },
    attachValidation: true,
    schema: {
      tags: ['auth'],
      summary: 'Get an access token (OAuth2 password grant)',
      description: 'RFC 6749 section 4.3. Send `application/x-www-form-urlencoded` (as OAuth2 clients do) or JSON with the same fields. ' +
        'HTTP Basic client authentication and `client_id` are accepted and ignored.',
      operationId: 'createToken',
      security: [],
      body: {
        content: {
          'application/x-www-form-urlencoded': { schema: TokenRequestSchema },
          'application/json': { schema: TokenRequestSchema }
        }
      },
      response: { 200: Type.Ref(TokenResponseSchema), ...oauthErrorResponses(400, 401, 413, 429, 500) }
    }
  }, async (request, reply) => {
    if (request.validationError !== undefined) throw request.validationError
    const body = (request.body ?? {}) as Record<string, string | undefined>
    const grantType = body.grant_type ?? 'password'
    if (grantType !== 'password') throw OAuthErrors.unsupportedGrantType()
    for (const field of ['username', 'password'] as const) {
      if (body[field] === undefined || body[field] === '') throw OAuthErrors.invalidRequest(`${field} is required`)
    }
    const user = await app.users.authenticate(body.username as string, body.password as string)
    if (user === undefined) throw OAuthErrors.invalidGrant()
    const { accessToken, expiresIn } = app.tokenIssuer.issue(user)
    return reply.headers(NO_STORE).send({ access_token: accessToken, token_type: 'bearer' as const, expires_in: expiresIn })
  })
}

export default tokenRoutes
