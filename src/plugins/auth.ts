import fp from 'fastify-plugin'
import fastifyJwt from '@fastify/jwt'
import { createVerifier } from 'fast-jwt'
import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import { Problems } from '../errors.js'
import { loadKeyRing, type KeyRing } from '../services/keys.js'
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
    authenticate: onRequestHookHandler
    tokenIssuer: { issue: (user: Pick<UserRow, 'id' | 'username'>, sessionId: string) => IssuedToken }
    /** The session of an access token whose signature, issuer and audience check out, even if expired; else undefined. */
    sessionOfAccessToken: (token: string) => string | undefined
    keyRing: KeyRing
    /** The claims of a valid bearer token in an Authorization header, without the session check; throws a 401 problem. */
    verifyAccessToken: (authorization: string | undefined) => AccessClaims
  }
}

const BEARER = /^Bearer +(\S*) *$/i
const VERIFIED_CACHE_SIZE = 10_000
// Characters of an Authorization header the verified-token cache is keyed by: its end, inside the signature.
const VERIFIED_KEY_LENGTH = 32
// Headers that point a verifier at keys elsewhere (RFC 8725 section 3.10): never followed, always refused.
const FOREIGN_KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c']

type Verify = (token: string) => unknown

class InvalidToken extends Error {}

/** Picks the verifier by the header's kid before any signature work: unknown kids never reach a database or network. */
function keyedVerifier (verifiers: Map<string | undefined, Verify>): Verify {
  return (token) => {
    const [encodedHeader, , signature, extra] = token.split('.')
    if (signature === undefined || extra !== undefined) throw new InvalidToken()
    let header: Record<string, unknown>
    try {
      header = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8'))
    } catch {
      throw new InvalidToken()
    }
    if (header === null || typeof header !== 'object' || FOREIGN_KEY_HEADERS.some(h => h in header)) throw new InvalidToken()
    const kid = header.kid
    if (kid !== undefined && typeof kid !== 'string') throw new InvalidToken()
    const verify = verifiers.get(kid)
    if (verify === undefined) throw new InvalidToken()
    return verify(token)
  }
}

export default fp(async (app) => {
  const config = app.config
  const keyRing = await loadKeyRing(config)
  const ttlSeconds = config.ACCESS_TOKEN_TTL
  const { signing } = keyRing

  await app.register(fastifyJwt, {
    secret: signing.alg === 'HS256' ? signing.key : { private: signing.key, public: keyRing.verification[0].key },
    sign: {
      algorithm: signing.alg,
      ...(signing.kid !== undefined ? { kid: signing.kid } : {}),
      header: { alg: signing.alg, typ: 'at+jwt' },
      expiresIn: ttlSeconds, // @fastify/jwt reads numbers as seconds
      iss: config.JWT_ISSUER,
      aud: config.JWT_AUDIENCE
    }
  })

  // RFC 8725: one verifier per key, each pinned to its key's algorithm (no HS256 with a public key), checking
  // the type, issuer and audience and requiring the time claims.
  const strict = new Map<string | undefined, Verify>()
  const lenient = new Map<string | undefined, Verify>()
  for (const key of keyRing.verification) {
    const options = {
      key: key.key,
      algorithms: [key.alg],
      checkTyp: 'at+jwt',
      allowedIss: config.JWT_ISSUER,
      allowedAud: config.JWT_AUDIENCE
    }
    strict.set(key.kid, createVerifier({ ...options, requiredClaims: ['exp', 'iat', 'sub', 'iss', 'aud'] }))
    lenient.set(key.kid, createVerifier({ ...options, ignoreExpiration: true, ignoreNotBefore: true }))
  }
  const verifyAccessToken = keyedVerifier(strict)
  const verifyIgnoringExpiry = keyedVerifier(lenient)

  app.decorate('keyRing', keyRing)

  app.decorate('tokenIssuer', {
    issue: (user, sessionId) => ({ accessToken: app.jwt.sign(accessTokenPayload(user, sessionId)), expiresIn: ttlSeconds })
  })

  app.decorate('sessionOfAccessToken', (token: string) => {
    try {
      const claims: unknown = verifyIgnoringExpiry(token)
      return accessClaimsCheck.Check(claims) ? claims.sid : undefined
    } catch {
      return undefined
    }
  })

  // Authorization headers whose token passed every check, until it expires: a client's next request with the same
  // header skips the parse, the signature and the claim checks. Found by the header's last characters (part of the
  // signature) and then compared whole: hashing a short key is what makes a hit cheap, the comparison what makes it
  // exact. Only successes are kept, at most VERIFIED_CACHE_SIZE (oldest out first); a key that stops verifying is
  // a restart, which empties it.
  const verified = new Map<string, { authorization: string, claims: AccessClaims }>()
  const cacheKey = (authorization: string): string => authorization.slice(-VERIFIED_KEY_LENGTH)

  app.decorate('verifyAccessToken', (authorization: string | undefined): AccessClaims => {
    if (authorization === undefined) throw Problems.notAuthenticated()
    const key = cacheKey(authorization)
    const known = verified.get(key)
    if (known !== undefined && known.authorization === authorization) {
      if (known.claims.exp * 1000 > Date.now()) return known.claims
      verified.delete(key)
      throw Problems.tokenExpired()
    }
    const match = BEARER.exec(authorization)
    if (match === null) throw Problems.notAuthenticated()
    let claims: unknown
    try {
      claims = verifyAccessToken(match[1])
    } catch (error) {
      // fast-jwt throws for every way a token can be bad, some of them as plain TypeErrors: all are a 401.
      if ((error as { code?: string }).code === 'FAST_JWT_EXPIRED') throw Problems.tokenExpired()
      throw Problems.invalidToken()
    }
    if (!accessClaimsCheck.Check(claims)) throw Problems.invalidToken()
    verified.delete(key)
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value as string)
    verified.set(key, { authorization, claims })
    return claims
  })

  // A callback hook, not an async one: no promise per protected request.
  const authenticate: onRequestHookHandler = (request, _reply, done) => {
    let claims: AccessClaims
    try {
      claims = app.verifyAccessToken(request.headers.authorization)
    } catch (error) {
      done(error as Error)
      return
    }
    // In memory, kept current across instances by the sessions plugin: no query per request.
    if (app.endedSessions.has(claims.sid)) {
      done(Problems.invalidToken('Session has ended'))
      return
    }
    request.user = claims
    done()
  }
  app.decorate('authenticate', authenticate)
  // app.endedSessions comes from the sessions plugin, registered before this one; it is read per request, not here,
  // so that the document-only app (no database, no sessions) can still declare the protected routes.
}, { name: 'auth', dependencies: ['config'] })

/**
 * Protects every route of the calling (encapsulated) plugin. Added per route from onRoute so that it runs after
 * the rate limiter's hook, which is added the same way earlier: floods of bad tokens are counted like any request.
 */
export function requireAuthentication (app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    route.onRequest = [...[route.onRequest ?? []].flat(), app.authenticate]
  })
}
