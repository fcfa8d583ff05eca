import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import { DatabaseUnavailable } from '../db/availability.js'
import { Problems } from '../errors.js'
import { problemResponses } from '../schemas/problem.js'
import { OAUTH2_SCHEME } from '../schemas/security.js'
import { hasScopes } from '../services/scopes.js'
import { loadKeyRing, type KeyRing } from '../services/keys.js'
import { createTokenService, type AccessClaims, type AccessTokenPayload, type TokenService } from '../services/tokens.js'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessTokenPayload
    user: AccessClaims
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Scopes a protected route needs beyond a valid token (all of them); written into its OpenAPI security too. */
    scopes?: readonly string[]
  }
  interface FastifyInstance {
    /** onRequest hook for protected routes: verifies the bearer token and the session, and sets request.user. */
    authenticate: onRequestHookHandler
    tokens: TokenService
    keyRing: KeyRing
  }
}

export default fp(async (app) => {
  const config = app.config
  const keyRing = await loadKeyRing(config)
  const { signing } = keyRing

  await app.register(fastifyJwt, {
    secret: signing.alg === 'HS256' ? signing.key : { private: signing.key, public: keyRing.verification[0].key },
    sign: {
      algorithm: signing.alg,
      ...(signing.kid !== undefined ? { kid: signing.kid } : {}),
      header: { alg: signing.alg, typ: 'at+jwt' },
      expiresIn: config.ACCESS_TOKEN_TTL, // @fastify/jwt reads numbers as seconds
      iss: config.JWT_ISSUER,
      aud: config.JWT_AUDIENCE
    }
  })

  const tokens = createTokenService({
    keyRing,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    ttlSeconds: config.ACCESS_TOKEN_TTL,
    sign: (payload) => app.jwt.sign(payload)
  })
  app.decorate('keyRing', keyRing)
  app.decorate('tokens', tokens)

  const { endedSessions } = app
  // A callback hook, not an async one: no promise per protected request.
  const authenticate: onRequestHookHandler = (request, _reply, done) => {
    let claims: AccessClaims
    try {
      claims = tokens.verify(request.headers.authorization)
    } catch (error) {
      done(error as Error)
      return
    }
    // In memory, kept current across instances by the session sync: no query per request.
    if (endedSessions.has(claims.sid)) {
      done(Problems.invalidToken('Session has ended'))
      return
    }
    // Not re-read for SESSION_SYNC_MAX_STALENESS_SECONDS (the database is out): the session may have ended elsewhere.
    if (!endedSessions.current) {
      done(new DatabaseUnavailable('ended sessions not re-read lately'))
      return
    }
    request.user = claims
    done()
  }
  app.decorate('authenticate', authenticate)
}, {
  name: 'auth',
  dependencies: ['config'],
  // The sessions plugin's set, or the document-only app's empty stand-in: a wrong order fails at boot.
  decorators: { fastify: ['endedSessions'] }
})

const refuseClients: onRequestHookHandler = (request, _reply, done) => {
  done(request.user.client_id === undefined ? undefined : Problems.invalidToken('A service client\'s token does not stand for a user'))
}

/**
 * Protects every route of the calling (encapsulated) plugin, and checks the scopes a route names in
 * `config.scopes`. Added per route from onRoute so that it runs after the rate limiter's hook, which is added the
 * same way earlier: floods of bad tokens are counted like any request. The route's OpenAPI `security` is written
 * here, from the same list, so that the document cannot say other than what is checked.
 */
export function requireAuthentication (app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const scopes = route.config?.scopes ?? []
    // A route that needs no scope is the user's own (their profile, sessions, logout): a service client is nobody there.
    const hooks = [app.authenticate, scopes.length > 0 ? requireScopes(scopes) : refuseClients]
    route.onRequest = [...[route.onRequest ?? []].flat(), ...hooks]
    if (route.schema !== undefined) {
      route.schema.security = [{ [OAUTH2_SCHEME]: [...scopes] }]
      // Every protected route can answer 503: its session check needs ended sessions re-read lately (an outage).
      const responses = (route.schema.response ?? {}) as Record<number, unknown>
      if (responses[503] === undefined) route.schema.response = { ...responses, ...problemResponses(503) }
    }
  })
}

function requireScopes (scopes: readonly string[]): onRequestHookHandler {
  return (request, _reply, done) => {
    done(hasScopes(request.user.scope, scopes) ? undefined : Problems.insufficientScope(scopes))
  }
}
