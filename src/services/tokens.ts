import { randomUUID } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { createVerifier } from 'fast-jwt'
import type { UserRow } from '../db/schema.js'
import { Problems } from '../errors.js'
import type { KeyRing } from './keys.js'

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

/** The claims every access token we accept must carry, with the right types (RFC 9068 profile). */
export const AccessClaimsSchema = Type.Object({
  sub: Type.String({ pattern: UUID }),
  sid: Type.String({ pattern: UUID }),
  // A user's token carries preferred_username; a service client's carries client_id (= sub = sid) instead.
  preferred_username: Type.Optional(Type.String()),
  client_id: Type.Optional(Type.String({ pattern: UUID })),
  iat: Type.Integer(),
  exp: Type.Integer(),
  nbf: Type.Optional(Type.Integer()),
  iss: Type.String(),
  aud: Type.Union([Type.String(), Type.Array(Type.String())]),
  jti: Type.String({ minLength: 1 }),
  // RFC 9068 sections 2.2.3 and 2.2.3.1. Optional: tokens issued before roles existed stay valid until they expire.
  scope: Type.Optional(Type.String()),
  roles: Type.Optional(Type.Array(Type.String())),
  // OpenID Connect Core section 5.1. Optional: tokens issued before verification existed stay valid until they expire.
  email_verified: Type.Optional(Type.Boolean())
})

export type AccessClaims = Static<typeof AccessClaimsSchema>

const compiledClaims = TypeCompiler.Compile(AccessClaimsSchema)

/**
 * The schema, and one of two kinds: a user's token (preferred_username, no client_id) or a service client's
 * (client_id, with sub and sid the client id, so that deleting the client ends its tokens as a logout ends a session's).
 */
export const accessClaimsCheck = {
  Check: (value: unknown): value is AccessClaims => compiledClaims.Check(value) && (value.client_id === undefined
    ? value.preferred_username !== undefined
    : value.preferred_username === undefined && value.sub === value.client_id && value.sid === value.client_id)
}

/** The access token's own claims; the signer adds iat, exp, iss and aud. */
export interface AccessTokenPayload {
  sub: string
  sid: string
  preferred_username?: string
  client_id?: string
  jti: string
  scope: string
  roles?: string[]
  email_verified?: boolean
}

/** What a token is issued for: the granted scopes (space-delimited) and the user's role names. */
export interface TokenGrant {
  scope: string
  roles: string[]
}

export interface IssuedToken {
  accessToken: string
  expiresIn: number
}

export interface TokenServiceOptions {
  keyRing: KeyRing
  issuer: string
  audience: string
  ttlSeconds: number
  /** Signs with the key ring's signing key, adding the registered claims and the at+jwt header. */
  sign: (payload: AccessTokenPayload) => string
  /** How many verified Authorization headers are remembered (default 10,000). */
  verifiedCacheSize?: number
}

export interface TokenService {
  issue: (user: Pick<UserRow, 'id' | 'username' | 'emailVerified'>, sessionId: string, grant: TokenGrant) => IssuedToken
  /** A service client's token (client credentials): no session, no refresh token; its id stands for the session. */
  issueForClient: (clientId: string, scope: string) => IssuedToken
  /** The claims of a valid bearer token in an Authorization header, without the session check; throws a 401 problem. */
  verify: (authorization: string | undefined) => AccessClaims
  /** The session of an access token whose signature, issuer and audience check out, even if expired; else undefined. */
  sessionOf: (token: string) => string | undefined
}

export function accessTokenPayload (user: Pick<UserRow, 'id' | 'username' | 'emailVerified'>, sessionId: string, grant: TokenGrant): AccessTokenPayload {
  return { sub: user.id, sid: sessionId, preferred_username: user.username, jti: randomUUID(), scope: grant.scope, roles: grant.roles, email_verified: user.emailVerified }
}

const BEARER = /^Bearer +(\S*) *$/i
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

/** Issues access tokens and verifies them against every key of the ring. */
export function createTokenService (options: TokenServiceOptions): TokenService {
  const { keyRing, issuer, audience, ttlSeconds, sign, verifiedCacheSize = 10_000 } = options

  // RFC 8725: one verifier per key, each pinned to its key's algorithm (no HS256 with a public key), checking
  // the type, issuer and audience and requiring the time claims.
  const strict = new Map<string | undefined, Verify>()
  const lenient = new Map<string | undefined, Verify>()
  for (const key of keyRing.verification) {
    const common = { key: key.key, algorithms: [key.alg], checkTyp: 'at+jwt', allowedIss: issuer, allowedAud: audience }
    // maxAge: no token older than this configuration's lifetime, whatever its exp says. Ended sessions are remembered
    // for that long (plus a minute), so a token issued under a longer TTL before a restart cannot outlive its logout.
    strict.set(key.kid, createVerifier({ ...common, requiredClaims: ['exp', 'iat', 'sub', 'iss', 'aud'], maxAge: ttlSeconds * 1000 }))
    lenient.set(key.kid, createVerifier({ ...common, ignoreExpiration: true, ignoreNotBefore: true }))
  }
  const verifyToken = keyedVerifier(strict)
  const verifyIgnoringExpiry = keyedVerifier(lenient)

  // Authorization headers whose token passed every check, until it expires: a client's next request with the same
  // header skips the parse, the signature and the claim checks. Found by the header's last characters (part of the
  // signature) and then compared whole: hashing a short key is what makes a hit cheap, the comparison what makes it
  // exact. Only successes are kept, at most verifiedCacheSize (oldest out first); a key that stops verifying is
  // a restart, which empties it.
  const verified = new Map<string, { authorization: string, claims: AccessClaims }>()

  return {
    issue: (user, sessionId, grant) => ({ accessToken: sign(accessTokenPayload(user, sessionId, grant)), expiresIn: ttlSeconds }),

    issueForClient: (clientId, scope) => ({
      accessToken: sign({ sub: clientId, sid: clientId, client_id: clientId, jti: randomUUID(), scope }),
      expiresIn: ttlSeconds
    }),

    verify (authorization) {
      if (authorization === undefined) throw Problems.notAuthenticated()
      const key = authorization.slice(-VERIFIED_KEY_LENGTH)
      const known = verified.get(key)
      if (known !== undefined && known.authorization === authorization) {
        if (Math.min(known.claims.exp, known.claims.iat + ttlSeconds) * 1000 > Date.now()) return known.claims
        verified.delete(key)
        throw Problems.tokenExpired()
      }
      const match = BEARER.exec(authorization)
      if (match === null) throw Problems.notAuthenticated()
      let claims: unknown
      try {
        claims = verifyToken(match[1])
      } catch (error) {
        // fast-jwt throws for every way a token can be bad, some of them as plain TypeErrors: all are a 401.
        if ((error as { code?: string }).code === 'FAST_JWT_EXPIRED') throw Problems.tokenExpired()
        throw Problems.invalidToken()
      }
      if (!accessClaimsCheck.Check(claims)) throw Problems.invalidToken()
      verified.delete(key)
      if (verified.size >= verifiedCacheSize) verified.delete(verified.keys().next().value as string)
      verified.set(key, { authorization, claims })
      return claims
    },

    sessionOf (token) {
      try {
        const claims: unknown = verifyIgnoringExpiry(token)
        return accessClaimsCheck.Check(claims) ? claims.sid : undefined
      } catch {
        return undefined
      }
    }
  }
}
