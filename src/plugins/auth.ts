import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import { createVerifier } from 'fast-jwt'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Problems } from '../errors.js'
import { resolveJwtSecret } from '../services/secrets.js'
import { accessClaimsCheck, accessTokenPayload, type AccessClaims, type IssuedToken } from '../services/tokens.js'
import type { UserRow } from '../db/schema.js'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: Record<string, string>
    user: AccessClaims
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook for protected routes: verifies the bearer token and sets request.user. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>
    tokenIssuer: { issue: (user: Pick<UserRow, 'id' | 'username'>, sessionId: string) => IssuedToken }
    /** The session of an access token whose signature, issuer and audience check out, even if expired; else undefined. */
    sessionOfAccessToken: (token: string) => string | undefined
  }
}

const ALGORITHM = 'HS256'
const BEARER = /^Bearer +(\S*) *$/i

export default fp(async (app) => {
  const config = app.config
  const secret = await resolveJwtSecret(config.JWT_SECRET, config.DATA_DIR)
  const ttlSeconds = config.ACCESS_TOKEN_TTL

  await app.register(fastifyJwt, {
    secret,
    sign: {
      algorithm: ALGORITHM,
      header: { alg: ALGORITHM, typ: 'at+jwt' },
      expiresIn: ttlSeconds, // @fastify/jwt reads numbers as seconds
      iss: config.JWT_ISSUER,
      aud: config.JWT_AUDIENCE
    },
    verify: {
      // RFC 8725: pin the algorithm, check the type and the audience and issuer, require the time claims.
      algorithms: [ALGORITHM],
      checkTyp: 'at+jwt',
      allowedIss: config.JWT_ISSUER,
      allowedAud: config.JWT_AUDIENCE,
      requiredClaims: ['exp', 'iat', 'sub', 'iss', 'aud'],
      cache: 1000
    }
  })

  app.decorate('tokenIssuer', {
    issue: (user, sessionId) => ({ accessToken: app.jwt.sign(accessTokenPayload(user, sessionId)), expiresIn: ttlSeconds })
  })

  const verifyIgnoringExpiry = createVerifier({
    key: secret,
    algorithms: [ALGORITHM],
    checkTyp: 'at+jwt',
    allowedIss: config.JWT_ISSUER,
    allowedAud: config.JWT_AUDIENCE,
    ignoreExpiration: true,
    ignoreNotBefore: true
  })
  app.decorate('sessionOfAccessToken', (token: string) => {
    try {
      const claims: unknown = verifyIgnoringExpiry(token)
      return accessClaimsCheck.Check(claims) ? claims.sid : undefined
    } catch {
      return undefined
    }
  })

  app.decorate('authenticate', async (request: FastifyRequest) => {
    const header = request.headers.authorization
    const match = header === undefined ? null : BEARER.exec(header)
    if (match === null) throw Problems.notAuthenticated()
    let claims: unknown
    try {
      claims = app.jwt.verify(match[1])
    } catch (error) {
      // fast-jwt throws for every way a token can be bad, some of them as plain TypeErrors: all are a 401.
      if ((error as { code?: string }).code === 'FAST_JWT_EXPIRED') throw Problems.tokenExpired()
      throw Problems.invalidToken()
    }
    if (!accessClaimsCheck.Check(claims)) throw Problems.invalidToken()
    // In memory, kept current across instances by the sessions plugin: no query per request.
    if (app.endedSessions.has(claims.sid)) throw Problems.invalidToken('Session has ended')
    request.user = claims
  })
}, { name: 'auth', dependencies: ['config', 'sessions'] })

/**
 * Protects every route of the calling (encapsulated) plugin. Added per route from onRoute so that it runs after
 * the rate limiter's hook, which is added the same way earlier: floods of bad tokens are counted like any request.
 */
export function requireAuthentication (app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    route.onRequest = [...[route.onRequest ?? []].flat(), app.authenticate]
  })
}
